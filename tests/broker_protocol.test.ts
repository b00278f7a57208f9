/**
 * Protocol violations and hostile clients: each is closed (v5 with the right reason code) and
 * logged, and every other client keeps working. Raw packets are built with mqtt-packet.
 */
import { test } from "node:test";
import { Buffer } from "node:buffer";
import assert from "node:assert/strict";
import { collect, connect, endAll, sleep, startBroker, type TestBroker } from "./helpers/broker.ts";
import mqttPacket from "mqtt-packet";
import { type AnyPacket, connectPacket, rawConnect } from "./helpers/raw.ts";

/** Another client publishes and receives normally: the broker is unharmed. */
async function stillWorks(tb: TestBroker): Promise<void> {
  const c = await connect(tb);
  const got = collect(c);
  await c.subscribeAsync("alive", { qos: 1 });
  await c.publishAsync("alive", "yes", { qos: 1 });
  const [m] = await got.next(1);
  assert.equal(m.payload, "yes");
  await endAll(c);
}

/** Connect raw at `version` and return the client after CONNACK. */
async function rawSession(tb: TestBroker, version: number, extra: AnyPacket = {}) {
  const rc = await rawConnect(tb.port, version);
  rc.send(connectPacket(`raw${Math.random().toString(36).slice(2, 8)}`, version, extra));
  const ack = await rc.next("connack");
  assert.equal(version === 5 ? ack.reasonCode : ack.returnCode, 0);
  return { rc, ack };
}

test("garbage bytes close that connection only", async () => {
  const tb = await startBroker();
  try {
    const bystander = await connect(tb);
    const rc = await rawConnect(tb.port);
    rc.send(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02]));
    await rc.closed;
    assert.equal(bystander.connected, true);
    await stillWorks(tb);
    await endAll(bystander);
  } finally {
    await tb.stop();
  }
});

test("the first packet must be CONNECT [MQTT-3.1.0-1]", async () => {
  const tb = await startBroker();
  try {
    const rc = await rawConnect(tb.port);
    rc.send({ cmd: "pingreq" });
    await rc.closed;
    assert.equal(rc.packets.length, 0);
    await stillWorks(tb);
  } finally {
    await tb.stop();
  }
});

test("a first packet that is not CONNECT is closed on its first byte, e.g. a PROXY header on a plain listener [MQTT-3.1.0-1]", async () => {
  // connect_timeout far away: only the first byte can explain a close within the wait.
  const tb = await startBroker({ connect_timeout: 600 });
  try {
    for (const text of ["PROXY TCP4 ", "P"]) {
      const rc = await rawConnect(tb.port);
      rc.send(new TextEncoder().encode(text));
      const closed = await Promise.race([
        rc.closed.then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 5000)),
      ]);
      rc.close();
      assert.equal(closed, true, `closed after ${JSON.stringify(text)}`);
      assert.equal(rc.packets.length, 0, "nothing is sent before CONNACK");
    }
    await stillWorks(tb);
  } finally {
    await tb.stop();
  }
});

/** `bytes` (one packet) with its Remaining Length in one byte more than it needs. */
function longLength(bytes: Uint8Array): Uint8Array {
  let i = 1;
  while (bytes[i] & 128) i++;
  const rl = [...bytes.subarray(1, i + 1)];
  rl[rl.length - 1] |= 128;
  rl.push(0);
  return new Uint8Array([bytes[0], ...rl, ...bytes.subarray(i + 1)]);
}

test("a Remaining Length in more bytes than needed closes the connection: v5 PINGREQ gets DISCONNECT 0x81 [MQTT-1.5.5-1 v5]", async () => {
  const tb = await startBroker();
  try {
    const { rc } = await rawSession(tb, 5);
    rc.send(new Uint8Array([0xc0, 0x80, 0x00])); // PINGREQ, length 0 in two bytes
    const d = await rc.next("disconnect");
    assert.equal(d.reasonCode, 0x81);
    await rc.closed;
    assert.equal(rc.packets.some((p) => p.cmd === "pingresp"), false);
    // A v5 CONNECT so encoded: closed, and its version unknown, without CONNACK.
    const rc2 = await rawConnect(tb.port, 5);
    rc2.send(longLength(mqttPacket.generate(connectPacket("long-rl", 5), { protocolVersion: 5 })));
    await rc2.closed;
    assert.deepEqual(rc2.packets.map((p) => p.cmd), []);
    await stillWorks(tb);
  } finally {
    await tb.stop();
  }
});

