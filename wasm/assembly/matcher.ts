// deno-fmt-ignore-file -- deno fmt drops AssemblyScript decorators (@inline); keep the file's
// formatting by hand in the deno fmt style.
// Topic matcher: a trie of topic levels kept in this module's linear memory.
//
// One call of `match(ptr, len)` walks the trie for the topic bytes at [ptr, ptr+len) and writes
// the ids of every matching subscription to the result region (`result()`), returning how many.
// The topic may already be in memory for another reason (a PUBLISH in a decoder's input region):
// `match` only reads [ptr, ptr+len) and never reads past it, so a later step can decode and
// match in one pass once decoder and matcher share this memory (one module, or an imported
// memory).
//
// Layout of the trie:
//   node (8-aligned block):   parent u32 | hash u32 | plus u32 | ids u32 | hashIds u32 |
//                             children u32 | len u32 | first u32 | level bytes (len)
//     hash     the level hash when the parent keeps its children in the edge table; else the
//              next child in the parent's list
//     plus     the child for a '+' level (0 = none); it has no level bytes
//     ids      id list of filters that end at this node
//     hashIds  id list of filters "<path to this node>/#" (at the root: the filter "#")
//     children number of named children; the top bit says they are in the edge table
//     first    list mode: the first named child. Up to 8 named children are kept in a list and
//              compared byte for byte (most nodes have one or a few: no hash, no probe); with
//              more, all of them move to the edge table, until the node has none again.
//   edge table: open addressing, linear probing, slot = key u32 | child node u32, where
//     key = mix(parent, hash(level bytes)); a child is found by (parent, level bytes).
//   The level hash is SipHash-1-3 keyed with a secret 128-bit seed that the host draws from a
//   cryptographic random source for each instance (`seed`): level names that collide cannot be
//   computed without it, so no set of subscriptions can turn probes into long chains (hash
//   flooding). An unkeyed or invertible hash would let a client make every insert and lookup
//   walk one chain, at a cost growing with the square of the number of subscriptions.
//   id list (block): count u32 | cap u32 | ids u32[cap]
//   subscription table: open addressing, slot = tag u32 | id u32 | pos u32, where tag is the
//     node pointer (+1 for its '#' list); it finds the position of an id in its list in O(1),
//     so add (duplicate check) and remove cost the same for a list of 1 or 1,000,000 ids.
// Matching visits, level by level, only the nodes whose path matches the topic so far (a named
// child found in a list of at most 8 or by one hash probe, plus the '+' child), so its cost does not depend on how many
// subscriptions cannot match.
//
// Memory: blocks with boundary tags over a bump pointer (see the allocator below); a freed block
// is merged with its free neighbours, so what departed subscriptions held is reused by any later
// ones, whatever their shape. Memory grows with memory.grow (which detaches the host's views of
// memory; the host refreshes them) and never shrinks.

// ---- node fields ----
const PARENT: usize = 0;
const HASH: usize = 4;
const PLUS: usize = 8;
const IDS: usize = 12;
const HASHIDS: usize = 16;
const CHILDREN: usize = 20;
const LEN: usize = 24;
const FIRST: usize = 28;
const BYTES: usize = 32;
/** In the HASH field of a child of a list-mode node: the next child in its parent's list. */
const NEXT: usize = HASH;
/** Bit of the CHILDREN field: the named children are in the edge table, not in a list. */
const TABLED: u32 = 0x80000000;
/** Named children a node keeps in a list, compared byte for byte, before it moves them to the table. */
const SMALL: u32 = 8;

const SLASH: u8 = 0x2f;
const PLUS_CHAR: u8 = 0x2b;
const HASH_CHAR: u8 = 0x23;
const DOLLAR: u8 = 0x24;

// ---- allocator ----
// Blocks of a multiple of 8 bytes (at least 16) between `heapStart` and the bump pointer. A
// block in use has one header word: its size, an in-use bit and a bit saying the block below it
// is free; the caller's bytes follow it (8-aligned). A free block also keeps its size in its last
// word (the footer), and the links of its free list after the header. A freed block is merged
// with free neighbours at once (boundary tags), so memory freed by subscriptions of one shape is
// reused by subscriptions of any other, and a free block at the top gives its bytes back to the
// bump pointer. Free lists are segregated (exact sizes up to 1 KB, four lists per power of two
// above) and found through a bitmap of non-empty lists; a larger block is split.
const USED: u32 = 1;
const PREV_FREE: u32 = 2;
const FLAGS: u32 = 3;
const MIN_BLOCK: u32 = 16;
const NBUCKETS: u32 = 224;
const freeHeads: usize = memory.data(<i32> NBUCKETS * 4, 16);
const freeBits: usize = memory.data(<i32> (NBUCKETS >> 5) * 4, 16);
// Blocks start 4 bytes before an 8-byte boundary, so the caller's bytes are 8-aligned.
const heapStart: usize = ((__heap_base + 7) & ~(<usize> 7)) + 4;
let bump: usize = heapStart;

