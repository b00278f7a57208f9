// Hash-flooding benchmark for the topic matcher: subscribing level names that all collide under
// the matcher's former (unkeyed, invertible) level hash, against random names of the same length.
// With a keyed hash both cost the same; with the former hash the colliding names cost time
// growing with the square of their number.
// Run: node scripts/build-wasm.mjs, then
//   bun bench/hashflood.ts [names] [clients]   |   deno run -A bench/hashflood.ts [names] [clients]
// Defaults: 10,000 names, 6 clients (each client subscribes every name, with its own id, as in
// "6 clients × 10,000 subscriptions"). Times are CPU time of this process.

import process from "node:process";
import { TopicMatcher } from "../src/broker/matcher.ts";
import { collidingLevels, randomLevels } from "./hashflood_keys.ts";

const names = Number(process.argv[2] ?? 10_000);
const clients = Number(process.argv[3] ?? 6);

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** CPU seconds to add every (name, client) subscription, and to match one topic per name. */
function run(levels: string[]): { add: number; match: number } {
  const m = new TopicMatcher();
  const t0 = cpuSeconds();
  for (let c = 0; c < clients; c++) {
    for (let i = 0; i < levels.length; i++) m.add(`flood/${levels[i]}`, c * levels.length + i);
  }
  const t1 = cpuSeconds();
  let found = 0;
  for (let i = 0; i < levels.length; i++) found += m.match(`flood/${levels[i]}`).length;
  const t2 = cpuSeconds();
  if (found !== levels.length * clients) throw new Error(`matched ${found}`);
  return { add: t1 - t0, match: t2 - t1 };
}

const runtime = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined"
  ? `Bun ${(globalThis as unknown as { Bun: { version: string } }).Bun.version}`
  : `Deno ${(globalThis as unknown as { Deno: { version: { deno: string } } }).Deno.version.deno}`;
const colliding = collidingLevels(names);
const random = randomLevels(names);
run(random.slice(0, 1000)); // warm-up
const r = run(random);
const c = run(colliding);
console.log(`# hash flooding, ${runtime}, ${names} names × ${clients} clients`);
console.log(`| names | subscribe CPU s | match (one per name) CPU s |`);
console.log(`|---|---:|---:|`);
console.log(`| random | ${r.add.toFixed(3)} | ${r.match.toFixed(3)} |`);
console.log(`| colliding (former hash) | ${c.add.toFixed(3)} | ${c.match.toFixed(3)} |`);
