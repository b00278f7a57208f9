// Level names that all collide under the matcher's former level hash (MurmurHash3-style, fixed
// seed, invertible): the hash-flooding attack that a keyed hash defeats. Used by bench/hashflood.ts
// and tests/matcher.test.ts. The former hash lives only here, to generate the attack.

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;
const SEED = 0x9747b28c;

const rotl = (x: number, r: number) => ((x << r) | (x >>> (32 - r))) >>> 0;
const rotr = (x: number, r: number) => ((x >>> r) | (x << (32 - r))) >>> 0;

/** The multiplicative inverse of an odd number modulo 2^32. */
function inverse(a: number): number {
  let x = a; // correct to 3 bits; each step doubles them
  for (let i = 0; i < 5; i++) x = Math.imul(x, 2 - Math.imul(a, x));
  return x >>> 0;
}
const INV_C1 = inverse(C1);
const INV_C2 = inverse(C2);
const INV_5 = inverse(5);

function mixBlock(k: number): number {
  return Math.imul(rotl(Math.imul(k, C1) >>> 0, 15), C2) >>> 0;
}

function step(h: number, k: number): number {
  return (Math.imul(rotl((h ^ mixBlock(k)) >>> 0, 13), 5) + 0xe6546b64) >>> 0;
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The former level hash of the matcher (wasm/assembly/matcher.ts before it was keyed). */
export function oldLevelHash(bytes: Uint8Array): number {
  const n = bytes.length;
  let h = (SEED ^ n) >>> 0;
  let p = 0;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, n);
  for (; p + 4 <= n; p += 4) h = step(h, dv.getUint32(p, true));
  if (p < n) {
    let k = bytes[p];
    if (p + 1 < n) k |= bytes[p + 1] << 8;
    if (p + 2 < n) k |= bytes[p + 2] << 16;
    h = (h ^ mixBlock(k >>> 0)) >>> 0;
  }
  return fmix(h);
}

/** Printable ASCII that a topic level may hold (no '/', '+', '#'). */
function allowed(c: number): boolean {
  return c >= 0x21 && c <= 0x7e && c !== 0x2f && c !== 0x2b && c !== 0x23;
}

/**
 * `count` distinct 8-byte level names with the same former hash: for a first half chosen at
 * random, the second half that brings the hash state to a fixed target is computed by inverting
 * the block step; it is kept when its bytes are printable. Deterministic for a given `salt`.
 */
export function collidingLevels(count: number, salt = 1): string[] {
  let seed = salt >>> 0;
  const rand = () => {
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
  const h0 = (SEED ^ 8) >>> 0;
  const target = step(step(h0, 0x61616161), 0x61616161); // the state after "aaaaaaaa"
  const need = rotr(Math.imul((target - 0xe6546b64) >>> 0, INV_5) >>> 0, 13);
  const out = new Set<string>();
  const b = new Uint8Array(8);
  while (out.size < count) {
    for (let i = 0; i < 4; i++) b[i] = 0x30 + (rand() % 75); // '0'..'z'
    if (!allowed(b[0]) || !allowed(b[1]) || !allowed(b[2]) || !allowed(b[3])) continue;
    const k1 = b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24);
    const h1 = step(h0, k1 >>> 0);
    const mixed = (need ^ h1) >>> 0;
    const k2 = Math.imul(rotr(Math.imul(mixed, INV_C2) >>> 0, 15), INV_C1) >>> 0;
    b[4] = k2 & 0xff;
    b[5] = (k2 >>> 8) & 0xff;
    b[6] = (k2 >>> 16) & 0xff;
    b[7] = k2 >>> 24;
    if (!allowed(b[4]) || !allowed(b[5]) || !allowed(b[6]) || !allowed(b[7])) continue;
    out.add(String.fromCharCode(...b));
  }
  return [...out];
}

/** `count` distinct random 8-byte level names of the same alphabet: the control. */
export function randomLevels(count: number, salt = 1): string[] {
  let seed = salt >>> 0;
  const out = new Set<string>();
  while (out.size < count) {
    let s = "";
    for (let i = 0; i < 8; i++) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      s += String.fromCharCode(0x30 + ((seed >>> 24) % 75));
    }
    if (![...s].every((c) => allowed(c.charCodeAt(0)))) continue;
    out.add(s);
  }
  return [...out];
}