// @ts-ignore: decorator
@inline function blockSize(size: usize): u32 {
  const s = <u32> ((size + 4 + 7) & ~(<usize> 7));
  return s < MIN_BLOCK ? MIN_BLOCK : s;
}

// @ts-ignore: decorator
@inline function bucketOf(s: u32): u32 {
  if (s <= 1024) return s >> 3; // 2..128, one size each
  const l = 31 - clz<u32>(s); // 10..31
  return 129 + ((l - 10) << 2) + ((s >> (l - 2)) & 3); // 129..216
}

function linkFree(b: usize, s: u32): void {
  store<u32>(b, s); // free; the block below a free block is never free
  store<u32>(b + s - 4, s);
  const k = bucketOf(s);
  const head = freeHeads + (<usize> k << 2);
  const first = load<u32>(head);
  store<u32>(b, first, 4);
  store<u32>(b, 0, 8);
  if (first != 0) store<u32>(<usize> first, <u32> b, 8);
  store<u32>(head, <u32> b);
  const w = freeBits + (<usize> (k >> 5) << 2);
  store<u32>(w, load<u32>(w) | (<u32> 1 << (k & 31)));
  // The block above (in use: free neighbours are merged) learns that this one is free.
  const above = b + s;
  if (above != bump) store<u32>(above, load<u32>(above) | PREV_FREE);
}

function unlinkFree(b: usize, s: u32): void {
  const next = load<u32>(b, 4);
  const prev = load<u32>(b, 8);
  const k = bucketOf(s);
  if (prev != 0) store<u32>(<usize> prev, next, 4);
  else {
    store<u32>(freeHeads + (<usize> k << 2), next);
    if (next == 0) {
      const w = freeBits + (<usize> (k >> 5) << 2);
      store<u32>(w, load<u32>(w) & ~(<u32> 1 << (k & 31)));
    }
  }
  if (next != 0) store<u32>(<usize> next, prev, 8);
}

/** The first non-empty list at or above bucket k, or NBUCKETS. */
function nextBucket(k: u32): u32 {
  let i = k >> 5;
  let bits = load<u32>(freeBits + (<usize> i << 2)) & (<u32> 0xffffffff << (k & 31));
  while (bits == 0) {
    i++;
    if (i >= NBUCKETS >> 5) return NBUCKETS;
    bits = load<u32>(freeBits + (<usize> i << 2));
  }
  return (i << 5) + ctz<u32>(bits);
}

/** `size` bytes (8-aligned); the block is found in the free lists or cut from the top. */
function alloc(size: usize): usize {
  const s = blockSize(size);
  let k = bucketOf(s);
  let b: usize = 0;
  if (k > 128) {
    // A list of sizes in a range: first fit in it, else any block of a higher list fits.
    let c = <usize> load<u32>(freeHeads + (<usize> k << 2));
    while (c != 0 && load<u32>(c) < s) c = <usize> load<u32>(c, 4);
    b = c;
    if (b == 0) k++;
  }
  if (b == 0) {
    k = nextBucket(k);
    if (k < NBUCKETS) b = <usize> load<u32>(freeHeads + (<usize> k << 2));
  }
  if (b == 0) {
    b = bump;
    bump += s;
    ensureMemory(bump);
    store<u32>(b, s | USED); // the block below the top is never free
    return b + 4;
  }
  const have = load<u32>(b); // a free block's header is its size
  unlinkFree(b, have);
  if (have - s >= MIN_BLOCK) {
    store<u32>(b, s | USED);
    linkFree(b + s, have - s);
  } else {
    store<u32>(b, have | USED);
    const above = b + have;
    if (above != bump) store<u32>(above, load<u32>(above) & ~PREV_FREE);
  }
  return b + 4;
}

