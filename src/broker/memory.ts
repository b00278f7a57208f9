/** The process's memory use as memory_limit counts it: its resident set size, bytes. */
import process from "node:process";

/** Resident set size of the process (a cheap call where the runtime has `memoryUsage.rss`). */
export function processMemory(): number {
  const mu = process.memoryUsage as unknown as { rss?: () => number } & (() => { rss: number });
  return typeof mu.rss === "function" ? mu.rss() : mu().rss;
}
