/** Sessions, retained messages, wills and keep-alive, with MQTT.js as the client. */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  collect,
  connect,
  connectCollect,
  endAll,
  sleep,
  startBroker,
  until,
} from "./helpers/broker.ts";

test("retained: set, replace, clear with an empty payload [MQTT-3.3.1-5][MQTT-3.3.1-10 v3.1.1]", async () => {
  const tb = await startBroker();
  const pub = await connect(tb);
  try {
    await pub.publishAsync("r/a", "first", { qos: 1, retain: true });
    await pub.publishAsync("r/a", "second", { qos: 1, retain: true });
    await pub.publishAsync("r/b", "bee", { qos: 1, retain: true });
    await pub.publishAsync("r/b", "", { qos: 1, retain: true });
    const sub = await connect(tb);
    const got = collect(sub);
    await sub.subscribeAsync("r/#", { qos: 1 });
    await got.next(1);
    await sleep(100);
    assert.deepEqual(got.messages.map((m) => [m.topic, m.payload, m.packet.retain]), [[
      "r/a",
      "second",
      true,
    ]]);
    await endAll(sub);
  } finally {
    await endAll(pub);
    await tb.stop();
  }
});

test("live messages are delivered with retain 0, retained ones with retain 1 [MQTT-3.3.1-8 v3.1.1][MQTT-3.3.1-9 v3.1.1]", async () => {
  const tb = await startBroker();
  const pub = await connect(tb);
  const sub = await connect(tb);
  try {
    const got = collect(sub);
    await sub.subscribeAsync("live", { qos: 1 });
    await pub.publishAsync("live", "x", { qos: 1, retain: true });
    const [m] = await got.next(1);
    assert.equal(m.packet.retain, false);
  } finally {
    await endAll(pub, sub);
    await tb.stop();
  }
});

test("v5 retain handling 0/1/2 and retain-as-published [MQTT-3.3.1-10 v5][MQTT-3.3.1-11 v5][MQTT-3.3.1-12 v5]", async () => {
  const tb = await startBroker();
  const pub = await connect(tb, { protocolVersion: 5 });
  const sub = await connect(tb, { protocolVersion: 5 });
  try {
    await pub.publishAsync("rh/t", "kept", { qos: 1, retain: true });
    const got = collect(sub);
    await sub.subscribeAsync("rh/t", { qos: 1, rh: 2 });
    await sleep(100);
    assert.equal(got.messages.length, 0, "rh 2: no retained messages");
    await sub.subscribeAsync("rh/+", { qos: 1, rh: 1 });
    await got.next(1);
    await sub.subscribeAsync("rh/+", { qos: 1, rh: 1 });
    await sleep(100);
    assert.equal(got.messages.length, 1, "rh 1: only for a new subscription");
    await sub.subscribeAsync("rh/#", { qos: 1, rh: 0, rap: true });
    await sub.subscribeAsync("rh/#", { qos: 1, rh: 0, rap: true });
    await got.next(3);
    await pub.publishAsync("rh/t", "live", { qos: 1, retain: true });
    const all = await got.next(4);
    assert.equal(all[3].payload, "live");
    assert.equal(all[3].packet.retain, true, "retain as published");
  } finally {
    await endAll(pub, sub);
    await tb.stop();
  }
});

test("persistent session keeps subscriptions and queues QoS 1 while offline [MQTT-3.1.2-4 v3.1.1][MQTT-4.4.0-1]", async () => {
  const tb = await startBroker();
  const pub = await connect(tb);
  try {
    let sub = await connect(tb, { clientId: "keeper", clean: false });
    await sub.subscribeAsync("q/#", { qos: 1 });
    await endAll(sub);
    await sleep(50);
    for (let i = 0; i < 5; i++) await pub.publishAsync("q/x", `m${i}`, { qos: 1 });
    await pub.publishAsync("q/x", "dropped qos0", { qos: 0 });
    const r = await connectCollect(tb, { clientId: "keeper", clean: false });
    sub = r.client;
    const got = r.got;
    assert.equal(r.connack.sessionPresent, true);
    const msgs = await got.next(5);
    await sleep(100);
    assert.deepEqual(got.messages.map((m) => m.payload), ["m0", "m1", "m2", "m3", "m4"]);
    assert.equal(msgs.length, 5);
    await endAll(sub);
  } finally {
    await endAll(pub);
    await tb.stop();
  }
});

