/**
 * A cluster of Midge nodes over real nats-servers (3 servers, JetStream), with MQTT.js clients on
 * different nodes: routing, the SUBSCRIBE race, retained messages and shared subscriptions.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { collect, connect, endAll } from "./helpers/broker.ts";
import { startCluster } from "./helpers/cluster.ts";

let cluster: Awaited<ReturnType<typeof startCluster>>;
before(async () => {
  cluster = await startCluster(3);
});
after(async () => {
  await cluster?.stop();
});

test("cluster: a message published on one node reaches subscribers on the others, odd topics included, in order [MQTT-4.6.0-6 v3.1.1][MQTT-4.6.0-5 v5]", async () => {
  const [a, b, c] = cluster.nodes;
  const subB = await connect(b, { clientId: "route-sub-b" });
  const subC = await connect(c, { clientId: "route-sub-c", protocolVersion: 5 });
  const pub = await connect(a, { clientId: "route-pub" });
  try {
    const gotB = collect(subB);
    const gotC = collect(subC);
    await subB.subscribeAsync("odd/#", { qos: 1 });
    await subC.subscribeAsync("odd/+/x", { qos: 2 });
    const topics = [
      "odd/a.b/x",
      "odd/*/x",
      "odd/>/x",
      "odd/ /x",
      "odd//x",
      "odd/$x/x",
      "odd/é/x",
      "odd/=3D/x",
    ];
    for (const [i, t] of topics.entries()) await pub.publishAsync(t, `m${i}`, { qos: 1 });
    const b1 = await gotB.next(topics.length);
    assert.deepEqual(b1.map((m) => m.topic), topics, "every odd topic arrives, in publish order");
    const c1 = await gotC.next(topics.length);
    assert.deepEqual(c1.map((m) => m.payload), topics.map((_, i) => `m${i}`));
    assert.ok(
      c1.every((m) => m.packet.qos === 1),
      "delivered at min(publish QoS, subscription QoS)",
    );
    // Nothing is delivered twice although two filters of no node overlap here.
    await pub.publishAsync("odd/q0/x", "zero", { qos: 0 });
    const [late] = (await gotC.next(topics.length + 1)).slice(-1);
    assert.equal(late.payload, "zero");
    assert.equal(late.packet.qos, 0);
  } finally {
    await endAll(subB, subC, pub);
  }
});

test("cluster: a burst of QoS 0 messages (sent to the next node in batches) arrives complete and in publish order, across topics and QoS 1 messages between them [MQTT-4.6.0-6 v3.1.1][MQTT-4.6.0-5 v5]", async () => {
  const [a, b] = cluster.nodes;
  const sub = await connect(b, { clientId: "burst-sub" });
  const pub = await connect(a, { clientId: "burst-pub" });
  try {
    const got = collect(sub);
    await sub.subscribeAsync("burst/#", { qos: 1 });
    // Runs of one topic, then another, a QoS 1 message among them: all written at once.
    const sent: string[] = [];
    for (let i = 0; i < 600; i++) {
      const topic = `burst/${Math.floor(i / 50) % 3}`;
      const qos = i % 97 === 0 ? 1 : 0;
      pub.publish(topic, String(i), { qos });
      sent.push(`${topic} ${i}`);
    }
    const msgs = await got.next(sent.length, 20_000);
    assert.deepEqual(msgs.map((m) => `${m.topic} ${m.payload}`), sent);
  } finally {
    await endAll(sub, pub);
  }
});

test("cluster: a burst of QoS 0 messages to a shared subscription gives each message to one member [MQTT-4.8.2]", async () => {
  const [a, b, c] = cluster.nodes;
  const m1 = await connect(b, { clientId: "burst-share-1", protocolVersion: 5 });
  const m2 = await connect(c, { clientId: "burst-share-2", protocolVersion: 5 });
  const pub = await connect(a, { clientId: "burst-share-pub" });
  try {
    const gots = [collect(m1), collect(m2)];
    for (const m of [m1, m2]) await m.subscribeAsync("$share/bg/bjobs/#", { qos: 0 });
    const n = 500;
    for (let i = 0; i < n; i++) pub.publish(`bjobs/${i % 4}`, String(i), { qos: 0 });
    await pub.publishAsync("bjobs/end", "end", { qos: 1 });
    const deadline = Date.now() + 20_000;
    while (gots.reduce((x, g) => x + g.messages.length, 0) < n + 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 300));
    const all = gots.flatMap((g) => g.messages.map((m) => m.payload));
    assert.equal(all.length, n + 1, "each message delivered once in the group");
    assert.equal(new Set(all).size, n + 1);
  } finally {
    await endAll(m1, m2, pub);
  }
});

