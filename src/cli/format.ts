/**
 * Message output for `midge sub` and `midge rr`, as mosquitto_sub prints it: the payload alone,
 * `-v` (topic, space, payload), or `-F` format strings with `%` message fields (with flags,
 * width and precision), `@` strftime time fields and `\` escapes.
 */
import type { PublishPacket } from "../codec/types.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** How to print each message. */
export interface OutputOptions {
  verbose?: boolean;
  /** -N: no newline after each message (default output and -v only). */
  noEol?: boolean;
  format?: string;
  pretty?: boolean;
}

/** The bytes to write for one message, or an error line for stderr (invalid JSON with %J). */
export function formatMessage(
  p: PublishPacket,
  o: OutputOptions,
  now: Date = new Date(),
): { out: Uint8Array; error?: string } {
  if (o.format !== undefined) {
    const r = formatCustom(p, o.format, now, o.pretty ?? false);
    return o.noEol || r.error ? r : { out: join([r.out, enc.encode("\n")]) };
  }
  const parts: Uint8Array[] = [];
  if (o.verbose) parts.push(enc.encode(`${p.topic} `));
  parts.push(p.payload);
  if (!o.noEol) parts.push(enc.encode("\n"));
  return { out: join(parts) };
}

function join(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function pad2(n: number, w = 2): string {
  return String(n).padStart(w, "0");
}

function tzOffset(d: Date): string {
  const off = -d.getTimezoneOffset();
  const a = Math.abs(off);
  return `${off >= 0 ? "+" : "-"}${pad2(Math.floor(a / 60))}${pad2(a % 60)}`;
}

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS = [
  "January",
  "February",
  "March",
  "April",
  "May",
  "June",
  "July",
  "August",
  "September",
  "October",
  "November",
  "December",
];

/** The common strftime conversions (local time), for `@X` sequences. */
export function strftime(c: string, d: Date, nanos: number): string {
  switch (c) {
    case "Y":
      return String(d.getFullYear());
    case "y":
      return pad2(d.getFullYear() % 100);
    case "m":
      return pad2(d.getMonth() + 1);
    case "d":
      return pad2(d.getDate());
    case "e":
      return String(d.getDate()).padStart(2, " ");
    case "H":
      return pad2(d.getHours());
    case "I":
      return pad2(d.getHours() % 12 || 12);
    case "M":
      return pad2(d.getMinutes());
    case "S":
      return pad2(d.getSeconds());
    case "p":
      return d.getHours() < 12 ? "AM" : "PM";
    case "j": {
      const start = new Date(d.getFullYear(), 0, 1);
      return pad2(Math.floor((d.getTime() - start.getTime()) / 86400000) + 1, 3);
    }
    case "a":
      return DAYS[d.getDay()].slice(0, 3);
    case "A":
      return DAYS[d.getDay()];
    case "b":
    case "h":
      return MONTHS[d.getMonth()].slice(0, 3);
    case "B":
      return MONTHS[d.getMonth()];
    case "u":
      return String(d.getDay() || 7);
    case "w":
      return String(d.getDay());
    case "z":
      return tzOffset(d);
    case "s":
      return String(Math.floor(d.getTime() / 1000));
    case "F":
      return `${strftime("Y", d, 0)}-${strftime("m", d, 0)}-${strftime("d", d, 0)}`;
    case "T":
      return `${strftime("H", d, 0)}:${strftime("M", d, 0)}:${strftime("S", d, 0)}`;
    case "D":
      return `${strftime("m", d, 0)}/${strftime("d", d, 0)}/${strftime("y", d, 0)}`;
    case "R":
      return `${strftime("H", d, 0)}:${strftime("M", d, 0)}`;
    case "N":
      return String(nanos).padStart(9, "0");
    case "n":
      return "\n";
    case "t":
      return "\t";
    case "%":
      return "%";
    default:
      return `%${c}`;
  }
}

/** mosquitto_sub's JSON timestamp: local time, microseconds, a literal Z, then the offset. */
function jsonTimestamp(d: Date, micros: number): string {
  return `${strftime("F", d, 0)}T${strftime("T", d, 0)}.${String(micros).padStart(6, "0")}Z${
    tzOffset(d)
  }`;
}

function jsonOf(p: PublishPacket, now: Date, micros: number, raw: boolean): object {
  const props = p.properties ?? {};
  const o: Record<string, unknown> = {
    tst: jsonTimestamp(now, micros),
    topic: p.topic,
    qos: p.qos,
    retain: p.retain ? 1 : 0,
    payloadlen: p.payload.length,
  };
  if (p.qos > 0) o.mid = p.messageId;
  if (props.messageExpiryInterval !== undefined) {
    o["message-expiry-interval"] = props.messageExpiryInterval;
  }
  if (props.payloadFormatIndicator !== undefined) {
    o["payload-format-indicator"] = props.payloadFormatIndicator;
  }
  if (props.contentType !== undefined) o["content-type"] = props.contentType;
  if (props.responseTopic !== undefined) o["response-topic"] = props.responseTopic;
  if (props.correlationData !== undefined) {
    o["correlation-data"] = dec.decode(props.correlationData);
  }
  if (props.userProperties?.length) {
    o["user-properties"] = props.userProperties.map(([k, v]) => ({ [k]: v }));
  }
  o.payload = raw ? JSON.parse(dec.decode(p.payload)) : dec.decode(p.payload);
  return o;
}

function hex(b: Uint8Array, upper: boolean): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return upper ? s.toUpperCase() : s;
}

