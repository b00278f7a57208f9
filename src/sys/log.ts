/**
 * Logging in Mosquitto's manner: each line is `<unix seconds>: <text>`, filtered by `log_type`
 * (error, warning, notice, information, subscribe, unsubscribe, websockets, debug, all), written
 * to every `log_dest` (stdout, stderr, file <path>, topic $SYS/broker/log/<X>). `log_format =
 * "json"` writes one JSON object per line instead: {"time", "type", "message"}.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { strftime } from "./strftime.ts";

export type LogType =
  | "error"
  | "warning"
  | "notice"
  | "information"
  | "subscribe"
  | "unsubscribe"
  | "websockets"
  | "debug";

/** "text" is Mosquitto's line format; "json" one JSON object per line (JSON Lines). */
export type LogFormat = "text" | "json";

const ALL: LogType[] = [
  "error",
  "warning",
  "notice",
  "information",
  "subscribe",
  "unsubscribe",
  "websockets",
  "debug",
];

/** Mosquitto's `$SYS/broker/log/<X>` topic suffix for each type (`log_dest topic`). */
export const LOG_TOPIC: Record<LogType, string> = {
  error: "E",
  warning: "W",
  notice: "N",
  information: "I",
  subscribe: "M/subscribe",
  unsubscribe: "M/unsubscribe",
  websockets: "WS",
  debug: "D",
};

/** One destination of log lines (already formatted, without the line end). */
export interface LogSink {
  write(line: string, type: LogType): void;
  /** Release what the sink holds (an open file). */
  close?(): void;
}

/** Receives each logged line before formatting: its type, text and time (ms since the epoch). */
export type LogTap = (type: LogType, text: string, time: number) => void;

/** Options of a Logger; every field may be changed later with `configure`. */
export interface LoggerOptions {
  /** Prefix lines with the time (text: unix seconds; json: a "time" field). Default true. */
  timestamp?: boolean;
  /** strftime format of text timestamps (`log_timestamp_format`); "" = Unix seconds. */
  timestampFormat?: string;
  format?: LogFormat;
  /** Where lines go. Default: stderr. */
  sinks?: LogSink[];
  /** A single destination function (shorthand for one sink). */
  sink?: (line: string) => void;
}

/** A logger: `log.on(type)` tells whether a type is enabled, so callers can skip formatting. */
export class Logger {
  #enabled = new Set<LogType>();
  #timestamp = true;
  #timestampFormat = "";
  #format: LogFormat = "text";
  #sinks: LogSink[] = [stderrSink()];
  /** Receivers of every logged line whatever the destinations (the console's log ring). */
  #taps: LogTap[] = [];

  constructor(
    types: readonly string[] = ["error", "warning", "notice", "information"],
    opts: LoggerOptions = {},
  ) {
    this.setTypes(types);
    this.configure(opts);
  }

  /**
   * Whether "debug" is enabled: a plain field, so per-packet code (packet logging) pays one
   * property read when it is off.
   */
  debugging = false;

