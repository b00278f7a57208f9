/**
 * The last resort of `midge serve`: an error that escapes every handler below it (a timer, a
 * promise nobody waits on) is logged as one line, and the broker keeps serving everyone else.
 * The code paths a client can reach catch their own errors (src/broker/guard.ts); this is for
 * what they missed.
 */
import process from "node:process";
import type { Logger } from "./log.ts";
import { errorText } from "../broker/guard.ts";

/** Install the handlers once per process; later calls do nothing. */
export function installLastResort(log: Logger): void {
  if (installed) return;
  installed = true;
  process.on("uncaughtException", (e: unknown) => {
    report(log, `Internal error, not handled where it happened (still running): ${errorText(e)}`);
  });
  process.on("unhandledRejection", (e: unknown) => {
    report(log, `Internal error in a promise nobody awaited (still running): ${errorText(e)}`);
  });
}

let installed = false;

/** Log one line; if the logger itself fails, straight to stderr (a throw here would end the process). */
function report(log: Logger, line: string): void {
  try {
    log.error(line);
  } catch {
    try {
      process.stderr.write(`midge: ${line}\n`);
    } catch { /* nowhere left to say it */ }
  }
}