/** Gives back a block from `alloc` (`size` as asked for; the block knows its own). */
function free(p: usize, size: usize): void {
  let b = p - 4;
  const h = load<u32>(b);
  let s = h & ~FLAGS;
  if (h & PREV_FREE) {
    // Merge with the free block below (its footer is the word before this block).
    const below = load<u32>(b - 4);
    b -= below;
    unlinkFree(b, below);
    s += below;
  }
  // Merge with the free block above, or give the bytes back to the top.
  const above = b + s;
  if (above == bump) {
    bump = b;
    return;
  }
  const tag = load<u32>(above);
  if ((tag & USED) == 0) {
    unlinkFree(above, tag);
    s += tag;
  }
  linkFree(b, s);
}

function ensureMemory(top: usize): void {
  const have = <usize> memory.size() << 16;
  if (top <= have) return;
  const cur = memory.size();
  const need = <i32> ((top - have + 0xffff) >>> 16);
  const want = max(need, max(cur >> 2, 16));
  if (memory.grow(want) < 0) {
    if (memory.grow(need) < 0) unreachable(); // out of memory
  }
}

// ---- hashing ----

// @ts-ignore: decorator
@inline function fmix(h: u32): u32 {
  h ^= h >>> 16;
  h *= 0x85ebca6b;
  h ^= h >>> 13;
  h *= 0xc2b2ae35;
  h ^= h >>> 16;
  return h;
}

// SipHash-1-3 key (set by `seed` before the first subscription) and its derived initial state.
let sk0: u64 = 0;
let sk1: u64 = 0;
let subSeed: u32 = 0;

/**
 * Keyed hash of the level bytes [p, p+n): SipHash-1-3 (one compression round per 8-byte block,
 * three finalization rounds) with the secret key (sk0, sk1), folded to 32 bits. Reads only
 * [p, p+n).
 */
function hashLevel(p: usize, n: u32): u32 {
  let v0: u64 = sk0 ^ 0x736f6d6570736575;
  let v1: u64 = sk1 ^ 0x646f72616e646f6d;
  let v2: u64 = sk0 ^ 0x6c7967656e657261;
  let v3: u64 = sk1 ^ 0x7465646279746573;
  const e = p + n;
  while (p + 8 <= e) {
    const m = load<u64>(p);
    v3 ^= m;
    v0 += v1; v1 = rotl<u64>(v1, 13); v1 ^= v0; v0 = rotl<u64>(v0, 32);
    v2 += v3; v3 = rotl<u64>(v3, 16); v3 ^= v2;
    v0 += v3; v3 = rotl<u64>(v3, 21); v3 ^= v0;
    v2 += v1; v1 = rotl<u64>(v1, 17); v1 ^= v2; v2 = rotl<u64>(v2, 32);
    v0 ^= m;
    p += 8;
  }
  // The last 0–7 bytes, little-endian, with the length in the top byte.
  let b: u64 = <u64> n << 56;
  const r = <u32> (e - p);
  if (r >= 4) {
    b |= <u64> load<u32>(p);
    if (r > 4) b |= <u64> load<u8>(p + 4) << 32;
    if (r > 5) b |= <u64> load<u8>(p + 5) << 40;
    if (r > 6) b |= <u64> load<u8>(p + 6) << 48;
  } else if (r != 0) {
    b |= <u64> load<u8>(p);
    if (r > 1) b |= <u64> load<u8>(p + 1) << 8;
    if (r > 2) b |= <u64> load<u8>(p + 2) << 16;
  }
  v3 ^= b;
  v0 += v1; v1 = rotl<u64>(v1, 13); v1 ^= v0; v0 = rotl<u64>(v0, 32);
  v2 += v3; v3 = rotl<u64>(v3, 16); v3 ^= v2;
  v0 += v3; v3 = rotl<u64>(v3, 21); v3 ^= v0;
  v2 += v1; v1 = rotl<u64>(v1, 17); v1 ^= v2; v2 = rotl<u64>(v2, 32);
  v0 ^= b;
  v2 ^= 0xff;
  for (let i = 0; i < 3; i++) {
    v0 += v1; v1 = rotl<u64>(v1, 13); v1 ^= v0; v0 = rotl<u64>(v0, 32);
    v2 += v3; v3 = rotl<u64>(v3, 16); v3 ^= v2;
    v0 += v3; v3 = rotl<u64>(v3, 21); v3 ^= v0;
    v2 += v1; v1 = rotl<u64>(v1, 17); v1 ^= v2; v2 = rotl<u64>(v2, 32);
  }
  const h = v0 ^ v1 ^ v2 ^ v3;
  return <u32> h ^ <u32> (h >>> 32);
}

