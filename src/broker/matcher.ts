// The subscription matcher: a topic trie held in WASM memory (wasm/assembly/matcher.ts).
// One `match` call writes the topic's UTF-8 bytes into WASM memory and makes one WASM call that
// walks the trie and writes every matching subscriber id into a result region.

import { base64ToBytes } from "../codec/wasm.ts";
import { matcherWasm } from "../codec/wasm_bytes.generated.ts";
import { validTopicFilter } from "./topic.ts";

/** The functions exported by matcher.wasm (see wasm/assembly/matcher.ts). */
export interface MatcherExports {
  memory: WebAssembly.Memory;
  /** Returns an input region of at least `cap` bytes (may grow memory). */
  input(cap: number): number;
  add(ptr: number, len: number, id: number): number;
  remove(ptr: number, len: number, id: number): number;
  /** Matches the topic bytes at [ptr, ptr+len) of WASM memory; returns the number of ids. */
  match(ptr: number, len: number): number;
  /** Address of the ids written by the last match. */
  result(): number;
  /** Capacity of the result region (ids); it moves only when a match needs more. */
  resultCap(): number;
  /** Trie nodes visited by the last match (a measure of its work). */
  lastVisited(): number;
  size(): number;
  nodes(): number;
  heapTop(): number;
  /** Sets the secret 128-bit key of the level hash; once, before the first add. */
  seed(a: number, b: number, c: number, d: number): void;
  /** The keyed level hash of the bytes at [ptr, ptr+len). */
  levelHash(ptr: number, len: number): number;
  /** The longest probe sequence in the edge table (slots past the home slot). */
  longestProbe(): number;
}

let compiled: WebAssembly.Module | undefined;

function wasmModule(): WebAssembly.Module {
  // Compiled once; every TopicMatcher gets its own instance (and memory).
  compiled ??= new WebAssembly.Module(base64ToBytes(matcherWasm) as Uint8Array<ArrayBuffer>);
  return compiled;
}

const imports = {
  env: {
    abort(): never {
      throw new Error("matcher.wasm aborted");
    },
  },
};

const encoder = new TextEncoder();
/** Results of this many ids or fewer are returned as cached views (no allocation per match). */
const CACHED_VIEWS = 32;

/**
 * Subscriptions (topic filter, subscriber id) and matching of topic names against them.
 * Each instance owns one WASM instance (its own memory). Memory grows as needed and is reused
 * after removals. A trap inside WASM (only possible when memory cannot grow further) leaves the
 * instance unusable.
 */
export class TopicMatcher {
  /** The WASM exports, for a later fused decode-and-match step (`match(ptr, len)`). */
  readonly wasm: MatcherExports;
  #size = 0;
  #buffer!: ArrayBufferLike;
  #inPtr = 0;
  #inCap = 0;
  #in!: Uint8Array;
  #resPtr = 0;
  #resCap = 0;
  #views: Uint32Array[] = [];
  #match: (ptr: number, len: number) => number;

  constructor() {
    const instance = new WebAssembly.Instance(wasmModule(), imports);
    this.wasm = instance.exports as unknown as MatcherExports;
    // A secret key per instance for the level hash: level names that collide cannot be computed
    // from outside, so subscriptions cannot flood the hash table (see wasm/assembly/matcher.ts).
    const key = crypto.getRandomValues(new Uint32Array(4));
    this.wasm.seed(key[0], key[1], key[2], key[3]);
    this.#match = this.wasm.match;
    this.#reserve(256);
  }

  /** Number of (filter, id) entries. */
  get size(): number {
    return this.#size;
  }

  /**
   * Adds subscriber `id` (a u32 chosen by the caller) under `filter`. Returns false if that
   * (filter, id) already exists. Throws a RangeError for an invalid filter (see
   * `validTopicFilter`); "$share/…" filters are not special here (see `parseShared`).
   */
  add(filter: string, id: number): boolean {
    if (!validTopicFilter(filter)) throw new RangeError(`invalid topic filter "${filter}"`);
    const len = this.#write(filter);
    const added = this.wasm.add(this.#inPtr, len, id >>> 0) === 1;
    if (added) this.#size++;
    return added;
  }

  /** Removes subscriber `id` from `filter`. Returns false if it was not there. */
  remove(filter: string, id: number): boolean {
    if (!validTopicFilter(filter)) return false;
    const len = this.#write(filter);
    const removed = this.wasm.remove(this.#inPtr, len, id >>> 0) === 1;
    if (removed) this.#size--;
    return removed;
  }

  /**
   * All ids whose filter matches topic name `topic` (which the caller has validated, see
   * `validTopicName`); an id added under several matching filters appears once per filter, in
   * no particular order. The returned view is valid until the next call on this matcher.
   */
  match(topic: string): Uint32Array {
    const len = this.#write(topic);
    const n = this.#match(this.#inPtr, len);
    // The result region moves only when it grows; memory grows only when something is allocated.
    if (n > this.#resCap || this.#buffer.byteLength === 0) this.#refresh();
    if (n > CACHED_VIEWS) return new Uint32Array(this.#buffer, this.#resPtr, n);
    return this.#views[n] ??= new Uint32Array(this.#buffer, this.#resPtr, n);
  }

  /** Number of live trie nodes (the root included); for tests and statistics. */
  get nodeCount(): number {
    return this.wasm.nodes();
  }

  /**
   * Top of the WASM heap: the end of the highest block in use (below it, blocks in use and free
   * ones awaiting reuse); for tests and statistics.
   */
  get heapBytes(): number {
    return this.wasm.heapTop();
  }

  /**
   * The longest probe sequence in the trie's edge table: how far any lookup of a named child
   * walks past its home slot. For tests and statistics (hash flooding would make it long).
   */
  get longestProbe(): number {
    return this.wasm.longestProbe();
  }

  /** The keyed hash of one topic level under this instance's secret key; for tests. */
  levelHash(level: string): number {
    const len = this.#write(level);
    return this.wasm.levelHash(this.#inPtr, len) >>> 0;
  }

  /** Writes `s` as UTF-8 into the input region; returns the byte length. */
  #write(s: string): number {
    if (this.#buffer.byteLength === 0) this.#refresh();
    const n = s.length;
    if (n <= 32 && n <= this.#inCap) {
      // Short ASCII strings (most topics): a plain loop beats encodeInto's call overhead.
      const dst = this.#in;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        dst[i] = c;
      }
      if (i === n) return n;
    }
    let r = encoder.encodeInto(s, this.#in);
    if (r.read < n) {
      this.#reserve(n * 3);
      r = encoder.encodeInto(s, this.#in);
    }
    return r.written;
  }

  #reserve(cap: number): void {
    this.#inPtr = this.wasm.input(cap);
    this.#inCap = cap;
    this.#refresh();
  }

  #refresh(): void {
    this.#buffer = this.wasm.memory.buffer;
    this.#in = new Uint8Array(this.#buffer, this.#inPtr, this.#inCap);
    this.#resPtr = this.wasm.result();
    this.#resCap = this.wasm.resultCap();
    this.#views.length = 0;
  }
}