test("a v5 CONNECT with Authentication Data but no Authentication Method gets CONNACK 0x82 and is closed (§3.1.2.11.10)", async () => {
  const tb = await startBroker();
  try {
    const rc = await rawConnect(tb.port, 5);
    rc.send(connectPacket("authdata", 5, { properties: { authenticationData: Buffer.from("x") } }));
    const ack = await rc.next("connack");
    assert.equal(ack.reasonCode, 0x82);
    await rc.closed;
    assert.equal(tb.broker.sessions.has("authdata"), false);
    await stillWorks(tb);
  } finally {
    await tb.stop();
  }
});

test("a PUBLISH from a client with a Subscription Identifier: v5 DISCONNECT 0x82, not delivered [MQTT-3.3.4-6 v5]", async () => {
  const tb = await startBroker();
  const watcher = await connect(tb, { protocolVersion: 5 });
  try {
    const got = collect(watcher);
    await watcher.subscribeAsync("subid/#", { qos: 1 });
    const { rc } = await rawSession(tb, 5);
    rc.send({
      cmd: "publish",
      topic: "subid/t",
      payload: "x",
      qos: 1,
      messageId: 1,
      properties: { subscriptionIdentifier: 5 },
    });
    const d = await rc.next("disconnect");
    assert.equal(d.reasonCode, 0x82);
    await rc.closed;
    assert.equal(rc.packets.some((p) => p.cmd === "puback"), false);
    await watcher.publishAsync("subid/ok", "fine", { qos: 1 });
    const [m] = await got.next(1);
    assert.equal(m.topic, "subid/ok", "the refused PUBLISH was not delivered");
  } finally {
    await endAll(watcher);
    await tb.stop();
  }
});

test("a second CONNECT is a protocol error: v5 DISCONNECT 0x82 [MQTT-3.1.0-2]", async () => {
  const tb = await startBroker();
  try {
    const { rc } = await rawSession(tb, 5);
    rc.send(connectPacket("again", 5));
    const d = await rc.next("disconnect");
    assert.equal(d.reasonCode, 0x82);
    await rc.closed;
  } finally {
    await tb.stop();
  }
});

test("an unsupported protocol level gets CONNACK 0x01 and is closed [MQTT-3.1.2-2]", async () => {
  const tb = await startBroker();
  try {
    const rc = await rawConnect(tb.port);
    // CONNECT, protocol "MQTT" level 9, clean, keep-alive 60, client id "x".
    rc.send(new Uint8Array([0x10, 13, 0, 4, 0x4d, 0x51, 0x54, 0x54, 9, 0x02, 0, 60, 0, 1, 0x78]));
    const ack = await rc.next("connack");
    assert.equal(ack.returnCode, 1);
    await rc.closed;
  } finally {
    await tb.stop();
  }
});

test("v5 PUBLISH with a wildcard topic: DISCONNECT 0x90 Topic Name invalid [MQTT-3.3.2-2]", async () => {
  const tb = await startBroker();
  try {
    const { rc } = await rawSession(tb, 5);
    // PUBLISH QoS 0 topic "a/+" with an empty property block.
    rc.send(new Uint8Array([0x30, 6, 0, 3, 0x61, 0x2f, 0x2b, 0]));
    const d = await rc.next("disconnect");
    assert.equal(d.reasonCode, 0x90);
    await rc.closed;
    await stillWorks(tb);
  } finally {
    await tb.stop();
  }
});