// @ts-ignore: decorator
@inline function edgeKey(parent: usize, h: u32): u32 {
  return fmix(h ^ (<u32> parent * 0x9e3779b1));
}

// @ts-ignore: decorator
@inline function subKey(tag: u32, id: u32): u32 {
  return fmix(fmix(id ^ subSeed) ^ tag);
}

function bytesEq(a: usize, b: usize, n: u32): bool {
  const e = a + n;
  while (a + 8 <= e) {
    if (load<u64>(a) != load<u64>(b)) return false;
    a += 8;
    b += 8;
  }
  while (a < e) {
    if (load<u8>(a) != load<u8>(b)) return false;
    a++;
    b++;
  }
  return true;
}

// ---- state ----
let root: usize = 0;
let nodeCount: u32 = 0;
let edges: usize = 0; // slots of 8 bytes
let edgeMask: u32 = 0;
let edgeCount: u32 = 0;
let subs: usize = 0; // slots of 12 bytes
let subsMask: u32 = 0;
let subsCount: u32 = 0;
let out: usize = 0; // result ids
let outCap: u32 = 0;
let frontA: usize = 0; // the nodes matching the topic so far
let frontB: usize = 0;
let frontCap: u32 = 0;
let inBuf: usize = 0; // where the host writes topics and filters
let inCap: u32 = 0;
let visited: u32 = 0; // nodes visited by the last match

function newNode(parent: usize, h: u32, p: usize, n: u32): usize {
  const node = alloc(BYTES + n);
  store<u32>(node, <u32> parent, PARENT);
  store<u32>(node, h, HASH);
  store<u32>(node, 0, PLUS);
  store<u32>(node, 0, IDS);
  store<u32>(node, 0, HASHIDS);
  store<u32>(node, 0, CHILDREN);
  store<u32>(node, n, LEN);
  store<u32>(node, 0, FIRST);
  if (n != 0) memory.copy(node + BYTES, p, n);
  nodeCount++;
  return node;
}

function freeNode(node: usize): void {
  free(node, BYTES + load<u32>(node, LEN));
  nodeCount--;
}

// ---- edge table ----

// @ts-ignore: decorator
@inline function sameLevel(node: usize, p: usize, n: u32): bool {
  return load<u32>(node, LEN) == n && bytesEq(node + BYTES, p, n);
}

/** The named child of a list-mode `parent` for level bytes [p, p+n), or 0. */
// @ts-ignore: decorator
@inline function findListed(parent: usize, p: usize, n: u32): usize {
  let c = <usize> load<u32>(parent, FIRST);
  while (c != 0) {
    if (sameLevel(c, p, n)) return c;
    c = <usize> load<u32>(c, NEXT);
  }
  return 0;
}

/** Makes `child` (level bytes [p, p+n), new) a named child of `parent`. */
function addChild(parent: usize, child: usize, p: usize, n: u32): void {
  let cc = load<u32>(parent, CHILDREN);
  if ((cc & TABLED) != 0) {
    store<u32>(child, hashLevel(p, n), HASH);
    addEdge(parent, child);
  } else if (cc < SMALL) {
    store<u32>(child, load<u32>(parent, FIRST), NEXT);
    store<u32>(parent, <u32> child, FIRST);
  } else {
    // The list is full: every child moves to the edge table, under its level hash.
    let c = <usize> load<u32>(parent, FIRST);
    while (c != 0) {
      const next = <usize> load<u32>(c, NEXT);
      store<u32>(c, hashLevel(c + BYTES, load<u32>(c, LEN)), HASH);
      addEdge(parent, c);
      c = next;
    }
    store<u32>(parent, 0, FIRST);
    store<u32>(child, hashLevel(p, n), HASH);
    addEdge(parent, child);
    cc |= TABLED;
  }
  store<u32>(parent, cc + 1, CHILDREN);
}

/** Removes the named child `child` from `parent`. */
function removeChild(parent: usize, child: usize): void {
  const cc = load<u32>(parent, CHILDREN) - 1;
  if ((cc & TABLED) != 0) {
    removeEdge(parent, child);
    // Once it has no named children left, the node starts again with a list.
    store<u32>(parent, cc == TABLED ? 0 : cc, CHILDREN);
    return;
  }
  let prev: usize = 0;
  let c = <usize> load<u32>(parent, FIRST);
  while (c != child) {
    prev = c;
    c = <usize> load<u32>(c, NEXT);
  }
  const next = load<u32>(child, NEXT);
  if (prev == 0) store<u32>(parent, next, FIRST);
  else store<u32>(prev, next, NEXT);
  store<u32>(parent, cc, CHILDREN);
}

