/**
 * Client-side high availability: with several servers the client connects to the first live one
 * and, on loss, moves on to the next, subscribing again and re-sending unacknowledged messages.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { MqttClient, type ServerAddress } from "../src/client/client.ts";
import type { PublishPacket } from "../src/codec/types.ts";
import { collect, connect, endAll, startBroker } from "./helpers/broker.ts";
import { fakeBroker } from "./helpers/fake_broker.ts";
import { createServer } from "node:net";

const dec = new TextDecoder();
const addr = (port: number): ServerAddress => ({ protocol: "mqtt", host: "127.0.0.1", port });

/** A port with nothing listening (bound, then closed). */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

function waitFor<T>(c: MqttClient, event: string, ms = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${event} event`)), ms);
    c.once(event, (x: T) => {
      clearTimeout(t);
      resolve(x);
    });
  });
}

test("the first live server is used: a dead first address is skipped", async () => {
  const b = await startBroker();
  const c = await MqttClient.connect({ servers: [addr(await deadPort()), addr(b.port)] });
  try {
    assert.equal(c.server?.port, b.port);
    assert.equal(c.connected, true);
  } finally {
    await c.end();
    await b.stop();
  }
});

test("on loss the client fails over to the next broker and subscribes again there", async () => {
  const a = await startBroker();
  const b = await startBroker();
  const c = await MqttClient.connect({
    servers: [addr(a.port), addr(b.port)],
    reconnect: true,
    reconnectDelay: 50,
  });
  const got: PublishPacket[] = [];
  c.on("message", (p: PublishPacket) => got.push(p));
  try {
    await c.subscribe([{ topic: "ha/#", qos: 1 }]);
    assert.equal(c.server?.port, a.port);
    const offline = waitFor(c, "offline");
    const resubscribed = waitFor(c, "resubscribed");
    await a.stop();
    await offline;
    await resubscribed;
    assert.equal(c.server?.port, b.port);
    const js = await connect(b);
    await js.publishAsync("ha/x", "after failover", { qos: 1 });
    for (let i = 0; i < 100 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(got.map((p) => [p.topic, dec.decode(p.payload)]), [[
      "ha/x",
      "after failover",
    ]]);
    // Publishing goes to the new broker too.
    const seen = collect(js);
    await js.subscribeAsync("ha/back");
    await c.publish("ha/back", "from the client", { qos: 1 });
    assert.equal((await seen.next(1))[0].payload, "from the client");
    await endAll(js);
  } finally {
    await c.end();
    await b.stop();
  }
});

test("an unacknowledged QoS 1 message is sent again, with DUP, after failover [MQTT-3.3.1-1]", async () => {
  const f1 = await fakeBroker(4);
  const f2 = await fakeBroker(4);
  const cp = MqttClient.connect({
    servers: [addr(f1.port), addr(f2.port)],
    reconnect: true,
    reconnectDelay: 50,
  });
  const c1 = await f1.accept();
  await c1.next("connect");
  c1.send({ cmd: "connack", returnCode: 0, sessionPresent: false });
  const c = await cp;
  const acked = c.publish("t", "keep me", { qos: 1 });
  const first = await c1.next("publish");
  assert.equal(first.dup, false);
  c1.close(); // lost before PUBACK
  const c2 = await f2.accept();
  await c2.next("connect");
  c2.send({ cmd: "connack", returnCode: 0, sessionPresent: false });
  const again = await c2.next("publish");
  assert.equal(again.dup, true);
  assert.equal(String(again.payload), "keep me");
  c2.send({ cmd: "puback", messageId: again.messageId });
  assert.equal((await acked)?.cmd, "puback");
  await c.end();
  await f1.stop();
  await f2.stop();
});

test("with reconnectRounds the client gives up when no server answers, and closes", async () => {
  const b = await startBroker();
  const c = await MqttClient.connect({
    servers: [addr(b.port)],
    reconnect: true,
    reconnectDelay: 20,
    reconnectRounds: 1,
  });
  const closed = waitFor<Error | undefined>(c, "close");
  await b.stop();
  const e = await closed;
  assert.ok(e instanceof Error);
  assert.equal(c.connected, false);
});