test("a packet over max_packet_size: v5 DISCONNECT 0x95, advertised in CONNACK (MQTT 5.0 §3.2.2.3.6)", async () => {
  const tb = await startBroker({ max_packet_size: 1000 });
  try {
    const { rc, ack } = await rawSession(tb, 5);
    assert.equal(ack.properties?.maximumPacketSize, 1000);
    rc.send({
      cmd: "publish",
      topic: "big",
      payload: Buffer.alloc(2000),
      qos: 0,
      retain: false,
      dup: false,
    });
    const d = await rc.next("disconnect");
    assert.equal(d.reasonCode, 0x95);
    await rc.closed;
    await stillWorks(tb);
  } finally {
    await tb.stop();
  }
});

test("QoS 3 in PUBLISH closes the connection [MQTT-3.3.1-4]", async () => {
  const tb = await startBroker();
  try {
    const { rc } = await rawSession(tb, 4);
    rc.send(new Uint8Array([0x36, 5, 0, 1, 0x61, 0, 1]));
    await rc.closed;
    await stillWorks(tb);
  } finally {
    await tb.stop();
  }
});

test("a connection that never sends CONNECT is closed after connect_timeout", async () => {
  const tb = await startBroker({ connect_timeout: 1 });
  try {
    const rc = await rawConnect(tb.port);
    const t0 = Date.now();
    await rc.closed;
    assert.ok(Date.now() - t0 >= 900, "not closed before the timeout");
    assert.equal(tb.broker.connections.size, 0);
  } finally {
    await tb.stop();
  }
});

test("v5 topic alias from the client: set then used [MQTT-3.3.2-12 v5]; over the maximum 0x94 [MQTT-3.3.2-9 v5]", async () => {
  const tb = await startBroker();
  try {
    const sub = await connect(tb);
    const got = collect(sub);
    await sub.subscribeAsync("alias/#");
    const { rc, ack } = await rawSession(tb, 5);
    assert.equal(ack.properties?.topicAliasMaximum, 10);
    rc.send({
      cmd: "publish",
      topic: "alias/long/topic",
      payload: "1",
      qos: 0,
      properties: { topicAlias: 3 },
    });
    rc.send({ cmd: "publish", topic: "", payload: "2", qos: 0, properties: { topicAlias: 3 } });
    const msgs = await got.next(2);
    assert.deepEqual(msgs.map((m) => [m.topic, m.payload]), [["alias/long/topic", "1"], [
      "alias/long/topic",
      "2",
    ]]);
    rc.send({
      cmd: "publish",
      topic: "alias/x",
      payload: "3",
      qos: 0,
      properties: { topicAlias: 11 },
    });
    const d = await rc.next("disconnect");
    assert.equal(d.reasonCode, 0x94);
    await endAll(sub);
  } finally {
    await tb.stop();
  }
});

test("v5 incoming QoS 2 beyond Receive Maximum: DISCONNECT 0x93 [MQTT-3.3.4-7 v5]", async () => {
  const tb = await startBroker({ max_inflight_messages: 3 });
  try {
    const { rc, ack } = await rawSession(tb, 5);
    assert.equal(ack.properties?.receiveMaximum, 3);
    for (let i = 1; i <= 4; i++) {
      rc.send({ cmd: "publish", topic: "q2", payload: "x", qos: 2, messageId: i });
    }
    const d = await rc.next("disconnect");
    assert.equal(d.reasonCode, 0x93);
  } finally {
    await tb.stop();
  }
});

test("QoS 2 resent with the same id before PUBREL is delivered once [MQTT-4.3.3-10 v5]", async () => {
  const tb = await startBroker();
  try {
    const sub = await connect(tb);
    const got = collect(sub);
    await sub.subscribeAsync("once", { qos: 2 });
    const { rc } = await rawSession(tb, 4);
    rc.send({ cmd: "publish", topic: "once", payload: "x", qos: 2, messageId: 7 });
    await rc.next("pubrec");
    rc.send({ cmd: "publish", topic: "once", payload: "x", qos: 2, messageId: 7, dup: true });
    await rc.next("pubrec");
    rc.send({ cmd: "pubrel", messageId: 7 });
    const comp = await rc.next("pubcomp");
    assert.equal(comp.messageId, 7);
    await got.next(1);
    await sleep(100);
    assert.equal(got.messages.length, 1);
    rc.close();
    await endAll(sub);
  } finally {
    await tb.stop();
  }
});

