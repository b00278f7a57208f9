/**
 * Byte streams for the client: TCP (`mqtt://`), TLS (`mqtts://`) and WebSockets (`ws://`,
 * `wss://`), all over `node:net` / `node:tls` so that they behave the same on Deno, on Bun and in
 * the compiled executable. WebSocket framing (RFC 6455, client side) is done here rather than with
 * a runtime's global `WebSocket`, which cannot take a CA file, a client certificate or
 * `--insecure` on every runtime.
 */
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { createHash, randomBytes } from "node:crypto";
import { type ProxyOptions, socksConnect } from "./socks.ts";

/** Where to connect: one entry per `-h`/`-L`. */
export interface ServerAddress {
  protocol: "mqtt" | "mqtts" | "ws" | "wss";
  host: string;
  port: number;
  /** WebSocket path (ws/wss only), default "/mqtt". */
  path?: string;
  /** A Unix socket to connect to instead of host and port (mosquitto_pub's --unix). */
  unix?: string;
}

/** TLS settings, as Mosquitto's `--cafile --cert --key --insecure`. */
export interface TlsOptions {
  /** PEM text of trusted CAs; absent = the runtime's default CA store. */
  ca?: string | Uint8Array;
  /** PEM client certificate and key. */
  cert?: string | Uint8Array;
  key?: string | Uint8Array;
  /** Do not check that the certificate names the host (the CA chain is still checked). */
  insecure?: boolean;
  /** Do not check the certificate at all (not a Mosquitto option; for tests and labs). */
  rejectUnauthorized?: boolean;
  /** SNI / name to verify; default the host. */
  servername?: string;
  /** Only this TLS version ("TLSv1.2" or "TLSv1.3", from --tls-version); default 1.2 or 1.3. */
  version?: "TLSv1.2" | "TLSv1.3";
  /** OpenSSL cipher list (--ciphers). */
  ciphers?: string;
  /** ALPN protocol to offer (--tls-alpn); default "mqtt" (mqtts) or "http/1.1" (wss). */
  alpn?: string;
}

/** Options for `dial`. */
export interface DialOptions {
  tls?: TlsOptions;
  /** Local address to bind (Mosquitto's -A). */
  localAddress?: string;
  /** Connect through this SOCKS5 proxy (--proxy socks5h://...). */
  proxy?: ProxyOptions;
  /** Give up after this many ms; default 30000. */
  timeout?: number;
}

/** An open byte stream to a broker. */
export interface Stream {
  write(data: Uint8Array): void;
  /** Flush what is queued, then close. Resolves once closed. */
  end(): Promise<void>;
  /** Close at once. */
  destroy(): void;
  onData: (chunk: Uint8Array) => void;
  /** Called once, however the stream closed; `error` when it failed. */
  onClose: (error?: Error) => void;
}

/** The default port for a protocol. */
export function defaultPort(protocol: ServerAddress["protocol"]): number {
  return { mqtt: 1883, mqtts: 8883, ws: 80, wss: 443 }[protocol];
}