test("CONNACK session present flag [MQTT-3.2.2-1 v3.1.1][MQTT-3.2.2-2 v3.1.1][MQTT-3.2.2-3 v3.1.1]", async () => {
  const tb = await startBroker();
  try {
    const sessionPresent = async (clean: boolean) => {
      const { client, connack } = await connectCollect(tb, { clientId: "sp", clean });
      await endAll(client);
      await sleep(30);
      return connack.sessionPresent;
    };
    assert.equal(await sessionPresent(false), false);
    assert.equal(await sessionPresent(false), true);
    assert.equal(await sessionPresent(true), false);
  } finally {
    await tb.stop();
  }
});

test("v5 session expiry: the session survives a reconnect within the interval", async () => {
  const tb = await startBroker();
  const pub = await connect(tb);
  try {
    let sub = await connect(tb, {
      protocolVersion: 5,
      clientId: "exp",
      clean: false,
      properties: { sessionExpiryInterval: 30 },
    });
    await sub.subscribeAsync("exp/t", { qos: 1 });
    await endAll(sub);
    await sleep(30);
    await pub.publishAsync("exp/t", "while away", { qos: 1 });
    const r = await connectCollect(tb, {
      protocolVersion: 5,
      clientId: "exp",
      clean: false,
      properties: { sessionExpiryInterval: 30 },
    });
    sub = r.client;
    const [m] = await r.got.next(1);
    assert.equal(m.payload, "while away");
    await endAll(sub);
    // With expiry 0 the session ends at disconnect.
    sub = await connect(tb, {
      protocolVersion: 5,
      clientId: "exp0",
      clean: false,
      properties: { sessionExpiryInterval: 0 },
    });
    await sub.subscribeAsync("exp0/t", { qos: 1 });
    await endAll(sub);
    await sleep(30);
    assert.equal(tb.broker.sessions.has("exp0"), false);
  } finally {
    await endAll(pub);
    await tb.stop();
  }
});

test("persistent_client_expiration caps a Session Expiry Interval raised on v5 DISCONNECT as it caps one on CONNECT (MQTT 5.0 §3.14.2.2.2)", async () => {
  const tb = await startBroker({ persistent_client_expiration: 60 });
  try {
    const c = await connect(tb, {
      protocolVersion: 5,
      clientId: "capped",
      clean: false,
      properties: { sessionExpiryInterval: 999999 },
    });
    const s = tb.broker.sessions.get("capped")!;
    assert.equal(s.expiryInterval, 60, "capped at CONNECT");
    await c.endAsync(false, { properties: { sessionExpiryInterval: 0xfffffffe } });
    await until(() => s.connection === null, 3000, "the disconnect");
    assert.equal(s.expiryInterval, 60, "capped at DISCONNECT");
    // Lowering it on DISCONNECT stays allowed.
    const d = await connect(tb, {
      protocolVersion: 5,
      clientId: "capped",
      clean: false,
      properties: { sessionExpiryInterval: 30 },
    });
    await d.endAsync(false, { properties: { sessionExpiryInterval: 10 } });
    await until(() => s.connection === null, 3000, "the second disconnect");
    assert.equal(s.expiryInterval, 10);
  } finally {
    await tb.stop();
  }
});