test("outgoing flow control: no more unacknowledged QoS 1 than the client's Receive Maximum [MQTT-3.3.4-9 v5]", async () => {
  const tb = await startBroker();
  try {
    const { rc } = await rawSession(tb, 5, { properties: { receiveMaximum: 2 } });
    rc.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "flow", qos: 1 }] });
    await rc.next("suback");
    const pub = await connect(tb);
    for (let i = 0; i < 5; i++) await pub.publishAsync("flow", String(i), { qos: 1 });
    const a = await rc.next("publish");
    const b = await rc.next("publish");
    await sleep(150);
    assert.equal(rc.packets.filter((p: AnyPacket) => p.cmd === "publish").length, 2);
    rc.send({ cmd: "puback", messageId: a.messageId });
    const c = await rc.next("publish");
    assert.deepEqual([a, b, c].map((p) => p.payload.toString()), ["0", "1", "2"]);
    await endAll(pub);
    rc.close();
  } finally {
    await tb.stop();
  }
});

test("max_inflight_messages = 0 is no limit, as in Mosquitto: no Receive Maximum in CONNACK, more than 20 unacknowledged", async () => {
  const tb = await startBroker({ max_inflight_messages: 0 });
  try {
    const { rc, ack } = await rawSession(tb, 5);
    assert.equal(ack.properties?.receiveMaximum, undefined, "65535, the default, is not sent");
    rc.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "many", qos: 1 }] });
    await rc.next("suback");
    const pub = await connect(tb);
    for (let i = 0; i < 50; i++) await pub.publishAsync("many", String(i), { qos: 1 });
    // None acknowledged: with any window under 50 the rest would wait in the queue.
    for (let i = 0; i < 50; i++) {
      assert.equal((await rc.next("publish")).payload.toString(), String(i));
    }
    await endAll(pub);
    rc.close();
  } finally {
    await tb.stop();
  }
});

test("unacknowledged messages are resent with DUP on reconnect [MQTT-4.4.0-1][MQTT-3.3.1-1]", async () => {
  const tb = await startBroker();
  try {
    const first = await rawSession(tb, 4, { clientId: "redeliver", clean: false });
    first.rc.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "redo", qos: 1 }] });
    await first.rc.next("suback");
    const pub = await connect(tb);
    await pub.publishAsync("redo", "again", { qos: 1 });
    const p1 = await first.rc.next("publish");
    assert.equal(p1.dup, false);
    first.rc.close();
    await first.rc.closed;
    await sleep(50);
    const rc = await rawConnect(tb.port, 4);
    rc.send(connectPacket("redeliver", 4, { clean: false }));
    const ack = await rc.next("connack");
    assert.equal(ack.sessionPresent, true);
    const p2 = await rc.next("publish");
    assert.equal(p2.dup, true);
    assert.equal(p2.messageId, p1.messageId);
    assert.equal(p2.payload.toString(), "again");
    rc.close();
    await endAll(pub);
  } finally {
    await tb.stop();
  }
});

test("v5 subscription identifiers are sent with matching messages [MQTT-3.3.4-3 v5]", async () => {
  const tb = await startBroker();
  try {
    const c = await connect(tb, { protocolVersion: 5 });
    const got = collect(c);
    await c.subscribeAsync("sid/+", { qos: 1, properties: { subscriptionIdentifier: 7 } });
    await c.subscribeAsync("sid/#", { qos: 1, properties: { subscriptionIdentifier: 9 } });
    await c.publishAsync("sid/a", "x", { qos: 1 });
    const [m] = await got.next(1);
    const ids = [m.packet.properties.subscriptionIdentifier].flat().sort();
    assert.deepEqual(ids, [7, 9]);
    await endAll(c);
  } finally {
    await tb.stop();
  }
});