/** Parses `mqtt://`, `mqtts://`, `ws://`, `wss://` (also `tcp://`, `ssl://`, `tls://`) URLs. */
export function parseServerUrl(url: string): ServerAddress & {
  username?: string;
  password?: string;
  /** The URL path without its leading "/" (for mqtt/mqtts, Mosquitto's -L topic). */
  topic?: string;
} {
  const m = /^([a-z]+):\/\/(?:([^@/]*)@)?(\[[^\]]+\]|[^:/?#]*)(?::(\d+))?(\/[^?#]*)?$/i.exec(url);
  if (!m) throw new Error(`invalid URL ${JSON.stringify(url)}`);
  const scheme = m[1].toLowerCase();
  const protocol =
    (({ mqtt: "mqtt", tcp: "mqtt", mqtts: "mqtts", ssl: "mqtts", tls: "mqtts" }) as Record<
      string,
      ServerAddress["protocol"]
    >)[scheme] ??
      (scheme === "ws" || scheme === "wss" ? scheme : undefined);
  if (!protocol) throw new Error(`unsupported URL scheme "${scheme}" in ${url}`);
  const host = (m[3] || "localhost").replace(/^\[(.*)\]$/, "$1");
  const port = m[4] !== undefined ? Number(m[4]) : defaultPort(protocol);
  if (port > 65535) throw new Error(`invalid port in ${url}`);
  let username: string | undefined;
  let password: string | undefined;
  if (m[2] !== undefined) {
    const i = m[2].indexOf(":");
    username = decodeURIComponent(i < 0 ? m[2] : m[2].slice(0, i));
    if (i >= 0) password = decodeURIComponent(m[2].slice(i + 1));
  }
  const out: ReturnType<typeof parseServerUrl> = { protocol, host, port };
  if (username !== undefined) out.username = username;
  if (password !== undefined) out.password = password;
  if (protocol === "ws" || protocol === "wss") out.path = m[5] || "/mqtt";
  else if (m[5] && m[5].length > 1) out.topic = decodeURIComponent(m[5].slice(1));
  return out;
}

/** `host:port` for messages (IPv6 in brackets). */
export function formatAddress(s: ServerAddress): string {
  if (s.unix) return `${s.protocol}+unix://${s.unix}`;
  const host = s.host.includes(":") ? `[${s.host}]` : s.host;
  const path = s.protocol === "ws" || s.protocol === "wss" ? s.path ?? "/mqtt" : "";
  return `${s.protocol}://${host}:${s.port}${path}`;
}

/** Opens a stream to `server`; rejects with the socket error (code ECONNREFUSED, ENOTFOUND, …). */
export async function dial(server: ServerAddress, opts: DialOptions = {}): Promise<Stream> {
  const secure = server.protocol === "mqtts" || server.protocol === "wss";
  const sock = await openSocket(server, secure, opts);
  if (server.protocol === "ws" || server.protocol === "wss") {
    return await webSocketStream(sock, server, opts.timeout ?? 30000);
  }
  return socketStream(sock);
}

async function openSocket(
  server: ServerAddress,
  secure: boolean,
  opts: DialOptions,
): Promise<Socket> {
  // Through a SOCKS5 proxy, the TCP connection (and TLS on top of it) is the proxy's tunnel.
  const tunnel = opts.proxy && !server.unix
    ? await socksConnect(opts.proxy, server.host, server.port, {
      localAddress: opts.localAddress,
      timeout: opts.timeout,
    })
    : undefined;
  return await new Promise((resolve, reject) => {
    let sock: Socket | TLSSocket;
    const t = opts.tls ?? {};
    const timer = setTimeout(() => {
      sock.destroy();
      reject(Object.assign(new Error("connection timed out"), { code: "ETIMEDOUT" }));
    }, opts.timeout ?? 30000);
    const fail = (e: Error) => {
      clearTimeout(timer);
      sock.destroy();
      reject(e);
    };
    const ok = () => {
      clearTimeout(timer);
      sock.off("error", fail);
      resolve(sock);
    };
    if (secure) {
      const servername = t.servername ?? (isIp(server.host) ? undefined : server.host);
      const alpn = t.alpn ?? (server.protocol === "mqtts" ? "mqtt" : "http/1.1");
      sock = tlsConnect({
        ...(tunnel ? { socket: tunnel } : server.unix ? { path: server.unix } : {
          host: server.host,
          port: server.port,
        }),
        ...(servername ? { servername } : {}),
        ...(t.ca !== undefined ? { ca: asText(t.ca) } : {}),
        ...(t.cert !== undefined ? { cert: asText(t.cert) } : {}),
        ...(t.key !== undefined ? { key: asText(t.key) } : {}),
        rejectUnauthorized: t.rejectUnauthorized ?? true,
        ...(t.insecure ? { checkServerIdentity: () => undefined } : {}),
        ...(opts.localAddress && !tunnel ? { localAddress: opts.localAddress } : {}),
        ...(t.version ? { minVersion: t.version, maxVersion: t.version } : {}),
        ...(t.ciphers ? { ciphers: t.ciphers } : {}),
        ALPNProtocols: [alpn],
      }, ok);
    } else if (tunnel) {
      sock = tunnel;
      queueMicrotask(ok);
    } else if (server.unix) {
      sock = netConnect({ path: server.unix }, ok);
    } else {
      sock = netConnect({
        host: server.host,
        port: server.port,
        ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      }, ok);
    }
    sock.once("error", fail);
  });
}

function asText(v: string | Uint8Array): string {
  return typeof v === "string" ? v : new TextDecoder().decode(v);
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(":");
}

function socketStream(sock: Socket): Stream {
  sock.setNoDelay(true);
  let closed = false;
  let error: Error | undefined;
  const stream: Stream = {
    write: (d) => void sock.write(d),
    end: () =>
      new Promise<void>((resolve) => {
        if (closed) return resolve();
        sock.once("close", () => resolve());
        sock.end();
      }),
    destroy: () => sock.destroy(),
    onData: () => {},
    onClose: () => {},
  };
  sock.on("data", (d: Uint8Array) => stream.onData(d));
  sock.on("error", (e: Error) => {
    error ??= e;
    sock.destroy();
  });
  sock.on("close", () => {
    if (closed) return;
    closed = true;
    stream.onClose(error);
  });
  return stream;
}

const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** Upgrades `sock` to a WebSocket (subprotocol "mqtt", binary frames) and frames MQTT bytes. */
function webSocketStream(sock: Socket, server: ServerAddress, timeout: number): Promise<Stream> {
  sock.setNoDelay(true);
  const key = randomBytes(16).toString("base64");
  const host = server.host.includes(":") ? `[${server.host}]` : server.host;
  const defaultPortFor = server.protocol === "wss" ? 443 : 80;
  sock.write(
    `GET ${server.path ?? "/mqtt"} HTTP/1.1\r\n` +
      `Host: ${host}${server.port === defaultPortFor ? "" : `:${server.port}`}\r\n` +
      "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
      "Sec-WebSocket-Protocol: mqtt\r\n\r\n",
  );
  const expectAccept = createHash("sha1").update(key + WS_GUID).digest("base64");
  return new Promise((resolve, reject) => {
    let head: Uint8Array = new Uint8Array(0);
    const timer = setTimeout(() => fail(new Error("WebSocket handshake timed out")), timeout);
    function fail(e: Error): void {
      clearTimeout(timer);
      sock.off("data", onHead);
      sock.destroy();
      reject(e);
    }
    const onEarlyClose = () => fail(new Error("connection closed during the WebSocket handshake"));
    const onHead = (d: Uint8Array) => {
      head = concat(head, d);
      const text = new TextDecoder("latin1").decode(head);
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) {
        if (head.length > 16384) fail(new Error("WebSocket handshake response too large"));
        return;
      }
      const lines = text.slice(0, end).split("\r\n");
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
      const headers = new Map<string, string>();
      for (const l of lines.slice(1)) {
        const i = l.indexOf(":");
        if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
      }
      if (!status || status[1] !== "101") {
        return fail(new Error(`WebSocket upgrade refused: ${lines[0]}`));
      }
      if (headers.get("sec-websocket-accept") !== expectAccept) {
        return fail(new Error("WebSocket upgrade: bad Sec-WebSocket-Accept"));
      }
      clearTimeout(timer);
      sock.off("data", onHead);
      sock.off("close", onEarlyClose);
      const stream = wsFraming(sock);
      resolve(stream);
      const rest = head.subarray(end + 4);
      if (rest.length) queueMicrotask(() => sock.emit("data", rest));
    };
    sock.on("data", onHead);
    sock.once("close", onEarlyClose);
  });
}

