/**
 * Backpressure on every listener kind (TCP, TLS, WebSocket, secure WebSocket; each also behind a
 * PROXY header, the plain ones also on a Unix socket) on both runtimes: a subscriber that stops
 * reading is sent more QoS 1 bytes than its socket takes, and every message acknowledged to the
 * publisher must still reach it, complete and in order, once it reads again. Meanwhile the
 * broker holds back what is beyond the inflight window in the session's queue, and sees the
 * socket as congested (QoS 0 to it is dropped).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { connect as netConnect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { connect as tlsConnect } from "node:tls";
import mqtt from "mqtt";
import { endAll } from "./helpers/broker.ts";
import { makeCerts } from "./helpers/certs.ts";
import type { ListenerConfig } from "../src/config/schema.ts";
import {
  brokerWith,
  clientFrame,
  connectBytes,
  connectionOf,
  packetBytes,
  packetReader,
  upgradeRequest,
  waitFor,
} from "./helpers/listeners.ts";

const certs = makeCerts();
const tmp = mkdtempSync(join(tmpdir(), "midge-bp-"));
process.on("exit", () => {
  certs.cleanup();
  rmSync(tmp, { recursive: true, force: true });
});
const ca = certs.read(certs.caCert);
const tlsKeys = { certfile: certs.serverCert, keyfile: certs.serverKey };

type Kind = "tcp" | "tls" | "ws" | "wss";
const LISTENERS: Record<Kind, Partial<ListenerConfig>> = {
  tcp: {},
  tls: tlsKeys,
  ws: { protocol: "websockets" },
  wss: { protocol: "websockets", ...tlsKeys },
};
/** The same behind a PROXY header (other code paths: TLS and WebSocket over a stream). */
const PROXY_HEADER = Buffer.from("PROXY TCP4 203.0.113.7 127.0.0.1 40000 1883\r\n", "latin1");

const MESSAGES = 20;
const SIZE = 1536 * 1024;
/** Smaller than MESSAGES, so that the broker must keep some messages back in the session. */
const WINDOW = 16;

/** A stream socket to `port`: plain TCP, or TLS trusting the test CA. */
function open(kind: Kind, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s: Socket = kind === "tls" || kind === "wss"
      ? tlsConnect({ port, host: "127.0.0.1", ca, servername: "localhost" }, () => resolve(s))
      : netConnect({ port, host: "127.0.0.1" }, () => resolve(s));
    s.once("error", reject);
  });
}

/**
 * A TCP relay in front of the broker whose reading from the broker can be paused: the slow
 * reader. (Pausing the client socket itself is not enough: Deno's TLS client goes on reading
 * from the network while paused.)
 */