test("shared subscriptions: each message goes to one member of the group (MQTT 5.0 §4.8.2)", async () => {
  const tb = await startBroker();
  try {
    const a = await connect(tb, { protocolVersion: 5 });
    const b = await connect(tb, { protocolVersion: 5 });
    const ga = collect(a);
    const gb = collect(b);
    await a.subscribeAsync("$share/g/jobs/#", { qos: 1 });
    await b.subscribeAsync("$share/g/jobs/#", { qos: 1 });
    const pub = await connect(tb);
    for (let i = 0; i < 10; i++) await pub.publishAsync("jobs/x", String(i), { qos: 1 });
    await sleep(200);
    assert.equal(ga.messages.length + gb.messages.length, 10);
    assert.ok(ga.messages.length > 0 && gb.messages.length > 0, "both members get work");
    await endAll(a, b, pub);
  } finally {
    await tb.stop();
  }
});

test("v5 user properties, response topic, correlation data, content type and payload format pass through [MQTT-3.3.2-17 v5][MQTT-3.3.2-18 v5]", async () => {
  const tb = await startBroker();
  try {
    const sub = await connect(tb, { protocolVersion: 5 });
    const got = collect(sub);
    await sub.subscribeAsync("props", { qos: 1 });
    const pub = await connect(tb, { protocolVersion: 5 });
    await pub.publishAsync("props", "{}", {
      qos: 1,
      properties: {
        userProperties: { a: "1", b: ["2", "3"] },
        responseTopic: "reply/here",
        correlationData: new TextEncoder().encode("corr") as never,
        contentType: "application/json",
        payloadFormatIndicator: true,
      },
    });
    const [m] = await got.next(1);
    const p = m.packet.properties;
    assert.deepEqual({ ...p.userProperties }, { a: "1", b: ["2", "3"] });
    assert.equal(p.responseTopic, "reply/here");
    assert.equal(new TextDecoder().decode(p.correlationData), "corr");
    assert.equal(p.contentType, "application/json");
    assert.equal(p.payloadFormatIndicator, true);
    await endAll(sub, pub);
  } finally {
    await tb.stop();
  }
});

test("v5 topic aliases from the broker when the client allows them [MQTT-3.3.2-11 v5]", async () => {
  const tb = await startBroker({ max_topic_alias_broker: 5 });
  try {
    const { rc } = await rawSession(tb, 5, { properties: { topicAliasMaximum: 2 } });
    rc.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "ta/#", qos: 0 }] });
    await rc.next("suback");
    const pub = await connect(tb);
    for (const t of ["ta/one", "ta/one", "ta/two", "ta/three"]) {
      await pub.publishAsync(t, t, { qos: 1 });
    }
    const ps = [
      await rc.next("publish"),
      await rc.next("publish"),
      await rc.next("publish"),
      await rc.next("publish"),
    ];
    assert.deepEqual(ps.map((p) => [p.topic, p.properties?.topicAlias]), [
      ["ta/one", 1],
      ["", 1],
      ["ta/two", 2],
      ["ta/three", undefined],
    ]);
    rc.close();
    await endAll(pub);
  } finally {
    await tb.stop();
  }
});

test("v5 client Maximum Packet Size: a larger message is not sent to it [MQTT-3.1.2-25 v5]", async () => {
  const tb = await startBroker();
  try {
    const { rc } = await rawSession(tb, 5, { properties: { maximumPacketSize: 64 } });
    rc.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "mps", qos: 1 }] });
    await rc.next("suback");
    const pub = await connect(tb);
    await pub.publishAsync("mps", "x".repeat(200), { qos: 1 });
    await pub.publishAsync("mps", "small", { qos: 1 });
    const p = await rc.next("publish");
    assert.equal(p.payload.toString(), "small");
    rc.close();
    await endAll(pub);
  } finally {
    await tb.stop();
  }
});

