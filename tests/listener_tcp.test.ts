/**
 * Plain listeners: several TCP listeners at once, per-listener max_connections, Unix sockets
 * (MQTT.js's mqtt+unix:// and a WebSocket over a Unix socket), and the node:net path forced on
 * Bun with MIDGE_TRANSPORT=node.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { connect as netConnect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import mqtt from "mqtt";
import { endAll } from "./helpers/broker.ts";
import {
  brokerWith,
  clientFrame,
  closesWithoutPacket,
  connectBytes,
  connectionOf,
  mqttJsOutcome,
  packetReader,
  upgradeRequest,
  wsResponseReader,
} from "./helpers/listeners.ts";

function tcp(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ port, host: "127.0.0.1" }, () => resolve(s));
    s.once("error", reject);
  });
}

function unix(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ path }, () => resolve(s));
    s.once("error", reject);
  });
}

test("two TCP listeners deliver to each other; max_connections applies per listener", async () => {
  const tb = await brokerWith([{}, { max_connections: 1 }]);
  try {
    const a = await mqtt.connectAsync(`mqtt://127.0.0.1:${tb.ports[0]}`, { reconnectPeriod: 0 });
    const b = await mqtt.connectAsync(`mqtt://127.0.0.1:${tb.ports[1]}`, { reconnectPeriod: 0 });
    await a.subscribeAsync("two/t");
    const got = new Promise<string>((r) => a.once("message", (_t, p) => r(p.toString())));
    await b.publishAsync("two/t", "across listeners");
    assert.equal(await got, "across listeners");
    // The second listener is full; the first is not.
    const extra = await tcp(tb.ports[1]);
    const r = packetReader(extra);
    extra.write(connectBytes("over-limit"));
    assert.equal(await closesWithoutPacket(r), true);
    assert.equal(await mqttJsOutcome(`mqtt://127.0.0.1:${tb.ports[0]}`), "connected");
    await endAll(a, b);
  } finally {
    await tb.stop();
  }
});

test("Unix socket listener: MQTT.js over mqtt+unix://, a stale socket file is replaced", async () => {
  const dir = mkdtempSync(join(tmpdir(), "midge-unix-"));
  const path = join(dir, "midge.sock");
  // A socket file left behind by a process that is gone (bound, never closed, exited).
  execFileSync("/usr/bin/python3", [
    "-c",
    "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])",
    path,
  ]);
  assert.ok(statSync(path).isSocket());
  const tb = await brokerWith([{ unix_socket: path }, {}]);
  try {
    assert.equal(tb.broker.listeners[0].host, path);
    const sub = await mqtt.connectAsync(`mqtt+unix://${path}`, {
      reconnectPeriod: 0,
      clientId: "unix-sub",
    });
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${tb.ports[1]}`, { reconnectPeriod: 0 });
    await sub.subscribeAsync("unix/t", { qos: 1 });
    const got = new Promise<string>((r) => sub.once("message", (_t, p) => r(p.toString())));
    await pub.publishAsync("unix/t", "local", { qos: 1 });
    assert.equal(await got, "local");
    const conn = await connectionOf(tb, "unix-sub");
    assert.equal(conn.socket.remoteAddress, path);
    await endAll(sub, pub);
    // A second broker may not take over a socket that is in use.
    await assert.rejects(brokerWith([{ unix_socket: path }]), /in use by another server/);
  } finally {
    await tb.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("Unix socket listener refuses to replace a regular file", async () => {
  const dir = mkdtempSync(join(tmpdir(), "midge-unix-"));
  const path = join(dir, "not-a-socket");
  writeFileSync(path, "keep me");
  try {
    await assert.rejects(brokerWith([{ unix_socket: path }]));
    assert.ok(statSync(path).isFile(), "the file is still there");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("WebSocket over a Unix socket", async () => {
  const dir = mkdtempSync(join(tmpdir(), "midge-unix-"));
  const path = join(dir, "ws.sock");
  const tb = await brokerWith([{ unix_socket: path, protocol: "websockets" }]);
  try {
    const sock = await unix(path);
    const packets = packetReader(sock, 4, false);
    const frames = wsResponseReader(sock, (p) => packets.feed(p));
    sock.write(upgradeRequest("/mqtt", { protocol: "mqtt", host: "localhost" }).bytes);
    assert.match(await frames.status, /^HTTP\/1\.1 101 /);
    sock.write(clientFrame(connectBytes("unix-ws")));
    assert.equal((await packets.next("connack")).returnCode, 0);
    sock.destroy();
    await tb.stop();
    assert.equal(existsSync(path), false, "the socket file is removed on stop");
  } finally {
    await tb.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("MIDGE_TRANSPORT=node: TCP and WebSocket listeners over node:net (Bun's fallback path)", async () => {
  const before = process.env.MIDGE_TRANSPORT;
  process.env.MIDGE_TRANSPORT = "node";
  let tb;
  try {
    tb = await brokerWith([{ enable_proxy_protocol: 1 }, { protocol: "websockets" }]);
  } finally {
    if (before === undefined) delete process.env.MIDGE_TRANSPORT;
    else process.env.MIDGE_TRANSPORT = before;
  }
  try {
    const s = await tcp(tb.ports[0]);
    const r = packetReader(s);
    s.write(Buffer.concat([
      new TextEncoder().encode("PROXY TCP4 192.0.2.9 10.0.0.1 7 1883\r\n"),
      connectBytes("node-tcp"),
    ]));
    assert.equal((await r.next("connack")).returnCode, 0);
    assert.equal((await connectionOf(tb, "node-tcp")).socket.remoteAddress, "192.0.2.9");
    const ws = await mqtt.connectAsync(`ws://127.0.0.1:${tb.ports[1]}/mqtt`, {
      reconnectPeriod: 0,
      clientId: "node-ws",
    });
    await ws.subscribeAsync("n/t");
    const got = new Promise<string>((res) => ws.once("message", (_t, p) => res(p.toString())));
    await ws.publishAsync("n/t", "via ws package");
    assert.equal(await got, "via ws package");
    s.destroy();
    await endAll(ws);
  } finally {
    await tb.stop();
  }
});