test("will is published on abnormal close, not after DISCONNECT [MQTT-3.1.2-8][MQTT-3.14.4-3]", async () => {
  const tb = await startBroker();
  const watcher = await connect(tb);
  try {
    const got = collect(watcher);
    await watcher.subscribeAsync("will/#", { qos: 1 });
    const polite = await connect(tb, {
      will: { topic: "will/polite", payload: "bye", qos: 1, retain: false },
    });
    await polite.endAsync();
    const rude = await connect(tb, {
      will: { topic: "will/rude", payload: "gone", qos: 1, retain: false },
    });
    // deno-lint-ignore no-explicit-any
    (rude as any).stream.destroy();
    const [m] = await got.next(1);
    await sleep(100);
    assert.deepEqual(got.messages.map((x) => [x.topic, x.payload]), [["will/rude", "gone"]]);
    assert.equal(m.packet.qos, 1);
    await endAll(rude);
  } finally {
    await endAll(watcher);
    await tb.stop();
  }
});

test("v5 DISCONNECT with reason 0x04 sends the will [MQTT-3.14.4-3]", async () => {
  const tb = await startBroker();
  const watcher = await connect(tb);
  try {
    const got = collect(watcher);
    await watcher.subscribeAsync("will5/#", { qos: 1 });
    const c = await connect(tb, {
      protocolVersion: 5,
      will: { topic: "will5/x", payload: "w", qos: 0, retain: false },
    });
    await c.endAsync(false, { reasonCode: 4 });
    const [m] = await got.next(1);
    assert.equal(m.topic, "will5/x");
  } finally {
    await endAll(watcher);
    await tb.stop();
  }
});

test("session take-over closes the older connection [MQTT-3.1.4-3 v5]", async () => {
  const tb = await startBroker();
  try {
    const a = await connect(tb, { clientId: "same", protocolVersion: 5 });
    let reason = -1;
    a.on("disconnect", (p) => (reason = p.reasonCode ?? -1));
    const closed = new Promise<void>((r) => a.on("close", () => r()));
    const b = await connect(tb, { clientId: "same", protocolVersion: 5 });
    await closed;
    assert.equal(reason, 0x8e);
    assert.equal(b.connected, true);
    await endAll(a, b);
  } finally {
    await tb.stop();
  }
});

test("v5 empty client id gets an Assigned Client Identifier [MQTT-3.2.2-16 v5]", async () => {
  const tb = await startBroker();
  try {
    const { client: c, connack } = await connectCollect(tb, { protocolVersion: 5, clientId: "" });
    const assigned = connack.properties?.assignedClientIdentifier;
    assert.ok(typeof assigned === "string" && assigned.startsWith("auto-"), String(assigned));
    assert.ok(tb.broker.sessions.has(assigned));
    await endAll(c);
  } finally {
    await tb.stop();
  }
});

test("v5 message expiry: an expired queued message is not delivered [MQTT-3.3.2-5 v5]", async () => {
  const tb = await startBroker();
  const pub = await connect(tb, { protocolVersion: 5 });
  try {
    let sub = await connect(tb, {
      protocolVersion: 5,
      clientId: "mexp",
      clean: false,
      properties: { sessionExpiryInterval: 60 },
    });
    await sub.subscribeAsync("mexp", { qos: 1 });
    await endAll(sub);
    await sleep(30);
    await pub.publishAsync("mexp", "short", { qos: 1, properties: { messageExpiryInterval: 1 } });
    await pub.publishAsync("mexp", "long", { qos: 1, properties: { messageExpiryInterval: 100 } });
    await sleep(1200);
    const r = await connectCollect(tb, {
      protocolVersion: 5,
      clientId: "mexp",
      clean: false,
      properties: { sessionExpiryInterval: 60 },
    });
    sub = r.client;
    const got = r.got;
    const [m] = await got.next(1);
    await sleep(100);
    assert.deepEqual(got.messages.map((x) => x.payload), ["long"]);
    const left = m.packet.properties?.messageExpiryInterval;
    assert.ok(left > 0 && left < 100, `remaining expiry ${left} [MQTT-3.3.2-6 v5]`);
    await endAll(sub);
  } finally {
    await endAll(pub);
    await tb.stop();
  }
});