function findEdge(parent: usize, h: u32, p: usize, n: u32): usize {
  const k = edgeKey(parent, h);
  const mask = edgeMask;
  let i = k & mask;
  while (true) {
    const s = edges + (<usize> i << 3);
    const node = <usize> load<u32>(s, 4);
    if (node == 0) return 0;
    if (
      load<u32>(s) == k && load<u32>(node, PARENT) == <u32> parent &&
      load<u32>(node, HASH) == h && sameLevel(node, p, n)
    ) return node;
    i = (i + 1) & mask;
  }
}

function edgeInsertRaw(table: usize, mask: u32, k: u32, node: usize): void {
  let i = k & mask;
  while (load<u32>(table + (<usize> i << 3), 4) != 0) i = (i + 1) & mask;
  const s = table + (<usize> i << 3);
  store<u32>(s, k);
  store<u32>(s, <u32> node, 4);
}

function addEdge(parent: usize, node: usize): void {
  if ((edgeCount + 1) * 4 > (edgeMask + 1) * 3) {
    const oldCap = edgeMask + 1;
    const cap = oldCap << 1;
    const table = alloc(<usize> cap << 3);
    memory.fill(table, 0, <usize> cap << 3);
    for (let i: u32 = 0; i < oldCap; i++) {
      const s = edges + (<usize> i << 3);
      const child = <usize> load<u32>(s, 4);
      if (child != 0) edgeInsertRaw(table, cap - 1, load<u32>(s), child);
    }
    free(edges, <usize> oldCap << 3);
    edges = table;
    edgeMask = cap - 1;
  }
  edgeInsertRaw(edges, edgeMask, edgeKey(parent, load<u32>(node, HASH)), node);
  edgeCount++;
}

function removeEdge(parent: usize, node: usize): void {
  const mask = edgeMask;
  let i = edgeKey(parent, load<u32>(node, HASH)) & mask;
  while (load<u32>(edges + (<usize> i << 3), 4) != <u32> node) i = (i + 1) & mask;
  // Backward-shift deletion keeps probe sequences intact without tombstones.
  let j = i;
  while (true) {
    j = (j + 1) & mask;
    const sj = edges + (<usize> j << 3);
    if (load<u32>(sj, 4) == 0) break;
    const ideal = load<u32>(sj) & mask;
    // Move slot j into the hole at i unless its ideal slot lies cyclically in (i, j].
    if (((j - ideal) & mask) >= ((j - i) & mask)) {
      store<u64>(edges + (<usize> i << 3), load<u64>(sj));
      i = j;
    }
  }
  store<u64>(edges + (<usize> i << 3), 0);
  edgeCount--;
}

// ---- subscription table ----

/** Slot of (tag, id), or 0. */
function findSub(tag: u32, id: u32): usize {
  const mask = subsMask;
  let i = subKey(tag, id) & mask;
  while (true) {
    const s = subs + <usize> i * 12;
    const t = load<u32>(s);
    if (t == 0) return 0;
    if (t == tag && load<u32>(s, 4) == id) return s;
    i = (i + 1) & mask;
  }
}

function subInsertRaw(table: usize, mask: u32, tag: u32, id: u32, pos: u32): void {
  let i = subKey(tag, id) & mask;
  while (load<u32>(table + <usize> i * 12) != 0) i = (i + 1) & mask;
  const s = table + <usize> i * 12;
  store<u32>(s, tag);
  store<u32>(s, id, 4);
  store<u32>(s, pos, 8);
}

function addSub(tag: u32, id: u32, pos: u32): void {
  if ((subsCount + 1) * 4 > (subsMask + 1) * 3) {
    const oldCap = subsMask + 1;
    const cap = oldCap << 1;
    const table = alloc(<usize> cap * 12);
    memory.fill(table, 0, <usize> cap * 12);
    for (let i: u32 = 0; i < oldCap; i++) {
      const s = subs + <usize> i * 12;
      const t = load<u32>(s);
      if (t != 0) subInsertRaw(table, cap - 1, t, load<u32>(s, 4), load<u32>(s, 8));
    }
    free(subs, <usize> oldCap * 12);
    subs = table;
    subsMask = cap - 1;
  }
  subInsertRaw(subs, subsMask, tag, id, pos);
  subsCount++;
}

