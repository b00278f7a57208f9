/**
 * QoS 1/2 messages forwarded in a burst are stored in JetStream as batches: one store (and one
 * replication) for many messages. Each still arrives once and in order on the other node, is
 * acknowledged only once its batch is stored, and is read back one by one from the stream.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { collect, connect, endAll } from "./helpers/broker.ts";
import { startCluster } from "./helpers/cluster.ts";
import { readStream } from "../src/cluster/replay.ts";

let cluster: Awaited<ReturnType<typeof startCluster>>;
before(async () => {
  cluster = await startCluster(2);
});
after(async () => {
  await cluster?.stop();
});

test("cluster: a burst of QoS 1 messages is stored in batches, arrives once and in order on another node, and reads back one by one from the stream [MQTT-4.6.0-6 v3.1.1][MQTT-4.6.0-5 v5][MQTT-4.3.2-2 v3.1.1]", async () => {
  const [a, b] = cluster.nodes;
  const sub = await connect(b, { clientId: "stored-batch-sub" });
  const pub = await connect(a, { clientId: "stored-batch-pub" });
  try {
    const got = collect(sub);
    await sub.subscribeAsync("sb/#", { qos: 1 });
    const before = (await a.node.jsm.streams.info("t_msgs")).state.messages;
    const from = Date.now() - 1000;
    const n = 500;
    // Written at once: the broker reads many PUBLISH packets per read and forwards them together.
    const acks = Array.from(
      { length: n },
      (_, i) => pub.publishAsync("sb/x", String(i), { qos: 1 }),
    );
    await Promise.all(acks);
    const msgs = await got.next(n, 20_000);
    assert.deepEqual(msgs.map((m) => m.payload), Array.from({ length: n }, (_, i) => String(i)));
    const stored = (await a.node.jsm.streams.info("t_msgs")).state.messages - before;
    assert.ok(stored < n, `fewer stores than messages (${stored} for ${n})`);
    const read: string[] = [];
    await readStream(a.node, from, ({ msg }) => {
      if (msg.topic === "sb/x") read.push(new TextDecoder().decode(msg.payload));
    });
    assert.deepEqual(read, Array.from({ length: n }, (_, i) => String(i)));
  } finally {
    await endAll(sub, pub);
  }
});
