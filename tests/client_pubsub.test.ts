/**
 * The client library (src/client/client.ts) against the broker and against MQTT.js, and its
 * state machines against a scripted server (tests/helpers/fake_broker.ts, mqtt-packet codec).
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { ConnectError, MqttClient, type ServerAddress } from "../src/client/client.ts";
import type { ProtocolVersion, PublishPacket } from "../src/codec/types.ts";
import { collect, connect, endAll, startBroker, type TestBroker } from "./helpers/broker.ts";
import { fakeBroker } from "./helpers/fake_broker.ts";

const dec = new TextDecoder();
const brokers: TestBroker[] = [];
after(async () => {
  await Promise.all(brokers.map((b) => b.stop()));
});
async function broker(): Promise<TestBroker> {
  const b = await startBroker();
  brokers.push(b);
  return b;
}
const at = (port: number): ServerAddress[] => [{ protocol: "mqtt", host: "127.0.0.1", port }];

/** Collects messages; `next(n)` resolves once n arrived. */
function inbox(c: MqttClient) {
  const got: PublishPacket[] = [];
  let wake: (() => void) | undefined;
  c.on("message", (p: PublishPacket) => {
    got.push(p);
    wake?.();
  });
  return {
    got,
    async next(n: number, ms = 3000): Promise<PublishPacket[]> {
      const until = Date.now() + ms;
      while (got.length < n) {
        if (Date.now() > until) throw new Error(`expected ${n} messages, got ${got.length}`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 50);
        });
      }
      return got.slice();
    },
  };
}

for (const v of [3, 4, 5] as ProtocolVersion[]) {
  test(`v${v}: publish at QoS 0, 1, 2 and receive at the granted QoS [MQTT-4.3.1-1] [MQTT-4.3.2-1] [MQTT-4.3.3-1 v3.1.1]`, async () => {
    const tb = await broker();
    const sub = await MqttClient.connect({ servers: at(tb.port), protocolVersion: v });
    const pub = await MqttClient.connect({ servers: at(tb.port), protocolVersion: v });
    try {
      const box = inbox(sub);
      const ack = await sub.subscribe([{ topic: "q/#", qos: 2 }]);
      assert.deepEqual(ack.granted, [2]);
      assert.equal(await pub.publish("q/0", "zero", { qos: 0 }), undefined);
      const a1 = await pub.publish("q/1", "one", { qos: 1 });
      assert.equal(a1?.cmd, "puback");
      const a2 = await pub.publish("q/2", "two", { qos: 2 });
      assert.equal(a2?.cmd, "pubcomp");
      assert.equal(pub.inflight, 0);
      const got = await box.next(3);
      assert.deepEqual(
        got.map((p) => [p.topic, dec.decode(p.payload), p.qos]),
        [["q/0", "zero", 0], ["q/1", "one", 1], ["q/2", "two", 2]],
      );
      const u = await sub.unsubscribe("q/#");
      assert.equal(u.cmd, "unsuback");
    } finally {
      await pub.end();
      await sub.end();
    }
  });
}

test("interoperates with MQTT.js in both directions at QoS 2 (v5 properties kept)", async () => {
  const tb = await broker();
  const ours = await MqttClient.connect({ servers: at(tb.port), protocolVersion: 5 });
  const theirs = await connect(tb, { protocolVersion: 5 });
  try {
    const box = inbox(ours);
    await ours.subscribe([{ topic: "from/js", qos: 2 }]);
    const got = collect(theirs);
    await theirs.subscribeAsync("from/midge", { qos: 2 });
    await theirs.publishAsync("from/js", "hello midge", {
      qos: 2,
      properties: { userProperties: { k: "v" }, contentType: "text/plain" },
    });
    await ours.publish("from/midge", "hello js", {
      qos: 2,
      properties: { responseTopic: "back", correlationData: new Uint8Array([1, 2, 3]) },
    });
    const [m] = await box.next(1);
    assert.equal(dec.decode(m.payload), "hello midge");
    assert.equal(m.properties?.contentType, "text/plain");
    assert.deepEqual(m.properties?.userProperties, [["k", "v"]]);
    const [j] = await got.next(1);
    assert.equal(j.payload, "hello js");
    assert.equal(j.packet.properties.responseTopic, "back");
    assert.deepEqual([...j.packet.properties.correlationData], [1, 2, 3]);
  } finally {
    await ours.end();
    await endAll(theirs);
  }
});

test("v5: an empty client id gets the broker's assigned one [MQTT-3.2.2-16 v5]", async () => {
  const tb = await broker();
  const c = await MqttClient.connect({ servers: at(tb.port), protocolVersion: 5 });
  try {
    assert.ok(c.clientId.length > 0);
    assert.equal(c.connack?.properties?.assignedClientIdentifier, c.clientId);
  } finally {
    await c.end();
  }
});

test("the will is published when the client goes away without DISCONNECT [MQTT-3.1.2-8]", async () => {
  const tb = await broker();
  const watcher = await MqttClient.connect({ servers: at(tb.port) });
  const box = inbox(watcher);
  await watcher.subscribe("will/t");
  const c = await MqttClient.connect({
    servers: at(tb.port),
    will: { topic: "will/t", payload: new TextEncoder().encode("gone"), qos: 1, retain: false },
  });
  c.destroy();
  const [m] = await box.next(1);
  assert.equal(dec.decode(m.payload), "gone");
  await watcher.end();
});