async function relay(to: number | string, header?: Uint8Array) {
  const ups = new Set<Socket>();
  let paused = false;
  const server: Server = createServer((down) => {
    const up = typeof to === "string"
      ? netConnect({ path: to })
      : netConnect({ port: to, host: "127.0.0.1" });
    if (header) up.write(header);
    ups.add(up);
    if (paused) up.pause();
    up.on("data", (d: Uint8Array) => down.write(d));
    down.on("data", (d: Uint8Array) => up.write(d));
    up.on("close", () => down.destroy());
    down.on("close", () => up.destroy());
    up.on("error", () => {});
    down.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as { port: number }).port,
    pause() {
      paused = true;
      for (const u of ups) u.pause();
    },
    resume() {
      paused = false;
      for (const u of ups) u.resume();
    },
    close() {
      for (const u of ups) u.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * Server frames (unmasked) read from a byte stream after the HTTP response head, their binary
 * payloads handed to `onPayload`. Received chunks are joined only once a whole frame is there,
 * so a large frame is not copied again for each chunk.
 */
function serverFrames(sock: Socket, onPayload: (p: Uint8Array) => void): Promise<string> {
  let chunks: Buffer[] = [];
  let have = 0;
  let head: string | null = null;
  const join = (): Buffer => {
    const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    chunks = [all];
    return all;
  };
  return new Promise((resolve) => {
    sock.on("data", (d: Buffer) => {
      chunks.push(d);
      have += d.length;
      while (true) {
        if (head === null) {
          const all = join();
          const i = all.indexOf("\r\n\r\n");
          if (i < 0) return;
          head = all.subarray(0, i).toString("latin1");
          chunks = [all.subarray(i + 4)];
          have = all.length - i - 4;
          resolve(head);
          continue;
        }
        if (have < 2) return;
        const first = chunks[0].length >= 10 ? chunks[0] : join();
        let len = first[1] & 0x7f;
        let off = 2;
        if (len === 126) {
          if (have < 4) return;
          len = first.readUInt16BE(2);
          off = 4;
        } else if (len === 127) {
          if (have < 10) return;
          len = Number(first.readBigUInt64BE(2));
          off = 10;
        }
        if (have < off + len) return;
        const all = join();
        if ((all[0] & 0x0f) === 2 || (all[0] & 0x0f) === 0) {
          onPayload(all.subarray(off, off + len));
        }
        chunks = [all.subarray(off + len)];
        have -= off + len;
      }
    });
  });
}

/** A raw MQTT 3.1.1 client over `kind` whose reading can be paused. */
async function rawClient(kind: Kind, port: number) {
  const sock = await open(kind, port);
  const ws = kind === "ws" || kind === "wss";
  const packets = packetReader(sock, 4, !ws);
  if (ws) {
    const req = upgradeRequest("/mqtt", { protocol: "mqtt" });
    const head = serverFrames(sock, (p) => packets.feed(p));
    sock.write(req.bytes);
    assert.match(await head, /^HTTP\/1\.1 101 /);
  }
  return {
    sock,
    packets,
    send: (b: Uint8Array) => sock.write(ws ? clientFrame(b) : b),
  };
}

/** Each listener kind as is, behind a PROXY header, and (plain ones) on a Unix socket. */
const CASES: { kind: Kind; via?: "proxy" | "unix" }[] = [
  { kind: "tcp" },
  { kind: "tls" },
  { kind: "ws" },
  { kind: "wss" },
  { kind: "tcp", via: "proxy" },
  { kind: "tls", via: "proxy" },
  { kind: "ws", via: "proxy" },
  { kind: "wss", via: "proxy" },
  { kind: "tcp", via: "unix" },
  { kind: "ws", via: "unix" },
];

for (const { kind, via } of CASES) {
  const name = via === "proxy"
    ? `${kind} behind PROXY`
    : via === "unix"
    ? `${kind} on a Unix socket`
    : kind;
  test(`backpressure ${name}: a subscriber that reads slowly gets all ${MESSAGES} acknowledged QoS 1 messages of 1.5 MB, complete and in order [MQTT-4.6.0-6 v3.1.1][MQTT-4.6.0-5 v5]`, async () => {
    const path = join(tmp, `${kind}.sock`);
    const listener = via === "proxy"
      ? { ...LISTENERS[kind], enable_proxy_protocol: true }
      : via === "unix"
      ? { ...LISTENERS[kind], unix_socket: path }
      : LISTENERS[kind];
    const tb = await brokerWith([listener, {}], { max_inflight_messages: WINDOW });
    const slow = await relay(
      via === "unix" ? path : tb.ports[0],
      via === "proxy" ? PROXY_HEADER : undefined,
    );
    const sub = await rawClient(kind, slow.port);
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${tb.ports[1]}`, {
      clientId: `pub-${kind}`,
      reconnectPeriod: 0,
    });
    try {
      sub.send(connectBytes(`slow-${kind}`, 4, { keepalive: 0 }));
      await sub.packets.next("connack", 5000);
      sub.send(packetBytes({
        cmd: "subscribe",
        messageId: 1,
        subscriptions: [{ topic: "big/t", qos: 1 }],
      }));
      await sub.packets.next("suback", 5000);
      const conn = await connectionOf(tb, `slow-${kind}`);
      const session = conn.session!;

      // The subscriber stops reading; the publisher's messages are all acknowledged.
      slow.pause();
      const payloads = Array.from({ length: MESSAGES }, () => randomBytes(SIZE));
      await Promise.all(payloads.map((p) => pub.publishAsync("big/t", p, { qos: 1 })));

      // The broker holds back: a full window in flight, the rest queued in the session.
      assert.equal(session.inflight.size, WINDOW);
      assert.equal(session.queue.length, MESSAGES - WINDOW);
      // It sees the socket as behind: QoS 0 to this subscriber is dropped, not buffered.
      assert.ok(conn.congested, `bufferedAmount ${conn.socket.bufferedAmount}`);
      const dropped = tb.broker.stats.publishDropped;
      await pub.publishAsync("big/t", "qos 0 while congested", { qos: 0 });
      await waitFor(
        () => tb.broker.stats.publishDropped > dropped ? true : undefined,
        5000,
        "the QoS 0 message to be dropped",
      );

      // Reading again, the subscriber gets every message, acknowledging each.
      slow.resume();
      for (let i = 0; i < MESSAGES; i++) {
        const p = await sub.packets.next("publish", 30_000);
        assert.equal(p.topic, "big/t");
        assert.equal(p.qos, 1);
        assert.equal(p.payload.length, SIZE, `message ${i}: length`);
        assert.ok(Buffer.from(p.payload).equals(payloads[i]), `message ${i}: content or order`);
        sub.send(packetBytes({ cmd: "puback", messageId: p.messageId }));
      }
      await waitFor(
        () => session.inflight.size === 0 && session.queue.length === 0 ? true : undefined,
        10_000,
        "every message acknowledged",
      );
      assert.equal(conn.state, "open");
    } finally {
      sub.sock.destroy();
      await slow.close();
      await endAll(pub);
      await tb.stop();
    }
  });
}
