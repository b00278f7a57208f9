/**
 * Errors that escape the code they happen in. Whatever a client sends must not end the process,
 * whether its path runs from a socket callback, a timer, a promise or a store callback: the error
 * closes that client (or drops that one message) and is logged as one line, without a stack.
 */
import type { Logger } from "../sys/log.ts";

/** Longest error text put in a log line. */
const MAX_TEXT = 300;

/** An error as one short line: its name and message, never its stack. */
export function errorText(e: unknown): string {
  const text = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  const line = text.replace(/\s+/g, " ");
  return line.length > MAX_TEXT ? line.slice(0, MAX_TEXT) + "…" : line;
}

/**
 * Run `fn` where nothing above it would catch an error (a timer, a promise callback): an error is
 * logged as one line naming `what`, and goes no further.
 */
export function safely(log: Logger, what: string, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    log.error(`Internal error in ${what}: ${errorText(e)}`);
  }
}