function removeSubSlot(s: usize): void {
  const mask = subsMask;
  let i = <u32> ((s - subs) / 12);
  let j = i;
  while (true) {
    j = (j + 1) & mask;
    const sj = subs + <usize> j * 12;
    const t = load<u32>(sj);
    if (t == 0) break;
    const ideal = subKey(t, load<u32>(sj, 4)) & mask;
    if (((j - ideal) & mask) >= ((j - i) & mask)) {
      const si = subs + <usize> i * 12;
      store<u64>(si, load<u64>(sj));
      store<u32>(si, load<u32>(sj, 8), 8);
      i = j;
    }
  }
  const si = subs + <usize> i * 12;
  store<u64>(si, 0);
  store<u32>(si, 0, 8);
  subsCount--;
}

// ---- id lists ----

/** Appends `id` to the list in field `field` of a node (creating or growing it); returns its index. */
function listPush(field: usize, id: u32): u32 {
  let list = <usize> load<u32>(field);
  if (list == 0) {
    list = alloc(16);
    store<u32>(list, 0);
    store<u32>(list, 2, 4);
    store<u32>(field, <u32> list);
  }
  const n = load<u32>(list);
  const cap = load<u32>(list, 4);
  if (n == cap) {
    // Block sizes double: 16, 32, 64, … bytes (8 header bytes + ids).
    const size: usize = 8 + (<usize> cap << 2);
    const bigger = alloc(size << 1);
    memory.copy(bigger, list, size);
    store<u32>(bigger, <u32> (((size << 1) - 8) >> 2), 4);
    free(list, size);
    list = bigger;
    store<u32>(field, <u32> list);
  }
  store<u32>(list + 8 + (<usize> n << 2), id);
  store<u32>(list, n + 1);
  return n;
}

// ---- level walking ----

/** End of the level starting at p (the next '/' or e). */
// @ts-ignore: decorator
@inline function levelEnd(p: usize, e: usize): usize {
  while (p + 16 <= e) {
    const m = i8x16.bitmask(i8x16.eq(v128.load(p), i8x16.splat(<i8> SLASH)));
    if (m != 0) return p + ctz<u32>(m);
    p += 16;
  }
  while (p < e && load<u8>(p) != SLASH) p++;
  return p;
}

/**
 * The node and list field for filter [ptr, ptr+len); creates missing nodes when `create`.
 * Returns the address of the node's IDS or HASHIDS field, or 0 when absent; sets `located`
 * to that node.
 */
let located: usize = 0;

function locate(ptr: usize, len: u32, create: bool): usize {
  let node = root;
  let p = ptr;
  const e = ptr + len;
  while (true) {
    const q = levelEnd(p, e);
    const n = <u32> (q - p);
    if (n == 1 && q == e && load<u8>(p) == HASH_CHAR) {
      located = node;
      return node + HASHIDS; // "…/#" [MQTT-4.7.1-2 v3.1.1][MQTT-4.7.1-1 v5]
    }
    let child: usize;
    if (n == 1 && load<u8>(p) == PLUS_CHAR) {
      child = <usize> load<u32>(node, PLUS);
      if (child == 0) {
        if (!create) return 0;
        child = newNode(node, 0, p, 0);
        store<u32>(node, <u32> child, PLUS);
      }
    } else {
      child = (load<u32>(node, CHILDREN) & TABLED) != 0
        ? findEdge(node, hashLevel(p, n), p, n)
        : findListed(node, p, n);
      if (child == 0) {
        if (!create) return 0;
        child = newNode(node, 0, p, n);
        addChild(node, child, p, n);
      }
    }
    node = child;
    if (q == e) {
      located = node;
      return node + IDS;
    }
    p = q + 1;
  }
}

/** Frees empty nodes from `node` up towards the root. */
function prune(node: usize): void {
  while (
    node != root && load<u32>(node, IDS) == 0 && load<u32>(node, HASHIDS) == 0 &&
    load<u32>(node, PLUS) == 0 && load<u32>(node, CHILDREN) == 0
  ) {
    const parent = <usize> load<u32>(node, PARENT);
    if (<usize> load<u32>(parent, PLUS) == node) {
      store<u32>(parent, 0, PLUS);
    } else {
      removeChild(parent, node);
    }
    freeNode(node);
    node = parent;
  }
}

