// Topic matching benchmark: the WASM TopicMatcher against a plain TypeScript trie (Map of Maps).
// Run: node scripts/build-wasm.mjs, then
//   bun --expose-gc bench/match.ts   |   deno run -A --v8-flags=--expose-gc bench/match.ts
// (without an exposed gc the JS heap of the TypeScript trie is not reported).
// Optional argument: subscription counts (default 30,100000,1000000; 30 fits in cache and shows
// the per-call overhead).
//
// Subscriptions, in equal thirds:
//   devices/dev<i>/+/temp      one per device
//   site/<i>/#                 one per site
//   plant/<i % 100>/line/<i>/status   exact topics
// Topics (hit = matches exactly one subscription; miss = matches none):
//   hit:  devices/dev<k>/sensor1/temp, site/<k>/floor2/room7/co2, plant/<k%100>/line/<k>/status
//   miss: devices/dev<k>/sensor1/humidity (fails at the last level), site/x<k>/a (2nd level),
//         other/<k>/x (1st level)

import { loadavg } from "node:os";
import process from "node:process";
import { TopicMatcher } from "../src/broker/matcher.ts";

/**
 * The obvious TypeScript trie: a Map per node, split("/") per topic; frontier and result arrays
 * are reused between calls.
 */
class TsNode {
  children = new Map<string, TsNode>();
  plus: TsNode | undefined;
  ids: number[] = [];
  hashIds: number[] = [];
}

class TsTrie {
  root = new TsNode();
  out = new Uint32Array(1024);
  count = 0;

  add(filter: string, id: number): void {
    const levels = filter.split("/");
    let node = this.root;
    for (let i = 0; i < levels.length; i++) {
      const l = levels[i];
      if (l === "#") {
        node.hashIds.push(id);
        return;
      }
      let next: TsNode | undefined;
      if (l === "+") next = node.plus ??= new TsNode();
      else {
        next = node.children.get(l);
        if (!next) node.children.set(l, next = new TsNode());
      }
      node = next;
    }
    node.ids.push(id);
  }

  #emit(ids: number[]): void {
    if (this.count + ids.length > this.out.length) {
      const bigger = new Uint32Array(Math.max(this.out.length * 2, this.count + ids.length));
      bigger.set(this.out);
      this.out = bigger;
    }
    for (let i = 0; i < ids.length; i++) this.out[this.count++] = ids[i];
  }

  #a: TsNode[] = [];
  #b: TsNode[] = [];

  /** Returns the number of ids written to `out`. */
  match(topic: string): number {
    this.count = 0;
    const levels = topic.split("/");
    let front = this.#a;
    let next = this.#b;
    front[0] = this.root;
    let n = 1;
    const dollar = topic.charCodeAt(0) === 0x24;
    for (let i = 0; i < levels.length; i++) {
      const wild = i > 0 || !dollar;
      let m = 0;
      for (let j = 0; j < n; j++) {
        const node = front[j];
        if (wild) {
          if (node.hashIds.length) this.#emit(node.hashIds);
          if (node.plus) next[m++] = node.plus;
        }
        const c = node.children.get(levels[i]);
        if (c) next[m++] = c;
      }
      if (m === 0) return this.count;
      const t = front;
      front = next;
      next = t;
      n = m;
    }
    for (let j = 0; j < n; j++) {
      const node = front[j];
      if (node.ids.length) this.#emit(node.ids);
      if (node.hashIds.length) this.#emit(node.hashIds);
    }
    return this.count;
  }
}

function filterOf(i: number): string {
  switch (i % 3) {
    case 0:
      return `devices/dev${i}/+/temp`;
    case 1:
      return `site/${i}/#`;
    default:
      return `plant/${i % 100}/line/${i}/status`;
  }
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();
/** A flat string, as TextDecoder (the packet decoder) produces; template literals make ropes. */
const flat = (s: string) => decoder.decode(encoder.encode(s));

function topics(n: number, hit: boolean): string[] {
  const out: string[] = [];
  for (let j = 0; j < 3000; j++) {
    const k = (Math.imul(j, 2654435761) >>> 0) % n;
    const i = k - (k % 3) + (j % 3); // a subscription index of the wanted shape
    const s = Math.min(i, n - 3 + (j % 3));
    if (hit) {
      out.push(
        j % 3 === 0
          ? `devices/dev${s}/sensor1/temp`
          : j % 3 === 1
          ? `site/${s}/floor2/room7/co2`
          : `plant/${s % 100}/line/${s}/status`,
      );
    } else {
      out.push(
        j % 3 === 0
          ? `devices/dev${s}/sensor1/humidity`
          : j % 3 === 1
          ? `site/x${s}/a`
          : `other/${s}/x`,
      );
    }
  }
  return out.map(flat);
}

/**
 * Calls per CPU-second of fn(0 … count-1): `slices` runs of about `ms` ms each; returns the
 * median and the best slice. CPU time (all threads of the process) rather than wall time, as
 * the machine is shared. Checks the number of results first.
 */
function rate(
  count: number,
  fn: (i: number) => number,
  expectEach: number,
  slices = 9,
  ms = 80,
): { median: number; best: number } {
  let total = 0;
  for (let i = 0; i < count; i++) total += fn(i); // warm-up and check
  if (total !== expectEach * count) {
    throw new Error(`wrong result count ${total}, expected ${expectEach * count}`);
  }
  const rates: number[] = [];
  let sink = 0;
  for (let s = 0; s < slices; s++) {
    let calls = 0;
    const start = performance.now();
    const cpu = process.cpuUsage();
    while (performance.now() - start < ms) {
      for (let i = 0; i < count; i++) sink += fn(i);
      calls += count;
    }
    const used = process.cpuUsage(cpu); // µs of CPU: robust against other load on the machine
    rates.push(calls / ((used.user + used.system) / 1e6));
  }
  if (sink < 0) console.log(sink);
  rates.sort((a, b) => a - b);
  return { median: rates[rates.length >> 1], best: rates[rates.length - 1] };
}

/** Add rates of tiny sets are dominated by warm-up; not shown. */
function addRate(n: number, r: number): string {
  return n < 10000 ? "" : fmt(r);
}

function cpuSeconds(since: { user: number; system: number }): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1e6;
}