function field(
  s: string,
  flags: { zero: boolean; left: boolean },
  width: number,
  precision: number | undefined,
  numeric: boolean,
): string {
  if (precision !== undefined && !numeric) s = s.slice(0, precision);
  if (s.length >= width) return s;
  if (flags.left) return s.padEnd(width, " ");
  return s.padStart(width, flags.zero && numeric ? "0" : " ");
}

/** Formats one message with a `-F` format string. */
export function formatCustom(
  p: PublishPacket,
  format: string,
  now: Date,
  pretty: boolean,
): { out: Uint8Array; error?: string } {
  const props = p.properties ?? {};
  const parts: (string | Uint8Array)[] = [];
  const hr = typeof performance !== "undefined" ? performance.now() : 0;
  const nanos = (now.getMilliseconds() * 1_000_000) + Math.floor((hr % 1) * 1_000_000);
  let error: string | undefined;
  for (let i = 0; i < format.length; i++) {
    const ch = format[i];
    if (ch === "%" && i + 1 < format.length) {
      const m = /^([-0]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])/.exec(format.slice(i + 1));
      if (!m) {
        parts.push("%");
        continue;
      }
      i += m[0].length;
      const flags = { zero: m[1].includes("0"), left: m[1].includes("-") };
      const width = m[2] ? Number(m[2]) : 0;
      const precision = m[3] !== undefined ? Number(m[3]) : undefined;
      const f = (s: string, numeric = false) =>
        parts.push(field(s, flags, width, precision, numeric));
      switch (m[4]) {
        case "%":
          parts.push("%");
          break;
        case "A":
          if (props.topicAlias !== undefined) f(String(props.topicAlias), true);
          break;
        case "C":
          if (props.contentType !== undefined) f(props.contentType);
          break;
        case "D":
          if (props.correlationData) parts.push(props.correlationData);
          break;
        case "E":
          if (props.messageExpiryInterval !== undefined) {
            f(String(props.messageExpiryInterval), true);
          }
          break;
        case "F":
          if (props.payloadFormatIndicator !== undefined) {
            f(String(props.payloadFormatIndicator), true);
          }
          break;
        case "l":
          f(String(p.payload.length), true);
          break;
        case "m":
          f(String(p.messageId ?? 0), true);
          break;
        case "P":
          parts.push((props.userProperties ?? []).map(([k, v]) => `${k}:${v}`).join(" "));
          break;
        case "p":
          if (width || precision !== undefined) f(dec.decode(p.payload));
          else parts.push(p.payload);
          break;
        case "q":
          parts.push(String(p.qos));
          break;
        case "R":
          if (props.responseTopic !== undefined) f(props.responseTopic);
          break;
        case "r":
          parts.push(p.retain ? "1" : "0");
          break;
        case "S": {
          const s = props.subscriptionIdentifier;
          if (s !== undefined) f(Array.isArray(s) ? s.join(",") : String(s), true);
          break;
        }
        case "t":
          f(p.topic);
          break;
        case "x":
          f(hex(p.payload, false), true);
          break;
        case "X":
          f(hex(p.payload, true), true);
          break;
        case "I":
          f(`${strftime("F", now, 0)}T${strftime("T", now, 0)}${tzOffset(now)}`);
          break;
        case "U":
          parts.push(`${Math.floor(now.getTime() / 1000)}.${String(nanos).padStart(9, "0")}`);
          break;
        case "j":
        case "J": {
          try {
            const o = jsonOf(p, now, Math.floor(nanos / 1000), m[4] === "J");
            parts.push(pretty ? JSON.stringify(o, null, "\t") : JSON.stringify(o));
          } catch {
            error = `Error: Message payload is not valid JSON on topic ${p.topic}.\n`;
          }
          break;
        }
        default:
          parts.push(`%${m[0]}`);
      }
    } else if (ch === "@" && i + 1 < format.length) {
      i++;
      parts.push(format[i] === "@" ? "@" : strftime(format[i], now, nanos));
    } else if (ch === "\\" && i + 1 < format.length) {
      i++;
      const e: Record<string, string> = {
        "\\": "\\",
        "0": "\0",
        a: "\x07",
        e: "\x1b",
        n: "\n",
        r: "\r",
        t: "\t",
        v: "\v",
      };
      parts.push(e[format[i]] ?? `\\${format[i]}`);
    } else parts.push(ch);
  }
  if (error) return { out: new Uint8Array(0), error };
  return { out: join(parts.map((x) => typeof x === "string" ? enc.encode(x) : x)) };
}
