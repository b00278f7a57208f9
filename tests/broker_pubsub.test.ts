/** Publish/subscribe through the broker with MQTT.js at 3.1, 3.1.1 and 5.0. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { collect, connect, endAll, sleep, startBroker } from "./helpers/broker.ts";

for (const protocolVersion of [3, 4, 5] as const) {
  const name = { 3: "3.1", 4: "3.1.1", 5: "5.0" }[protocolVersion];
  test(`MQTT ${name}: QoS 0, 1 and 2 round trip through the broker`, async () => {
    const tb = await startBroker();
    const protocolId = protocolVersion === 3 ? "MQIsdp" : "MQTT";
    const sub = await connect(tb, {
      protocolVersion,
      protocolId,
      clientId: `sub${protocolVersion}`,
    });
    const pub = await connect(tb, {
      protocolVersion,
      protocolId,
      clientId: `pub${protocolVersion}`,
    });
    try {
      const got = collect(sub);
      const granted = await sub.subscribeAsync("t/#", { qos: 2 });
      assert.equal(granted[0].qos, 2);
      await pub.publishAsync("t/0", "zero", { qos: 0 });
      await pub.publishAsync("t/1", "one", { qos: 1 });
      await pub.publishAsync("t/2", "two", { qos: 2 });
      const msgs = await got.next(3);
      assert.deepEqual(msgs.map((m) => [m.topic, m.payload, m.packet.qos]), [
        ["t/0", "zero", 0],
        ["t/1", "one", 1],
        ["t/2", "two", 2],
      ]);
    } finally {
      await endAll(sub, pub);
      await tb.stop();
    }
  });
}

test("QoS is downgraded to the subscription's QoS [MQTT-3.8.4-6 v3.1.1][MQTT-3.8.4-8 v5]", async () => {
  const tb = await startBroker();
  const sub = await connect(tb);
  const pub = await connect(tb);
  try {
    const got = collect(sub);
    await sub.subscribeAsync("d", { qos: 1 });
    await pub.publishAsync("d", "x", { qos: 2 });
    const [m] = await got.next(1);
    assert.equal(m.packet.qos, 1);
  } finally {
    await endAll(sub, pub);
    await tb.stop();
  }
});

test("wildcards + and # match per [MQTT-4.7.1-2 v3.1.1][MQTT-4.7.1-1 v5] and [MQTT-4.7.1-3 v3.1.1][MQTT-4.7.1-2 v5]", async () => {
  const tb = await startBroker();
  const sub = await connect(tb);
  const pub = await connect(tb);
  try {
    const got = collect(sub);
    await sub.subscribeAsync(["sport/+/player", "news/#"], { qos: 0 });
    for (const t of ["sport/tennis/player", "sport/player", "news", "news/a/b", "other"]) {
      await pub.publishAsync(t, t, { qos: 1 });
    }
    await pub.publishAsync("end", "end", { qos: 1 });
    await sub.subscribeAsync("end");
    await pub.publishAsync("end", "end", { qos: 1 });
    const msgs = await got.next(4);
    assert.deepEqual(msgs.map((m) => m.topic).sort(), [
      "end",
      "news",
      "news/a/b",
      "sport/tennis/player",
    ]);
  } finally {
    await endAll(sub, pub);
    await tb.stop();
  }
});

test("topics starting with $ are not matched by # or + [MQTT-4.7.2-1]", async () => {
  const tb = await startBroker();
  const sub = await connect(tb);
  const pub = await connect(tb);
  try {
    const got = collect(sub);
    await sub.subscribeAsync(["#", "+/x", "$app/#"]);
    await pub.publishAsync("$app/x", "dollar", { qos: 1 });
    await pub.publishAsync("plain/x", "plain", { qos: 1 });
    await got.next(2);
    await sleep(150);
    // "$app/x" arrives only through "$app/#"; "plain/x" through "#" and "+/x" as one copy.
    assert.deepEqual(got.messages.map((m) => m.topic).sort(), ["$app/x", "plain/x"]);
  } finally {
    await endAll(sub, pub);
    await tb.stop();
  }
});

test("overlapping subscriptions deliver one copy at the highest QoS [MQTT-3.3.5-1 v3.1.1][MQTT-3.3.4-2 v5]", async () => {
  const tb = await startBroker();
  const sub = await connect(tb);
  const pub = await connect(tb);
  try {
    const got = collect(sub);
    await sub.subscribeAsync({ "a/#": { qos: 0 }, "a/+": { qos: 2 }, "a/b": { qos: 1 } });
    await pub.publishAsync("a/b", "x", { qos: 2 });
    await got.next(1);
    await sleep(150);
    assert.equal(got.messages.length, 1);
    assert.equal(got.messages[0].packet.qos, 2);
  } finally {
    await endAll(sub, pub);
    await tb.stop();
  }
});

test("unsubscribe stops delivery [MQTT-3.10.4-1]", async () => {
  const tb = await startBroker();
  const sub = await connect(tb);
  const pub = await connect(tb);
  try {
    const got = collect(sub);
    await sub.subscribeAsync(["u/1", "u/2"]);
    await sub.unsubscribeAsync("u/1");
    await pub.publishAsync("u/1", "no", { qos: 1 });
    await pub.publishAsync("u/2", "yes", { qos: 1 });
    const msgs = await got.next(1);
    await sleep(100);
    assert.deepEqual(got.messages.map((m) => m.payload), ["yes"]);
    assert.equal(msgs[0].topic, "u/2");
  } finally {
    await endAll(sub, pub);
    await tb.stop();
  }
});

test("a message published by a subscriber reaches itself unless No Local [MQTT-3.8.3-3 v5]", async () => {
  const tb = await startBroker();
  const c = await connect(tb, { protocolVersion: 5 });
  try {
    const got = collect(c);
    await c.subscribeAsync("self/a", { qos: 1 });
    await c.subscribeAsync("self/b", { qos: 1, nl: true });
    await c.publishAsync("self/b", "not me", { qos: 1 });
    await c.publishAsync("self/a", "me", { qos: 1 });
    await got.next(1);
    await sleep(100);
    assert.deepEqual(got.messages.map((m) => m.payload), ["me"]);
  } finally {
    await endAll(c);
    await tb.stop();
  }
});

test("many messages keep their order per subscriber at QoS 1 [MQTT-4.6.0-2]", async () => {
  const tb = await startBroker();
  const sub = await connect(tb);
  const pub = await connect(tb);
  try {
    const got = collect(sub);
    await sub.subscribeAsync("o", { qos: 1 });
    const n = 500;
    await Promise.all(
      Array.from({ length: n }, (_, i) => pub.publishAsync("o", String(i), { qos: 1 })),
    );
    const msgs = await got.next(n, 10000);
    assert.deepEqual(msgs.map((m) => Number(m.payload)), Array.from({ length: n }, (_, i) => i));
  } finally {
    await endAll(sub, pub);
    await tb.stop();
  }
});
