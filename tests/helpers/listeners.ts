/**
 * Helpers for listener tests: a broker with given [[listener]] tables, lookups of the broker's
 * view of a client, raw MQTT bytes (encoded by mqtt-packet, an independent codec) and a
 * hand-written WebSocket client for what a well-behaved library would not send.
 */
import { Buffer } from "node:buffer";
import { createHash, randomBytes } from "node:crypto";
import type { Duplex } from "node:stream";
import mqtt, { type IClientOptions } from "mqtt";
import mqttPacket from "mqtt-packet";
import { defaults, LISTENER_KEYS, type ListenerConfig } from "../../src/config/schema.ts";
import type { Config } from "../../src/config/schema.ts";
import type { Connection } from "../../src/broker/connection.ts";
import { startBroker, type TestBroker } from "./broker.ts";

// deno-lint-ignore no-explicit-any
export type AnyPacket = any;

/** A broker whose listeners are `ls` (each on port 0 unless given), plus top-level `over`. */
export async function brokerWith(
  ls: Partial<ListenerConfig>[],
  over: Partial<Config> = {},
): Promise<TestBroker & { ports: number[] }> {
  const tb = await startBroker({
    ...over,
    listeners: ls.map((l) => ({ ...defaults(LISTENER_KEYS), port: 0, ...l })),
  });
  return { ...tb, ports: tb.broker.listeners.map((l) => l.port) };
}

/** Poll until `f()` returns a value other than undefined (at most `ms`). */
export async function waitFor<T>(
  f: () => T | undefined,
  ms = 3000,
  what = "condition",
): Promise<T> {
  const end = Date.now() + ms;
  while (true) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The broker's connection for a client id, once it has sent CONNECT. */
export function connectionOf(tb: TestBroker, clientId: string): Promise<Connection> {
  return waitFor(
    () => [...tb.broker.connections].find((c) => c.clientId === clientId && c.state === "open"),
    3000,
    `connection ${clientId}`,
  );
}

/**
 * Connects MQTT.js expecting a refusal: resolves with "refused" when the connection closes or
 * fails before CONNACK, "connected" otherwise. (connectAsync can wait forever when a WebSocket
 * upgrade is refused.)
 */
export function mqttJsOutcome(
  url: string,
  opts: IClientOptions = {},
  ms = 5000,
): Promise<"refused" | "connected"> {
  const c = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: ms, ...opts });
  return new Promise((resolve) => {
    const done = (r: "refused" | "connected") => {
      clearTimeout(t);
      c.end(true);
      resolve(r);
    };
    const t = setTimeout(() => done("refused"), ms);
    c.once("connect", () => done("connected"));
    c.once("error", () => done("refused"));
    c.once("close", () => done("refused"));
  });
}

/** CONNECT bytes (MQTT 3.1.1 unless `version`), encoded by mqtt-packet. */
export function connectBytes(clientId: string, version = 4, extra: AnyPacket = {}): Uint8Array {
  return mqttPacket.generate({
    cmd: "connect",
    protocolId: version === 3 ? "MQIsdp" : "MQTT",
    protocolVersion: version,
    clean: true,
    clientId,
    keepalive: 60,
    ...extra,
  }, { protocolVersion: version });
}

/** Any packet's bytes, encoded by mqtt-packet. */
export function packetBytes(p: AnyPacket, version = 4): Uint8Array {
  return mqttPacket.generate(p, { protocolVersion: version });
}

/**
 * Reads MQTT packets from a byte stream (a socket, a TLS socket): `next(cmd)` waits for the
 * next packet (of that type), `closed` resolves when the stream ends. With `fromStream` false
 * the bytes come through `feed` instead (WebSocket payloads).
 */
