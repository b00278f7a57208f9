/**
 * The HTTP request that opens an MQTT WebSocket: read from the raw byte stream (so that the
 * same code serves TCP, TLS, PROXY-protocol and Unix-socket listeners on every runtime), and
 * checked against the listener's path, allowed origins and the MQTT subprotocols.
 */

/** What a WebSocket listener accepts. */
export interface WebSocketSettings {
  /** The request path MQTT is served on ("/mqtt"); "*" accepts any path. */
  path: string;
  /** Allowed Origin header values; empty = any origin (and requests without one). */
  origins: string[];
  /** Largest request head, bytes. */
  maxHeadBytes?: number;
  /** Mosquitto's http_dir: plain GET requests are answered with files from it. */
  httpDir?: string;
}

/** Whether a refused upgrade is a plain GET/HEAD that http_dir should answer instead. */
export function wantsFile(head: RequestHead, ws: WebSocketSettings, code: number): boolean {
  return ws.httpDir !== undefined && (head.method === "GET" || head.method === "HEAD") &&
    (code === 426 || code === 404);
}

/** MQTT's WebSocket subprotocols, in order of preference [MQTT-6.0.0-3][MQTT-6.0.0-4]. */
export const MQTT_SUBPROTOCOLS = ["mqtt", "mqttv3.1"];

/** A request head, lower-case header names. */
export interface RequestHead {
  method: string;
  url: string;
  version: string;
  headers: Record<string, string>;
}

export type HeadParse =
  | { status: "more" }
  | { status: "error"; code: number; reason: string }
  | { status: "ok"; head: RequestHead; length: number };

const DEFAULT_MAX_HEAD = 16384;

/** Parses an HTTP/1.1 request head at the start of `buf` (bounded by `maxBytes`). */
export function parseRequestHead(buf: Uint8Array, maxBytes = DEFAULT_MAX_HEAD): HeadParse {
  // A request starts with a method (capital letters) and a space; anything else, such as an
  // MQTT client on the wrong port, is refused at once rather than at the time-out.
  for (let i = 0; i < buf.length && i < 16; i++) {
    if (buf[i] === 0x20 && i > 0) break;
    if (buf[i] < 0x41 || buf[i] > 0x5a || i === 15) {
      return { status: "error", code: 400, reason: "not an HTTP request" };
    }
  }
  let end = -1;
  for (let i = 3; i < buf.length && i < maxBytes; i++) {
    if (buf[i] === 0x0a && buf[i - 1] === 0x0d && buf[i - 2] === 0x0a && buf[i - 3] === 0x0d) {
      end = i + 1;
      break;
    }
  }
  if (end < 0) {
    return buf.length >= maxBytes
      ? { status: "error", code: 431, reason: "request head too large" }
      : { status: "more" };
  }
  const text = new TextDecoder("latin1").decode(buf.subarray(0, end - 4));
  const lines = text.split("\r\n");
  const m = /^([A-Z]+) (\S+) HTTP\/(1\.[01])$/.exec(lines[0]);
  if (!m) return { status: "error", code: 400, reason: "not an HTTP/1.x request" };
  const headers: Record<string, string> = {};
  for (let i = 1; i < lines.length; i++) {
    const c = lines[i].indexOf(":");
    if (c <= 0) return { status: "error", code: 400, reason: "malformed header line" };
    const name = lines[i].slice(0, c).trim().toLowerCase();
    const value = lines[i].slice(c + 1).trim();
    // Repeated headers are joined with ", " as HTTP allows for list-valued headers.
    headers[name] = Object.hasOwn(headers, name) ? `${headers[name]}, ${value}` : value;
  }
  return { status: "ok", head: { method: m[1], url: m[2], version: m[3], headers }, length: end };
}

function tokens(v: string | undefined): string[] {
  return (v ?? "").split(",").map((x) => x.trim()).filter((x) => x !== "");
}

/** An Origin header against one allowed entry: a full origin, or a bare host name. */
function originMatches(origin: string, allowed: string): boolean {
  const o = origin.toLowerCase().replace(/\/+$/, "");
  const a = allowed.toLowerCase().replace(/\/+$/, "");
  if (a.includes("://")) return o === a;
  try {
    return new URL(o).hostname === a;
  } catch {
    return false;
  }
}

export type UpgradeCheck =
  | { ok: true; protocol: string | undefined }
  | { ok: false; code: number; reason: string };

/** Checks an upgrade request: method, path, Upgrade/Connection headers, origin, subprotocol. */
export function checkUpgrade(head: RequestHead, ws: WebSocketSettings): UpgradeCheck {
  if (head.method !== "GET") return { ok: false, code: 405, reason: `method ${head.method}` };
  const path = head.url.split("?")[0];
  if (ws.path !== "*" && path !== ws.path) {
    return { ok: false, code: 404, reason: `path ${JSON.stringify(path)} is not ${ws.path}` };
  }
  const h = head.headers;
  if (!tokens(h.upgrade).some((t) => t.toLowerCase() === "websocket")) {
    return { ok: false, code: 426, reason: "not a WebSocket upgrade" };
  }
  if (!tokens(h.connection).some((t) => t.toLowerCase() === "upgrade")) {
    return { ok: false, code: 400, reason: "Connection header lacks upgrade" };
  }
  if (ws.origins.length > 0) {
    const origin = h.origin;
    if (origin === undefined) return { ok: false, code: 403, reason: "no Origin header" };
    if (!ws.origins.some((a) => originMatches(origin, a))) {
      return { ok: false, code: 403, reason: `origin ${JSON.stringify(origin)} not allowed` };
    }
  }
  const offered = tokens(h["sec-websocket-protocol"]);
  if (offered.length === 0) return { ok: true, protocol: undefined };
  const protocol = MQTT_SUBPROTOCOLS.find((p) => offered.includes(p));
  if (!protocol) {
    return { ok: false, code: 400, reason: `no MQTT subprotocol among ${offered.join(", ")}` };
  }
  return { ok: true, protocol };
}

const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  426: "Upgrade Required",
  431: "Request Header Fields Too Large",
};

/** The bytes of a refusal response (the connection is closed after it). */
export function refusal(code: number): Uint8Array {
  return new TextEncoder().encode(
    `HTTP/1.1 ${code} ${STATUS_TEXT[code] ?? "Error"}\r\nConnection: close\r\n` +
      `Content-Length: 0\r\n${code === 426 ? "Upgrade: websocket\r\n" : ""}\r\n`,
  );
}