function fmt(r: number | { median: number; best: number }): string {
  if (typeof r !== "number") return `${fmt(r.median)} (${fmt(r.best)})`;
  return r >= 1e6 ? `${(r / 1e6).toFixed(2)} M/s` : `${(r / 1e3).toFixed(0)} k/s`;
}

/** JS heap in use after a full GC, in MB; NaN unless the runtime exposes `gc` (see the header). */
function heapMB(): number {
  // deno-lint-ignore no-explicit-any
  const gc = (globalThis as any).gc;
  if (typeof gc !== "function") return NaN;
  gc();
  return process.memoryUsage().heapUsed / 1048576;
}

const runtime = navigator.userAgent;
const sizes =
  (typeof process !== "undefined" && process.argv[2] ? process.argv[2] : "30,100000,1000000")
    .split(",").map(Number);
console.log(`# topic matching, ${runtime}, load average ${loadavg()[0].toFixed(1)}`);
console.log("rates per CPU-second; match rates: median of 9 slices (best slice)");
console.log("| subs | impl | add/s | hit match/s | miss match/s | memory |");
console.log("|---:|---|---:|---:|---:|---:|");

for (const n of sizes) {
  const hits = topics(n, true);
  const misses = topics(n, false);

  const m = new TopicMatcher();
  let cpu0 = process.cpuUsage();
  for (let i = 0; i < n; i++) m.add(filterOf(i), i);
  const wasmAdd = n / cpuSeconds(cpu0);
  const wasmHit = rate(hits.length, (i) => m.match(hits[i]).length, 1);
  const wasmMiss = rate(misses.length, (i) => m.match(misses[i]).length, 0);
  const wasmMem = m.wasm.memory.buffer.byteLength / 1048576;
  console.log(
    `| ${n} | WASM TopicMatcher.match(string) | ${addRate(n, wasmAdd)} | ${fmt(wasmHit)} | ${
      fmt(wasmMiss)
    } | ${wasmMem.toFixed(0)} MB WASM memory |`,
  );

  // The WASM walk alone: topic bytes already in WASM memory (what a fused decode+match sees).
  const ex = m.wasm;
  const place = (list: string[]) => {
    const bytes = list.map((t) => encoder.encode(t));
    const total = bytes.reduce((s, b) => s + b.length, 0);
    const base = ex.input(total);
    const mem = new Uint8Array(ex.memory.buffer);
    const at: number[] = [];
    let off = base;
    for (const b of bytes) {
      mem.set(b, off);
      at.push(off, b.length);
      off += b.length;
    }
    return at;
  };
  const rawRate = (at: number[], expectEach: number) => {
    return rate(at.length / 2, (i) => ex.match(at[2 * i], at[2 * i + 1]), expectEach);
  };
  const rawHit = rawRate(place(hits), 1);
  const rawMiss = rawRate(place(misses), 0);
  console.log(
    `| ${n} | WASM match(ptr, len), bytes in place | | ${fmt(rawHit)} | ${fmt(rawMiss)} | |`,
  );

  const heap0 = heapMB();
  const ts = new TsTrie();
  cpu0 = process.cpuUsage();
  for (let i = 0; i < n; i++) ts.add(filterOf(i), i);
  const tsAdd = n / cpuSeconds(cpu0);
  const tsMem = heapMB() - heap0;
  const tsHit = rate(hits.length, (i) => ts.match(hits[i]), 1);
  const tsMiss = rate(misses.length, (i) => ts.match(misses[i]), 0);
  console.log(
    `| ${n} | TypeScript Map trie | ${addRate(n, tsAdd)} | ${fmt(tsHit)} | ${fmt(tsMiss)} | ${
      isNaN(tsMem) ? "?" : `${tsMem.toFixed(0)} MB JS heap`
    } |`,
  );
}