test("cluster: a subscription with several matching filters on one node gets one copy per the rules [MQTT-3.3.4-2 v5]", async () => {
  const [a, b] = cluster.nodes;
  const sub = await connect(b, { clientId: "overlap-sub", protocolVersion: 5 });
  const other = await connect(b, { clientId: "overlap-other" });
  const pub = await connect(a, { clientId: "overlap-pub" });
  try {
    const got = collect(sub);
    const got2 = collect(other);
    await sub.subscribeAsync(["ov/#", "ov/+", "ov/x"], { qos: 1 });
    await other.subscribeAsync("ov/x", { qos: 0 });
    await pub.publishAsync("ov/x", "once", { qos: 1 });
    await got.next(1);
    await got2.next(1);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(got.messages.length, 1, "one delivery to a session whose filters overlap");
    assert.equal(got2.messages.length, 1);
  } finally {
    await endAll(sub, other, pub);
  }
});

test("cluster: after SUBACK, a message published at once on another node is never missed (0 lost in 200)", async () => {
  const [a, b] = cluster.nodes;
  const sub = await connect(b, { clientId: "race-sub" });
  const pub = await connect(a, { clientId: "race-pub" });
  try {
    const got = collect(sub);
    for (let i = 0; i < 200; i++) {
      // A filter no node has asked for before: its interest is new to every NATS server.
      await sub.subscribeAsync(`race/${i}`, { qos: 0 });
      pub.publish(`race/${i}`, String(i), { qos: 0 });
    }
    await pub.publishAsync("race/199", "end", { qos: 1 });
    const all = await got.next(201, 10_000);
    const seen = new Set(all.filter((m) => m.payload !== "end").map((m) => m.payload));
    assert.equal(seen.size, 200, `lost: ${200 - seen.size}`);
  } finally {
    await endAll(sub, pub);
  }
});

test("cluster: a retained message is on every node right after its PUBACK, and an empty payload clears it everywhere [MQTT-3.3.1-5][MQTT-3.3.1-10 v3.1.1]", async () => {
  const [a, b, c] = cluster.nodes;
  const pub = await connect(a, { clientId: "ret-pub" });
  try {
    await pub.publishAsync("ret/one", "kept", { qos: 1, retain: true });
    for (const n of [b, c, a]) {
      const s = await connect(n, { clientId: `ret-sub-${n.id}` });
      const got = collect(s);
      await s.subscribeAsync("ret/#", { qos: 1 });
      const [m] = await got.next(1);
      assert.equal(m.payload, "kept");
      assert.equal(m.packet.retain, true, "[MQTT-3.3.1-8 v3.1.1] sent with the retain flag");
      await endAll(s);
    }
    await pub.publishAsync("ret/one", "", { qos: 1, retain: true });
    for (const n of [b, c]) {
      const s = await connect(n, { clientId: `ret-gone-${n.id}` });
      const got = collect(s);
      await s.subscribeAsync("ret/#", { qos: 1 });
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(got.messages.length, 0, `cleared on ${n.id}`);
      await endAll(s);
    }
  } finally {
    await endAll(pub);
  }
});

test("cluster: a shared subscription gives each message to one member cluster-wide, and members on every node get a share [MQTT-4.8.2]", async () => {
  const [a, b, c] = cluster.nodes;
  const m1 = await connect(b, { clientId: "share-1", protocolVersion: 5 });
  const m2 = await connect(c, { clientId: "share-2", protocolVersion: 5 });
  const m3 = await connect(c, { clientId: "share-3", protocolVersion: 5 });
  const pub = await connect(a, { clientId: "share-pub" });
  try {
    const gots = [collect(m1), collect(m2), collect(m3)];
    for (const m of [m1, m2, m3]) await m.subscribeAsync("$share/g/jobs/#", { qos: 1 });
    const n = 60;
    for (let i = 0; i < n; i++) await pub.publishAsync(`jobs/${i}`, String(i), { qos: 1 });
    const deadline = Date.now() + 10_000;
    while (gots.reduce((x, g) => x + g.messages.length, 0) < n && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 300));
    const all = gots.flatMap((g) => g.messages.map((m) => m.payload));
    assert.equal(all.length, n, "each message delivered exactly once in the group");
    assert.equal(new Set(all).size, n);
    assert.ok(gots[0].messages.length > 0, "the member on node b got a share");
    assert.ok(
      gots[1].messages.length + gots[2].messages.length > 0,
      "members on node c got a share",
    );
  } finally {
    await endAll(m1, m2, m3, pub);
  }
});