function wsFraming(sock: Socket): Stream {
  let closed = false;
  let error: Error | undefined;
  let buf: Uint8Array = new Uint8Array(0);
  let message: Uint8Array[] = [];
  const frame = (opcode: number, payload: Uint8Array): Uint8Array => {
    const n = payload.length;
    const ext = n < 126 ? 0 : n < 65536 ? 2 : 8;
    const out = new Uint8Array(2 + ext + 4 + n);
    out[0] = 0x80 | opcode;
    let p = 2;
    if (ext === 0) out[1] = 0x80 | n;
    else if (ext === 2) {
      out[1] = 0x80 | 126;
      out[2] = n >>> 8;
      out[3] = n & 0xff;
      p = 4;
    } else {
      out[1] = 0x80 | 127;
      new DataView(out.buffer).setBigUint64(2, BigInt(n));
      p = 10;
    }
    const mask = randomBytes(4);
    out.set(mask, p);
    p += 4;
    for (let i = 0; i < n; i++) out[p + i] = payload[i] ^ mask[i & 3];
    return out;
  };
  const stream: Stream = {
    write: (d) => void sock.write(frame(2, d)),
    end: () =>
      new Promise<void>((resolve) => {
        if (closed) return resolve();
        sock.once("close", () => resolve());
        sock.write(frame(8, new Uint8Array([0x03, 0xe8]))); // 1000 normal closure
        sock.end();
      }),
    destroy: () => sock.destroy(),
    onData: () => {},
    onClose: () => {},
  };
  const onData = (d: Uint8Array) => {
    buf = buf.length ? concat(buf, d) : d;
    for (;;) {
      if (buf.length < 2) return;
      const fin = (buf[0] & 0x80) !== 0;
      const opcode = buf[0] & 0x0f;
      const masked = (buf[1] & 0x80) !== 0;
      let len = buf[1] & 0x7f;
      let p = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = (buf[2] << 8) | buf[3];
        p = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(new DataView(buf.buffer, buf.byteOffset + 2, 8).getBigUint64(0));
        p = 10;
      }
      const maskAt = p;
      if (masked) p += 4;
      if (buf.length < p + len) return;
      let payload = buf.subarray(p, p + len);
      if (masked) {
        payload = payload.slice();
        for (let i = 0; i < len; i++) payload[i] ^= buf[maskAt + (i & 3)];
      }
      buf = buf.subarray(p + len);
      if (opcode === 8) {
        if (!closed) sock.write(frame(8, payload.subarray(0, 2)));
        sock.end();
        return;
      }
      if (opcode === 9) {
        sock.write(frame(10, payload));
        continue;
      }
      if (opcode === 10) continue;
      if (opcode === 1) {
        error = new Error("WebSocket text frame received (MQTT needs binary frames)");
        sock.destroy();
        return;
      }
      // 2 (binary) or 0 (continuation)
      if (fin && message.length === 0) stream.onData(payload.slice());
      else {
        message.push(payload.slice());
        if (fin) {
          const whole = message.reduce((a, b) => concat(a, b));
          message = [];
          stream.onData(whole);
        }
      }
    }
  };
  sock.on("data", onData);
  sock.on("error", (e: Error) => {
    error ??= e;
    sock.destroy();
  });
  sock.on("close", () => {
    if (closed) return;
    closed = true;
    stream.onClose(error);
  });
  return stream;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
