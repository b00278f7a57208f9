/**
 * MQTT over WebSocket listeners (protocol = "websockets"): MQTT.js over ws:// and wss://, the
 * HTTP upgrade checked by hand (path, origins, subprotocols), and MQTT byte streams cut into
 * WebSocket frames at arbitrary places. On Bun a plain ws:// listener is Bun.serve; wss:// and
 * every listener on Deno go through node:net / node:tls and the `ws` package.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { connect as netConnect, type Socket } from "node:net";
import mqtt from "mqtt";
import { endAll } from "./helpers/broker.ts";
import { makeCerts } from "./helpers/certs.ts";
import {
  type AnyPacket,
  brokerWith,
  clientFrame,
  connectBytes,
  connectionOf,
  mqttJsOutcome,
  packetBytes,
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

/** Open a raw WebSocket; resolves with the response head, a packet reader and a frame sender. */
async function rawWs(
  port: number,
  path = "/mqtt",
  opts: { protocol?: string; origin?: string } = { protocol: "mqtt" },
  version = 4,
) {
  const sock = await tcp(port);
  const req = upgradeRequest(path, opts);
  const packets = packetReader(sock, version, false);
  const frames = wsResponseReader(sock, (payload) => packets.feed(payload));
  sock.write(req.bytes);
  const head = await frames.status;
  return {
    sock,
    head,
    accept: req.accept,
    packets,
    opcodes: frames.opcodes,
    send: (frame: Uint8Array) => sock.write(frame),
    closed: new Promise<void>((r) => sock.once("close", () => r())),
  };
}

test("WebSocket listener: MQTT.js publishes and subscribes over ws://host/mqtt", async () => {
  const tb = await brokerWith([{ protocol: "websockets" }]);
  const url = `ws://127.0.0.1:${tb.ports[0]}/mqtt`;
  const sub = await mqtt.connectAsync(url, { clientId: "ws-sub", reconnectPeriod: 0 });
  const pub = await mqtt.connectAsync(url, {
    clientId: "ws-pub",
    reconnectPeriod: 0,
    protocolVersion: 5,
  });
  try {
    await sub.subscribeAsync("ws/t", { qos: 1 });
    const got = new Promise<[string, string]>((r) =>
      sub.once("message", (t, p) => r([t, p.toString()]))
    );
    await pub.publishAsync("ws/t", "over websockets", { qos: 1 });
    assert.deepEqual(await got, ["ws/t", "over websockets"]);
    const conn = await connectionOf(tb, "ws-pub");
    assert.equal(conn.socket.protocol, "ws");
    assert.equal(conn.socket.remoteAddress.replace(/^::ffff:/, ""), "127.0.0.1");
  } finally {
    await endAll(sub, pub);
    await tb.stop();
  }
});

test("upgrade: the server selects subprotocol mqtt, or mqttv3.1 for MQTT 3.1 [MQTT-6.0.0-4]", async () => {
  const tb = await brokerWith([{ protocol: "websockets" }]);
  try {
    const a = await rawWs(tb.ports[0], "/mqtt", { protocol: "mqtt" });
    assert.match(a.head, /^HTTP\/1\.1 101 /);
    assert.match(a.head, /\r\nsec-websocket-protocol: mqtt\r?(\n|$)/i);
    assert.ok(a.head.toLowerCase().includes(`sec-websocket-accept: ${a.accept.toLowerCase()}`));
    a.send(clientFrame(connectBytes("sp-a")));
    assert.equal((await a.packets.next("connack")).returnCode, 0);
    a.sock.destroy();

    const b = await rawWs(tb.ports[0], "/mqtt", { protocol: "mqttv3.1, chat" }, 3);
    assert.match(b.head, /^HTTP\/1\.1 101 /);
    assert.match(b.head, /\r\nsec-websocket-protocol: mqttv3\.1\r?(\n|$)/i);
    b.send(clientFrame(connectBytes("sp-b", 3)));
    assert.equal((await b.packets.next("connack")).returnCode, 0);
    b.sock.destroy();

    const c = await rawWs(tb.ports[0], "/mqtt", { protocol: "chat, superchat" });
    assert.match(c.head, /^HTTP\/1\.1 400 /, "no MQTT subprotocol offered");
    await c.closed;
  } finally {
    await tb.stop();
  }
});

