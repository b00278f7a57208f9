/**
 * Keep-alive, session expiry and will delays on a clock the test moves: clients connect through
 * memory (tests/helpers/memory_socket.ts) and time passes with `ManualClock.advance`, so nothing
 * sleeps and a loaded machine cannot change the outcome.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { assembleBroker } from "../src/assemble.ts";
import type { Broker } from "../src/broker/broker.ts";
import { ManualClock } from "./helpers/clock.ts";
import { type MemoryClient, memoryConnect } from "./helpers/memory_socket.ts";
import { testConfig } from "./helpers/broker.ts";

async function broker(): Promise<{ broker: Broker; clock: ManualClock }> {
  const clock = new ManualClock();
  const { broker } = assembleBroker(
    testConfig({ listeners: [], allow_anonymous: true }),
    undefined,
    { clock },
  );
  await broker.start();
  return { broker, clock };
}

/** A client subscribed to `filter` at QoS 1 that sees what is published there. */
async function watcher(b: Broker, filter: string): Promise<MemoryClient> {
  const { client } = await memoryConnect(b, { clientId: `watch-${filter}` });
  client.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: filter, qos: 1 }] });
  await client.next((p) => p.cmd === "suback", "SUBACK");
  return client;
}

const publishes = (c: MemoryClient) => c.received.filter((p) => p.cmd === "publish");

test("keep-alive: a client silent for 1.5 × its keep-alive is disconnected and its will sent; a PINGREQ keeps it [MQTT-3.1.2-24 v3.1.1][MQTT-3.1.2-22 v5]", async () => {
  const { broker: b, clock } = await broker();
  try {
    const w = await watcher(b, "ka/#");
    const { client: c } = await memoryConnect(b, {
      clientId: "silent",
      keepalive: 10,
      will: { topic: "ka/dead", payload: "x", qos: 0, retain: false },
    });
    await clock.advance(14_000);
    c.send({ cmd: "pingreq" });
    await c.next((p) => p.cmd === "pingresp", "PINGRESP");
    // 14 s after the PINGREQ: within 1.5 × 10 s of the last packet.
    await clock.advance(14_000);
    assert.equal(c.closed, false, "open within 1.5 × keep-alive of its last packet");
    await clock.advance(1_500);
    await c.closedByBroker();
    const will = await w.next((p) => p.cmd === "publish", "the will");
    assert.equal(will.topic, "ka/dead");
  } finally {
    await b.stop();
  }
});

test("v5 session expiry: an offline session lives for its Session Expiry Interval, then ends [MQTT-3.1.2-23 v5]", async () => {
  const { broker: b, clock } = await broker();
  try {
    const { client: c } = await memoryConnect(b, {
      clientId: "exp",
      clean: false,
      properties: { sessionExpiryInterval: 60 },
    }, 5);
    c.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "e/#", qos: 1 }] });
    await c.next((p) => p.cmd === "suback", "SUBACK");
    c.drop();
    await clock.advance(59_000);
    assert.ok(b.sessions.has("exp"), "kept for 59 s");
    assert.equal(b.router.count, 1);
    await clock.advance(2_000);
    assert.equal(b.sessions.has("exp"), false, "gone after 60 s");
    assert.equal(b.router.count, 0, "its subscription too");
    assert.equal(b.stats.clientsExpired, 1);
  } finally {
    await b.stop();
  }
});

test("v5 will delay: the will waits its Will Delay Interval; a reconnect within it cancels the will [MQTT-3.1.3-9 v5]", async () => {
  const { broker: b, clock } = await broker();
  try {
    const w = await watcher(b, "wd/#");
    const connect = {
      clientId: "wd",
      clean: false,
      properties: { sessionExpiryInterval: 60 },
      will: {
        topic: "wd/x",
        payload: "late",
        qos: 1,
        retain: false,
        properties: { willDelayInterval: 5 },
      },
    };
    const first = await memoryConnect(b, connect, 5);
    first.client.drop();
    await clock.advance(4_000);
    assert.equal(publishes(w).length, 0, "not before its delay");
    const again = await memoryConnect(b, connect, 5);
    await clock.advance(10_000);
    assert.equal(publishes(w).length, 0, "cancelled by the reconnect");
    again.client.drop();
    await clock.advance(4_900);
    assert.equal(publishes(w).length, 0);
    await clock.advance(200);
    const will = await w.next((p) => p.cmd === "publish", "the will");
    assert.equal(will.payload.toString(), "late");
  } finally {
    await b.stop();
  }
});