export function packetReader(stream: Duplex, version = 4, fromStream = true) {
  const parser = mqttPacket.parser({ protocolVersion: version });
  const packets: AnyPacket[] = [];
  let taken = 0;
  let wake: (() => void) | null = null;
  let isClosed = false;
  parser.on("packet", (p: AnyPacket) => {
    packets.push(p);
    wake?.();
  });
  if (fromStream) stream.on("data", (d: Buffer) => parser.parse(d));
  const closed = new Promise<void>((resolve) => {
    stream.once("close", () => {
      isClosed = true;
      wake?.();
      resolve();
    });
  });
  stream.on("error", () => {});
  return {
    packets,
    closed,
    feed: (d: Uint8Array) => parser.parse(Buffer.from(d)),
    markClosed() {
      isClosed = true;
      wake?.();
    },
    async next(cmd?: string, ms = 3000): Promise<AnyPacket> {
      const end = Date.now() + ms;
      while (true) {
        while (taken < packets.length) {
          const p = packets[taken++];
          if (!cmd || p.cmd === cmd) return p;
        }
        if (isClosed) throw new Error(`closed before ${cmd ?? "a packet"}`);
        if (Date.now() > end) throw new Error(`no ${cmd ?? "packet"} in ${ms} ms`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, Math.max(1, end - Date.now()));
        });
        wake = null;
      }
    },
  };
}

/** Resolves true if `stream` closes within `ms` without delivering any MQTT packet. */
export function closesWithoutPacket(
  reader: ReturnType<typeof packetReader>,
  ms = 3000,
): Promise<boolean> {
  return Promise.race([
    reader.closed.then(() => reader.packets.length === 0),
    new Promise<boolean>((r) => setTimeout(() => r(false), ms)),
  ]);
}

// ----- WebSocket framing by hand (RFC 6455), for tests that control every frame -----

/** An HTTP upgrade request for `path` (with optional extra header lines). */
export function upgradeRequest(
  path: string,
  opts: { protocol?: string; origin?: string; host?: string } = {},
): { bytes: Uint8Array; accept: string } {
  const key = randomBytes(16).toString("base64");
  const accept = createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
    .digest("base64");
  const lines = [
    `GET ${path} HTTP/1.1`,
    `Host: ${opts.host ?? "127.0.0.1"}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${key}`,
    "Sec-WebSocket-Version: 13",
  ];
  if (opts.protocol) lines.push(`Sec-WebSocket-Protocol: ${opts.protocol}`);
  if (opts.origin) lines.push(`Origin: ${opts.origin}`);
  return { bytes: Buffer.from(lines.join("\r\n") + "\r\n\r\n", "latin1"), accept };
}

/** One masked client frame (opcode 2 = binary, 1 = text, 0 = continuation; fin as given). */
export function clientFrame(payload: Uint8Array, opcode = 2, fin = true): Uint8Array {
  const len = payload.length;
  const head = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const out = new Uint8Array(head + 4 + len);
  out[0] = (fin ? 0x80 : 0) | opcode;
  if (len < 126) out[1] = 0x80 | len;
  else if (len < 65536) {
    out[1] = 0x80 | 126;
    out[2] = len >> 8;
    out[3] = len & 0xff;
  } else {
    out[1] = 0x80 | 127;
    new DataView(out.buffer).setBigUint64(2, BigInt(len));
  }
  const mask = randomBytes(4);
  out.set(mask, head);
  for (let i = 0; i < len; i++) out[head + 4 + i] = payload[i] ^ mask[i & 3];
  return out;
}

/**
 * Reads a server's HTTP response head and then its (unmasked) frames from a byte stream:
 * `status` resolves with the response head, binary frame payloads go to `onMessage`.
 */
export function wsResponseReader(stream: Duplex, onMessage: (payload: Uint8Array) => void) {
  let buf: Uint8Array = new Uint8Array(0);
  let head: string | null = null;
  let resolveHead!: (h: string) => void;
  const status = new Promise<string>((r) => (resolveHead = r));
  const opcodes: number[] = [];
  stream.on("data", (d: Uint8Array) => {
    buf = Buffer.concat([buf, d]);
    if (head === null) {
      const i = Buffer.from(buf).indexOf("\r\n\r\n");
      if (i < 0) return;
      head = Buffer.from(buf.subarray(0, i)).toString("latin1");
      buf = buf.subarray(i + 4);
      resolveHead(head);
    }
    while (buf.length >= 2) {
      const op = buf[0] & 0x0f;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = (buf[2] << 8) | buf[3];
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(new DataView(buf.buffer, buf.byteOffset + 2, 8).getBigUint64(0));
        off = 10;
      }
      if (buf.length < off + len) return;
      opcodes.push(op);
      if (op === 2 || op === 0) onMessage(buf.subarray(off, off + len));
      buf = buf.subarray(off + len);
    }
  });
  stream.on("close", () => resolveHead(head ?? ""));
  return { status, opcodes };
}