test('upgrade: another path gets 404, a plain HTTP request 426; websockets_path = "*" takes any', async () => {
  const tb = await brokerWith([
    { protocol: "websockets" },
    { protocol: "websockets", websockets_path: "/ws" },
    { protocol: "websockets", websockets_path: "*" },
  ]);
  try {
    const wrong = await rawWs(tb.ports[0], "/other");
    assert.match(wrong.head, /^HTTP\/1\.1 404 /);
    await wrong.closed;
    assert.equal(await mqttJsOutcome(`ws://127.0.0.1:${tb.ports[0]}/nope`), "refused");
    const custom = await rawWs(tb.ports[1], "/ws?x=1");
    assert.match(custom.head, /^HTTP\/1\.1 101 /, "query strings do not matter");
    custom.sock.destroy();
    const any = await rawWs(tb.ports[2], "/any/thing");
    assert.match(any.head, /^HTTP\/1\.1 101 /);
    any.sock.destroy();

    const plain = await tcp(tb.ports[0]);
    const res = new Promise<string>((r) => {
      let s = "";
      plain.on("data", (d: Buffer) => (s += d.toString("latin1")));
      plain.on("close", () => r(s));
    });
    plain.write("GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.match(await res, /^HTTP\/1\.1 426 /);

    // An MQTT client on the WebSocket port is answered 400 at once, not at the time-out.
    const misdirected = await tcp(tb.ports[0]);
    const answer = new Promise<string>((r) => {
      let s = "";
      misdirected.on("data", (d: Buffer) => (s += d.toString("latin1")));
      misdirected.on("close", () => r(s));
    });
    misdirected.write(connectBytes("wrong-port"));
    assert.match(await answer, /^HTTP\/1\.1 400 /);
  } finally {
    await tb.stop();
  }
});

test("websockets_origin: listed origins pass, others and a missing Origin get 403", async () => {
  const tb = await brokerWith([{
    protocol: "websockets",
    websockets_origin: ["https://app.example.com", "intranet.example"],
  }]);
  try {
    const port = tb.ports[0];
    const ok = await rawWs(port, "/mqtt", {
      protocol: "mqtt",
      origin: "https://app.example.com",
    });
    assert.match(ok.head, /^HTTP\/1\.1 101 /);
    ok.send(clientFrame(connectBytes("origin-ok")));
    assert.equal((await ok.packets.next("connack")).returnCode, 0);
    ok.sock.destroy();
    const host = await rawWs(port, "/mqtt", {
      protocol: "mqtt",
      origin: "http://intranet.example:8080",
    });
    assert.match(host.head, /^HTTP\/1\.1 101 /, "a bare host name matches any scheme and port");
    host.sock.destroy();
    for (const origin of ["https://evil.example.com", "http://app.example.com", undefined]) {
      const r = await rawWs(port, "/mqtt", { protocol: "mqtt", origin });
      assert.match(r.head, /^HTTP\/1\.1 403 /, `origin ${origin}`);
      await r.closed;
    }
    const url = `ws://127.0.0.1:${port}/mqtt`;
    assert.equal(await mqttJsOutcome(url), "refused", "MQTT.js in Node sends no Origin");
    assert.equal(
      await mqttJsOutcome(url, { wsOptions: { headers: { Origin: "https://app.example.com" } } }),
      "connected",
    );
  } finally {
    await tb.stop();
  }
});

test("MQTT packets split across frames, and several packets in one frame", async () => {
  const tb = await brokerWith([{ protocol: "websockets" }]);
  try {
    const c = await rawWs(tb.ports[0]);
    const connect = connectBytes("frames");
    // CONNECT in three binary frames, cut inside the fixed header and inside the payload.
    c.send(clientFrame(connect.subarray(0, 1)));
    c.send(clientFrame(connect.subarray(1, 7)));
    c.send(clientFrame(connect.subarray(7)));
    assert.equal((await c.packets.next("connack")).returnCode, 0);

    // SUBSCRIBE, PUBLISH QoS 1 and PINGREQ in one frame.
    const many = Buffer.concat([
      packetBytes({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "f/#", qos: 1 }] }),
      packetBytes({
        cmd: "publish",
        topic: "f/one",
        payload: Buffer.from("1"),
        qos: 1,
        messageId: 2,
      }),
      packetBytes({ cmd: "pingreq" }),
    ]);
    c.send(clientFrame(many));
    // The delivery of our own message may come before or after the acknowledgements.
    const four: AnyPacket[] = [];
    for (let i = 0; i < 4; i++) four.push(await c.packets.next());
    const of = (cmd: string) => four.find((p) => p.cmd === cmd);
    assert.deepEqual(of("suback")?.granted, [1]);
    assert.equal(of("puback")?.messageId, 2);
    assert.ok(of("pingresp"));
    const own = of("publish");
    assert.equal(own.topic, "f/one");
    assert.equal(own.payload.toString(), "1");
    c.send(clientFrame(packetBytes({ cmd: "puback", messageId: own.messageId })));

    // One packet as a fragmented WebSocket message (binary + continuation), split again mid-way.
    const big = packetBytes({
      cmd: "publish",
      topic: "f/two",
      payload: Buffer.alloc(3000, 0x61),
      qos: 0,
    });
    c.send(clientFrame(big.subarray(0, 1000), 2, false));
    c.send(clientFrame(big.subarray(1000, 2500), 0, false));
    c.send(clientFrame(big.subarray(2500), 0, true));
    const two = await c.packets.next("publish");
    assert.equal(two.topic, "f/two");
    assert.equal(two.payload.length, 3000);
    assert.ok(c.opcodes.every((op) => op === 2), "the broker sends binary frames only");
    c.sock.destroy();
  } finally {
    await tb.stop();
  }
});