// ---- exports ----

/** Returns an input region of at least `cap` bytes for topics and filters (may grow memory). */
export function input(cap: u32): usize {
  if (cap > inCap) {
    if (inBuf != 0) free(inBuf, <usize> inCap + 16);
    let c: u32 = 256;
    while (c < cap) c <<= 1;
    inBuf = alloc(<usize> c + 16);
    inCap = c;
  }
  return inBuf;
}

/** Adds subscription `id` under the filter at [ptr, ptr+len). Returns 1, or 0 if it exists. */
export function add(ptr: usize, len: u32, id: u32): u32 {
  const field = locate(ptr, len, true);
  const node = located;
  const tag = field - node == HASHIDS ? <u32> node + 1 : <u32> node;
  if (findSub(tag, id) != 0) return 0;
  const pos = listPush(field, id);
  addSub(tag, id, pos);
  return 1;
}

/** Removes subscription `id` under the filter at [ptr, ptr+len). Returns 1, or 0 if absent. */
export function remove(ptr: usize, len: u32, id: u32): u32 {
  const field = locate(ptr, len, false);
  if (field == 0) return 0;
  const node = located;
  const tag = field - node == HASHIDS ? <u32> node + 1 : <u32> node;
  const s = findSub(tag, id);
  if (s == 0) return 0;
  const pos = load<u32>(s, 8);
  removeSubSlot(s);
  const list = <usize> load<u32>(field);
  const last = load<u32>(list) - 1;
  if (pos != last) {
    const moved = load<u32>(list + 8 + (<usize> last << 2));
    store<u32>(list + 8 + (<usize> pos << 2), moved);
    store<u32>(findSub(tag, moved), pos, 8);
  }
  if (last == 0) {
    free(list, 8 + (<usize> load<u32>(list, 4) << 2));
    store<u32>(field, 0);
    prune(node);
  } else {
    store<u32>(list, last);
  }
  return 1;
}

// @ts-ignore: decorator
@inline function emit(list: usize, count: u32): u32 {
  const n = load<u32>(list);
  if (count + n > outCap) {
    let c = outCap << 1;
    while (c < count + n) c <<= 1;
    const bigger = alloc(<usize> c << 2);
    memory.copy(bigger, out, <usize> count << 2);
    free(out, <usize> outCap << 2);
    out = bigger;
    outCap = c;
  }
  const dst = out + (<usize> count << 2);
  if (n <= 8) {
    // A loop beats memory.copy (an engine call) for the short lists most nodes have.
    for (let i: usize = 0; i < <usize> n; i++) {
      store<u32>(dst + (i << 2), load<u32>(list + 8 + (i << 2)));
    }
  } else {
    memory.copy(dst, list + 8, <usize> n << 2);
  }
  return count + n;
}

/**
 * Matches the topic name at [ptr, ptr+len) (anywhere in memory) against every filter; writes
 * the ids of matching subscriptions (once per matching filter) at `result()` and returns their
 * number. The topic is read only; this is the entry point for a fused decode-and-match step.
 */
