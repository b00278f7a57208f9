/**
 * Logging in Mosquitto's manner: each line is `<unix seconds>: <text>` on stderr by default,
 * filtered by `log_type` (error, warning, notice, information, subscribe, unsubscribe, debug, all).
 */

export type LogType =
  | "error"
  | "warning"
  | "notice"
  | "information"
  | "subscribe"
  | "unsubscribe"
  | "websockets"
  | "debug";

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

/** A logger: `log.on(type)` tells whether a type is enabled, so callers can skip formatting. */
export class Logger {
  #enabled = new Set<LogType>();
  #timestamp: boolean;
  #sink: (line: string) => void;

  constructor(
    types: readonly string[] = ["error", "warning", "notice", "information"],
    opts: { timestamp?: boolean; sink?: (line: string) => void } = {},
  ) {
    this.#timestamp = opts.timestamp ?? true;
    this.#sink = opts.sink ?? ((line) => console.error(line));
    this.setTypes(types);
  }

  /** Replace the enabled types ("all" enables every type, "none" none). */
  setTypes(types: readonly string[]): void {
    this.#enabled.clear();
    for (const t of types) {
      if (t === "all") ALL.forEach((a) => this.#enabled.add(a));
      else if (t !== "none") this.#enabled.add(t as LogType);
    }
  }

  on(type: LogType): boolean {
    return this.#enabled.has(type);
  }

  log(type: LogType, text: string): void {
    if (!this.#enabled.has(type)) return;
    this.#sink(this.#timestamp ? `${Math.floor(Date.now() / 1000)}: ${text}` : text);
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
}

/** A logger that prints nothing (tests, embedding). */
export const silentLogger: Logger = new Logger(["none"]);