test("a text frame closes the connection [MQTT-6.0.0-1]", async () => {
  const tb = await brokerWith([{ protocol: "websockets" }]);
  try {
    const c = await rawWs(tb.ports[0]);
    c.send(clientFrame(connectBytes("texty")));
    await c.packets.next("connack");
    c.send(clientFrame(packetBytes({ cmd: "pingreq" }), 1));
    await c.closed;
    assert.equal(c.packets.packets.filter((p) => p.cmd === "pingresp").length, 0);
  } finally {
    await tb.stop();
  }
});

test("secure WebSockets: MQTT.js over wss:// with the test CA", async () => {
  const certs = makeCerts();
  const tb = await brokerWith([{
    protocol: "websockets",
    certfile: certs.serverCert,
    keyfile: certs.serverKey,
  }]);
  try {
    const url = `wss://127.0.0.1:${tb.ports[0]}/mqtt`;
    const opts = { reconnectPeriod: 0, connectTimeout: 5000, ca: certs.read(certs.caCert) };
    const sub = await mqtt.connectAsync(url, { ...opts, clientId: "wss-sub" });
    const pub = await mqtt.connectAsync(url, { ...opts, clientId: "wss-pub" });
    try {
      await sub.subscribeAsync("wss/t", { qos: 2 });
      const got = new Promise<string>((r) => sub.once("message", (_t, p) => r(p.toString())));
      await pub.publishAsync("wss/t", "secure", { qos: 2 });
      assert.equal(await got, "secure");
      assert.equal((await connectionOf(tb, "wss-sub")).socket.protocol, "wss");
    } finally {
      await endAll(sub, pub);
    }
    // Without the CA the client refuses the broker's certificate.
    assert.equal(await mqttJsOutcome(url), "refused");
  } finally {
    await tb.stop();
    certs.cleanup();
  }
});