export function match(ptr: usize, len: u32): u32 {
  let count: u32 = 0;
  let a = frontA;
  let b = frontB;
  store<u32>(a, <u32> root);
  let na: u32 = 1;
  visited = 0;
  // [MQTT-4.7.2-1] a topic starting with '$' is not matched by a first-level '#' or '+'.
  let wild = !(len != 0 && load<u8>(ptr) == DOLLAR);
  let p = ptr;
  const e = ptr + len;
  while (true) {
    const q = levelEnd(p, e);
    const n = <u32> (q - p);
    let h: u32 = 0; // hashed only when some node of the frontier needs its edge table
    let hashed = false;
    if (na << 1 > frontCap) {
      const c = frontCap << 1;
      const a2 = alloc(<usize> c << 2);
      const b2 = alloc(<usize> c << 2);
      memory.copy(a2, a, <usize> na << 2);
      free(frontA, <usize> frontCap << 2);
      free(frontB, <usize> frontCap << 2);
      frontA = a = a2;
      frontB = b = b2;
      frontCap = c;
    }
    visited += na;
    let nb: u32 = 0;
    for (let i: u32 = 0; i < na; i++) {
      const node = <usize> load<u32>(a + (<usize> i << 2));
      if (wild) {
        // "<path>/#" matches every topic below <path> [MQTT-4.7.1-2 v3.1.1][MQTT-4.7.1-1 v5]
        const hl = <usize> load<u32>(node, HASHIDS);
        if (hl != 0) count = emit(hl, count);
        // '+' matches exactly one level [MQTT-4.7.1-3 v3.1.1][MQTT-4.7.1-2 v5].
        const plus = load<u32>(node, PLUS);
        if (plus != 0) {
          store<u32>(b + (<usize> nb << 2), plus);
          nb++;
        }
      }
      // A few named children are compared byte for byte; only a node with more needs the
      // level's hash (computed once per level, for the first such node).
      const cc = load<u32>(node, CHILDREN);
      if (cc != 0) {
        let child: usize;
        if ((cc & TABLED) != 0) {
          if (!hashed) {
            h = hashLevel(p, n);
            hashed = true;
          }
          child = findEdge(node, h, p, n);
        } else {
          child = findListed(node, p, n);
        }
        if (child != 0) {
          store<u32>(b + (<usize> nb << 2), <u32> child);
          nb++;
        }
      }
    }
    if (nb == 0) return count;
    const t = a;
    a = b;
    b = t;
    na = nb;
    wild = true;
    if (q == e) break;
    p = q + 1;
  }
  visited += na;
  for (let i: u32 = 0; i < na; i++) {
    const node = <usize> load<u32>(a + (<usize> i << 2));
    const l = <usize> load<u32>(node, IDS);
    if (l != 0) count = emit(l, count);
    const hl = <usize> load<u32>(node, HASHIDS); // "<path>/#" also matches <path> itself
    if (hl != 0) count = emit(hl, count);
  }
  return count;
}

/**
 * Trie nodes the last `match` visited (the sum of the frontier sizes over the levels): a
 * measure of its work that depends on the filters that match the topic so far, never on the
 * others. For tests.
 */
export function lastVisited(): u32 {
  return visited;
}

/**
 * Sets the secret key of the level hash (SipHash-1-3, 128 bits as four u32 words) and of the
 * subscription table. The host calls it once with cryptographically random words, before the
 * first `add`; later calls are ignored (hashes already stored would no longer be found).
 */
export function seed(a: u32, b: u32, c: u32, d: u32): void {
  if (nodeCount != 1 || subsCount != 0) return;
  sk0 = <u64> a | (<u64> b << 32);
  sk1 = <u64> c | (<u64> d << 32);
  subSeed = fmix(a ^ c) ^ d;
}

/** The level hash of the bytes at [ptr, ptr+len) under this instance's key. For tests. */
export function levelHash(ptr: usize, len: u32): u32 {
  return hashLevel(ptr, len);
}

/**
 * The longest probe sequence in the edge table: how many slots past its home slot the furthest
 * displaced child lies (0 = every child in its home slot). A lookup never walks further than
 * this; hash flooding would make it grow with the number of children. For tests.
 */
export function longestProbe(): u32 {
  const mask = edgeMask;
  let longest: u32 = 0;
  for (let i: u32 = 0; i <= mask; i++) {
    const s = edges + (<usize> i << 3);
    if (load<u32>(s, 4) == 0) continue;
    const d = (i - load<u32>(s)) & mask;
    if (d > longest) longest = d;
  }
  return longest;
}

/** Address of the ids written by the last `match`. */
export function result(): usize {
  return out;
}

/** Capacity of the result region in ids; the region moves only when a match needs more. */
export function resultCap(): u32 {
  return outCap;
}

/** Number of (filter, id) subscriptions. */
export function size(): u32 {
  return subsCount;
}

/** Number of live trie nodes (including the root). */
export function nodes(): u32 {
  return nodeCount;
}

/**
 * Top of the heap: the end of the highest block in use (blocks below it are in use or free for
 * reuse; a block freed at the top lowers it).
 */
export function heapTop(): usize {
  return bump;
}

// ---- initial state ----
root = newNode(0, 0, 0, 0);
edgeMask = 1023;
edges = alloc(<usize> (edgeMask + 1) << 3);
memory.fill(edges, 0, <usize> (edgeMask + 1) << 3);
subsMask = 1023;
subs = alloc(<usize> (subsMask + 1) * 12);
memory.fill(subs, 0, <usize> (subsMask + 1) * 12);
outCap = 256;
out = alloc(<usize> outCap << 2);
frontCap = 64;
frontA = alloc(<usize> frontCap << 2);
frontB = alloc(<usize> frontCap << 2);
input(256);