test("subscriptions per client are limited by max_subscriptions_per_client (v5 0x97)", async () => {
  const tb = await startBroker({ max_subscriptions_per_client: 2 });
  try {
    const { rc } = await rawSession(tb, 5);
    rc.send({
      cmd: "subscribe",
      messageId: 1,
      subscriptions: ["l/1", "l/2", "l/3"].map((topic) => ({ topic, qos: 1 })),
    });
    const ack = await rc.next("suback");
    assert.deepEqual(ack.granted, [1, 1, 0x97]);
    rc.close();
  } finally {
    await tb.stop();
  }
});

test("invalid topic filters are refused in SUBACK: v3.1.1 0x80, v5 0x8F [MQTT-4.7.1-2 v3.1.1][MQTT-4.7.1-1 v5][MQTT-4.7.1-3 v3.1.1][MQTT-4.7.1-2 v5]", async () => {
  const tb = await startBroker();
  try {
    for (const version of [4, 5]) {
      const { rc } = await rawSession(tb, version);
      rc.send({
        cmd: "subscribe",
        messageId: 3,
        subscriptions: [{ topic: "a/#/b", qos: 0 }, { topic: "a+", qos: 1 }, {
          topic: "ok/+",
          qos: 1,
        }],
      });
      const ack = await rc.next("suback");
      assert.deepEqual(ack.granted, version === 5 ? [0x8f, 0x8f, 1] : [0x80, 0x80, 1]);
      rc.close();
    }
  } finally {
    await tb.stop();
  }
});

test("a slow reader cannot make the broker buffer without bound: QoS 0 is dropped for it", async () => {
  const tb = await startBroker();
  try {
    const { rc } = await rawSession(tb, 4);
    rc.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "flood", qos: 0 }] });
    await rc.next("suback");
    rc.socket.pause();
    const pub = await connect(tb);
    const payload = new Uint8Array(64 * 1024);
    for (let i = 0; i < 200; i++) pub.publish("flood", payload as never, { qos: 0 });
    await pub.publishAsync("flood", "end", { qos: 1 });
    await sleep(200);
    assert.ok(tb.broker.stats.publishDropped > 0, "messages for the stalled reader were dropped");
    await stillWorks(tb);
    rc.close();
    await endAll(pub);
  } finally {
    await tb.stop();
  }
});

test("a burst to a reader that stalls and resumes arrives intact and in order, nothing dropped", async () => {
  const tb = await startBroker();
  try {
    const { rc } = await rawSession(tb, 4);
    rc.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "backlog", qos: 0 }] });
    await rc.next("suback");
    rc.socket.pause();
    const pub = await connect(tb);
    // 1.8 MB (under the 4 MB slow-reader bound, so nothing is dropped) in batches of many
    // packets per write; transports/bun's own test covers writes the kernel takes only in part.
    const n = 6000, size = 300;
    for (let i = 0; i < n; i++) {
      const payload = new Uint8Array(size).fill(i & 0xff);
      payload[0] = i >> 8;
      payload[1] = i & 0xff;
      pub.publish("backlog", payload as never, { qos: 0 });
    }
    await pub.publishAsync("backlog", "end", { qos: 1 });
    await sleep(300);
    rc.socket.resume();
    const seen: number[] = [];
    for (;;) {
      const p = await rc.next("publish", 10_000);
      if (p.payload.length !== size) break;
      const i = (p.payload[0] << 8) | p.payload[1];
      for (let k = 2; k < size; k++) {
        if (p.payload[k] !== (i & 0xff)) assert.fail(`message ${i}: byte ${k} was overwritten`);
      }
      seen.push(i);
    }
    assert.equal(tb.broker.stats.publishDropped, 0);
    assert.deepEqual(seen, Array.from({ length: n }, (_, i) => i));
    rc.close();
    await endAll(pub);
  } finally {
    await tb.stop();
  }
});