  /** Replace the enabled types ("all" enables every type, "none" none). */
  setTypes(types: readonly string[]): void {
    this.#enabled.clear();
    for (const t of types) {
      if (t === "all") ALL.forEach((a) => this.#enabled.add(a));
      else if (t !== "none") this.#enabled.add(t as LogType);
    }
    this.debugging = this.#enabled.has("debug");
  }

  /** Change the format, timestamps or destinations; replaced sinks are closed. */
  configure(opts: LoggerOptions): void {
    if (opts.timestamp !== undefined) this.#timestamp = opts.timestamp;
    if (opts.timestampFormat !== undefined) this.#timestampFormat = opts.timestampFormat;
    if (opts.format !== undefined) this.#format = opts.format;
    const sinks = opts.sinks ?? (opts.sink ? [{ write: opts.sink }] : undefined);
    if (sinks) {
      const old = this.#sinks;
      this.#sinks = sinks;
      for (const s of old) if (!sinks.includes(s)) s.close?.();
    }
  }

  /** The enabled types, for reporting. */
  get types(): LogType[] {
    return ALL.filter((t) => this.#enabled.has(t));
  }

  on(type: LogType): boolean {
    return this.#enabled.has(type);
  }

  /** Format one line as the configured format would (exported for tests and reuse). */
  format(type: LogType, text: string, now = Date.now()): string {
    if (this.#format === "json") {
      const o: Record<string, string> = {};
      if (this.#timestamp) o.time = new Date(now).toISOString();
      o.type = type;
      o.message = text;
      return JSON.stringify(o);
    }
    if (!this.#timestamp) return text;
    if (this.#timestampFormat) return `${strftime(this.#timestampFormat, now)}: ${text}`;
    return `${Math.floor(now / 1000)}: ${text}`;
  }

  /** Also hand every logged line (unformatted) to `tap`; kept across `configure`. */
  addTap(tap: LogTap): void {
    if (!this.#taps.includes(tap)) this.#taps.push(tap);
  }

  /** Stop handing lines to `tap`. */
  removeTap(tap: LogTap): void {
    this.#taps = this.#taps.filter((t) => t !== tap);
  }

  log(type: LogType, text: string): void {
    if (!this.#enabled.has(type)) return;
    for (const t of this.#taps) {
      try {
        t(type, text, Date.now());
      } catch {
        // A failing receiver must not take the broker down.
      }
    }
    const line = this.format(type, text);
    for (const s of this.#sinks) {
      try {
        s.write(line, type);
      } catch {
        // A failing destination (disk full) must not take the broker down.
      }
    }
  }
  error(text: string): void {
    this.log("error", text);
  }
  warning(text: string): void {
    this.log("warning", text);
  }
  notice(text: string): void {
    this.log("notice", text);
  }
  info(text: string): void {
    this.log("information", text);
  }
  debug(text: string): void {
    this.log("debug", text);
  }

  /** Close every sink (files). */
  close(): void {
    for (const s of this.#sinks) s.close?.();
    this.#sinks = [];
  }
}

/** Lines to standard output. */
export function stdoutSink(): LogSink {
  return { write: (line) => console.log(line) };
}

/** Lines to standard error. */
export function stderrSink(): LogSink {
  return { write: (line) => console.error(line) };
}

/**
 * Lines appended to a file, written synchronously (a line logged before a crash is in the file).
 * Opening happens here, so a path that cannot be written fails at start-up or reload.
 */
export function fileSink(path: string): LogSink {
  let fd: number | null = openSync(path, "a");
  return {
    write(line) {
      if (fd !== null) writeSync(fd, line + "\n");
    },
    close() {
      if (fd !== null) closeSync(fd);
      fd = null;
    },
  };
}

/**
 * Lines published to `$SYS/broker/log/<X>` (Mosquitto's `log_dest topic`). A line logged while
 * one is being published (publishing logs something) goes to the other sinks only.
 */
export function topicSink(publish: (topic: string, line: string) => void): LogSink {
  let busy = false;
  return {
    write(line, type) {
      if (busy) return;
      busy = true;
      try {
        publish(`$SYS/broker/log/${LOG_TOPIC[type]}`, line);
      } finally {
        busy = false;
      }
    },
  };
}

/**
 * The sinks for a `log_dest` list ("stdout", "stderr", "file <path>", "topic", "none").
 * `publish` is used for "topic". Throws when a file cannot be opened (nothing is left open then).
 */
export function sinksFor(
  dests: readonly string[],
  publish: (topic: string, line: string) => void,
): LogSink[] {
  const out: LogSink[] = [];
  const seen = new Set<string>();
  try {
    for (const d of dests) {
      if (d === "none" || seen.has(d)) continue;
      seen.add(d);
      if (d === "stdout") out.push(stdoutSink());
      else if (d === "stderr") out.push(stderrSink());
      else if (d === "topic") out.push(topicSink(publish));
      else if (d.startsWith("file ")) {
        const path = d.slice(5).trim();
        try {
          out.push(fileSink(path));
        } catch (e) {
          throw new Error(`log_dest: cannot open log file ${path}: ${(e as Error).message}`);
        }
      }
    }
  } catch (e) {
    for (const s of out) s.close?.();
    throw e;
  }
  return out;
}

/** A logger that prints nothing (tests, embedding). */
export const silentLogger: Logger = new Logger(["none"], { sinks: [] });
