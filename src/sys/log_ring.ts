/**
 * The last lines of the broker's log, kept in memory for the web console's live tail: a ring of
 * at most `capacity` lines fed by a Logger tap (src/sys/log.ts), each with a sequence number so a
 * reader asks only for what came after the last line it has.
 */
import type { Logger, LogTap, LogType } from "./log.ts";

/** One logged line. */
export interface LogEntry {
  /** Increases by one per line, from 1. */
  seq: number;
  /** ms since the epoch. */
  time: number;
  type: LogType;
  text: string;
}

/** Lines kept by default: a few minutes of a busy broker's connection messages. */
export const LOG_RING_LINES = 2000;
/** Longest text kept per line; longer ones are cut (a huge client id must not pin memory). */
export const LOG_LINE_CHARS = 2000;

/** A bounded ring of log lines. */
export class LogRing {
  readonly capacity: number;
  #lines: (LogEntry | undefined)[];
  #next = 1;
  #logger: Logger | null = null;
  readonly #tap: LogTap = (type, text, time) => this.add(type, text, time);

  constructor(capacity = LOG_RING_LINES) {
    this.capacity = capacity;
    this.#lines = new Array(capacity);
  }

  /** Start receiving `logger`'s lines. */
  attach(logger: Logger): void {
    this.detach();
    this.#logger = logger;
    logger.addTap(this.#tap);
  }

  /** Stop receiving lines. */
  detach(): void {
    this.#logger?.removeTap(this.#tap);
    this.#logger = null;
  }

  /** Record one line. */
  add(type: LogType, text: string, time = Date.now()): void {
    const seq = this.#next++;
    const t = text.length > LOG_LINE_CHARS ? text.slice(0, LOG_LINE_CHARS) + "…" : text;
    this.#lines[seq % this.capacity] = { seq, time, type, text: t };
  }

  /** The sequence number of the newest line (0 when none). */
  get last(): number {
    return this.#next - 1;
  }

  /**
   * Lines after `since`, oldest first, at most `limit` (the newest ones), whose text contains
   * `filter` (case-insensitive) when given, and whose type is in `types` when given.
   */
  read(since: number, limit: number, filter = "", types?: ReadonlySet<string>): LogEntry[] {
    const out: LogEntry[] = [];
    const needle = filter.toLowerCase();
    const first = Math.max(since + 1, this.#next - this.capacity, 1);
    for (let seq = this.#next - 1; seq >= first && out.length < limit; seq--) {
      const e = this.#lines[seq % this.capacity];
      if (!e || e.seq !== seq) continue;
      if (types && !types.has(e.type)) continue;
      if (needle && !e.text.toLowerCase().includes(needle)) continue;
      out.push(e);
    }
    return out.reverse();
  }
}