test("acknowledgements: v5 reason codes only when not 0, v3 without [MQTT-3.4.2-1 v5][MQTT-3.6.2-1 v5][MQTT-3.7.2-1 v5]", async () => {
  const tb = await startBroker();
  try {
    const { rc } = await rawSession(tb, 5);
    // Several packets in one write: their acknowledgements come back in order.
    const pkt = (p: AnyPacket) => mqttPacket.generate(p, { protocolVersion: 5 });
    rc.send(Buffer.concat([
      pkt({ cmd: "publish", topic: "nobody/here", payload: "x", qos: 1, messageId: 11 }),
      pkt({ cmd: "publish", topic: "nobody/here", payload: "x", qos: 2, messageId: 12 }),
      pkt({ cmd: "pubrel", messageId: 12 }),
      pkt({ cmd: "pubrel", messageId: 99 }),
      pkt({ cmd: "pubrec", messageId: 77 }),
    ]));
    const ack = await rc.next("puback");
    assert.equal(ack.messageId, 11);
    assert.equal(ack.reasonCode, 0x10, "PUBACK 0x10 No matching subscribers");
    const rec = await rc.next("pubrec");
    assert.equal(rec.messageId, 12);
    assert.equal(rec.reasonCode, 0x10);
    const comp = await rc.next("pubcomp");
    assert.equal(comp.messageId, 12);
    assert.equal(comp.reasonCode ?? 0, 0);
    const unknown = await rc.next("pubcomp");
    assert.equal(unknown.messageId, 99);
    assert.equal(unknown.reasonCode, 0x92, "PUBCOMP 0x92 Packet Identifier not found");
    const rel = await rc.next("pubrel");
    assert.equal(rel.messageId, 77);
    assert.equal(rel.reasonCode, 0x92, "PUBREL 0x92 Packet Identifier not found");

    // v3: the same exchange, four-byte acknowledgements without reason codes.
    const v3 = await rawSession(tb, 4);
    const bytes: number[] = [];
    v3.rc.socket.on("data", (d: Buffer) => bytes.push(...d));
    v3.rc.send({ cmd: "publish", topic: "nobody/here", payload: "x", qos: 1, messageId: 5 });
    v3.rc.send({ cmd: "pubrel", messageId: 6 });
    await v3.rc.next("puback");
    await v3.rc.next("pubcomp");
    assert.deepEqual(bytes, [0x40, 2, 0, 5, 0x70, 2, 0, 6]);
    rc.close();
    v3.rc.close();
  } finally {
    await tb.stop();
  }
});

test("mount_point isolates a listener's clients under a topic prefix", async () => {
  const tb = await startBroker();
  try {
    tb.broker.config.listeners.push({
      ...tb.broker.config.listeners[0],
      port: 0,
      mount_point: "tenant/",
    });
    await tb.broker.stop();
    const [plain, mounted] = await tb.broker.start();
    const url = (l: { port: number }) => ({ ...tb, url: `mqtt://127.0.0.1:${l.port}` });
    const outside = await connect(url(plain));
    const inside = await connect(url(mounted));
    const gOut = collect(outside);
    const gIn = collect(inside);
    await outside.subscribeAsync("#", { qos: 1 });
    await inside.subscribeAsync("#", { qos: 1 });
    await inside.publishAsync("x", "from inside", { qos: 1 });
    await outside.publishAsync("y", "outside only", { qos: 1 });
    await outside.publishAsync("tenant/z", "to tenant", { qos: 1 });
    await gOut.next(3);
    await gIn.next(2);
    await sleep(100);
    assert.deepEqual(gIn.messages.map((m) => m.topic).sort(), ["x", "z"]);
    assert.deepEqual(gOut.messages.map((m) => m.topic).sort(), ["tenant/x", "tenant/z", "y"]);
    await endAll(outside, inside);
  } finally {
    await tb.stop();
  }
});

test("v5 Response Topic with a wildcard is a protocol error [MQTT-3.3.2-14 v5]", async () => {
  const tb = await startBroker();
  try {
    const { rc } = await rawSession(tb, 5);
    rc.send({
      cmd: "publish",
      topic: "req",
      payload: "x",
      qos: 0,
      properties: { responseTopic: "replies/#" },
    });
    const d = await rc.next("disconnect");
    assert.equal(d.reasonCode, 0x82);
    await rc.closed;
    await stillWorks(tb);
  } finally {
    await tb.stop();
  }
});