test("a refused CONNACK rejects with its code; a closed port with ECONNREFUSED", async () => {
  const fb = await fakeBroker(4);
  const p = MqttClient.connect({ servers: at(fb.port), username: "u", password: "p" });
  const conn = await fb.accept();
  const connect = await conn.next("connect");
  assert.equal(connect.username, "u");
  assert.equal(String(connect.password), "p");
  conn.send({ cmd: "connack", returnCode: 5, sessionPresent: false });
  await assert.rejects(p, (e: unknown) => e instanceof ConnectError && e.code === 5);
  await fb.stop();
  await assert.rejects(
    MqttClient.connect({ servers: at(fb.port) }),
    (e: unknown) => e instanceof ConnectError && e.code === "ECONNREFUSED",
  );
});

test("QoS 2 out: PUBLISH, PUBREC → PUBREL, PUBCOMP resolves [MQTT-4.3.3-4 v5]; the inflight window holds the rest", async () => {
  const fb = await fakeBroker(5);
  const cp = MqttClient.connect({ servers: at(fb.port), protocolVersion: 5, maxInflight: 1 });
  const conn = await fb.accept();
  await conn.next("connect");
  conn.send({ cmd: "connack", reasonCode: 0, sessionPresent: false, properties: {} });
  const c = await cp;
  let done1 = false;
  const p1 = c.publish("t", "a", { qos: 2 }).then((a) => (done1 = true, a));
  const p2 = c.publish("t", "b", { qos: 1 });
  const pub1 = await conn.next("publish");
  assert.equal(pub1.qos, 2);
  assert.equal(String(pub1.payload), "a");
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(conn.received.filter((p) => p.cmd === "publish").length, 1, "window of 1");
  conn.send({ cmd: "pubrec", messageId: pub1.messageId });
  const rel = await conn.next("pubrel");
  assert.equal(rel.messageId, pub1.messageId);
  assert.equal(done1, false);
  conn.send({ cmd: "pubcomp", messageId: pub1.messageId });
  assert.equal((await p1)?.cmd, "pubcomp");
  const pub2 = await conn.next("publish");
  assert.equal(String(pub2.payload), "b");
  conn.send({ cmd: "puback", messageId: pub2.messageId, reasonCode: 0x10 });
  assert.equal((await p2)?.reasonCode, 0x10);
  c.destroy();
  await fb.stop();
});

test("QoS 2 in: a re-sent PUBLISH before PUBREL is delivered once; PUBREL gets PUBCOMP [MQTT-4.3.3-10 v5] [MQTT-4.3.3-11 v5]", async () => {
  const fb = await fakeBroker(4);
  const cp = MqttClient.connect({ servers: at(fb.port) });
  const conn = await fb.accept();
  await conn.next("connect");
  conn.send({ cmd: "connack", returnCode: 0, sessionPresent: false });
  const c = await cp;
  const box = inbox(c);
  const publish = {
    cmd: "publish",
    topic: "in",
    payload: "x",
    qos: 2,
    messageId: 7,
    retain: false,
  };
  conn.send({ ...publish, dup: false });
  assert.equal((await conn.next("pubrec")).messageId, 7);
  conn.send({ ...publish, dup: true });
  assert.equal((await conn.next("pubrec")).messageId, 7);
  conn.send({ cmd: "pubrel", messageId: 7 });
  assert.equal((await conn.next("pubcomp")).messageId, 7);
  conn.send({ cmd: "publish", topic: "in", payload: "y", qos: 1, messageId: 8, retain: false });
  assert.equal((await conn.next("puback")).messageId, 8);
  const got = await box.next(2);
  assert.deepEqual(got.map((p) => dec.decode(p.payload)), ["x", "y"]);
  c.destroy();
  await fb.stop();
});

test("keep-alive: PINGREQ when idle; no PINGRESP means the connection is lost [MQTT-3.1.2-23 v3.1.1][MQTT-3.1.2-20 v5]", async () => {
  const fb = await fakeBroker(4);
  const cp = MqttClient.connect({ servers: at(fb.port), keepalive: 1 });
  const conn = await fb.accept();
  assert.equal((await conn.next("connect")).keepalive, 1);
  conn.send({ cmd: "connack", returnCode: 0, sessionPresent: false });
  const c = await cp;
  const closed = new Promise<Error | undefined>((r) => c.once("close", r));
  await conn.next("pingreq", 3000);
  const e = await closed;
  assert.match(String(e?.message), /keep-alive/);
  await fb.stop();
});

test("v5: server topic aliases are resolved [MQTT-3.3.2-10 v5]; DISCONNECT from the server is reported", async () => {
  const fb = await fakeBroker(5);
  const cp = MqttClient.connect({
    servers: at(fb.port),
    protocolVersion: 5,
    properties: { topicAliasMaximum: 5 },
  });
  const conn = await fb.accept();
  assert.equal((await conn.next("connect")).properties.topicAliasMaximum, 5);
  conn.send({ cmd: "connack", reasonCode: 0, sessionPresent: false, properties: {} });
  const c = await cp;
  const box = inbox(c);
  const disconnected = new Promise((r) => c.once("disconnect", r));
  const base = { cmd: "publish", qos: 0, retain: false, dup: false };
  conn.send({ ...base, topic: "long/topic/name", payload: "1", properties: { topicAlias: 2 } });
  conn.send({ ...base, topic: "", payload: "2", properties: { topicAlias: 2 } });
  const got = await box.next(2);
  assert.deepEqual(got.map((p) => p.topic), ["long/topic/name", "long/topic/name"]);
  conn.send({ cmd: "disconnect", reasonCode: 0x8b });
  // deno-lint-ignore no-explicit-any
  assert.equal(((await disconnected) as any).reasonCode, 0x8b);
  await fb.stop();
});
