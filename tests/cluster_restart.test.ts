/**
 * A rolling restart of a three-node cluster under a steady QoS 1 load: each node in turn stops
 * as SIGTERM stops it (no new connections, acknowledgements owed sent, DISCONNECT 0x8B, sessions
 * handed to the other nodes) and comes back on the same port. Clients fail over with MQTT.js's
 * server list and persistent sessions, as the README's cluster section shows.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import mqtt from "mqtt";
import { defaults, LISTENER_KEYS } from "../src/config/schema.ts";
import { endAll, until } from "./helpers/broker.ts";
import { startCluster, startNode, type TestNode } from "./helpers/cluster.ts";

let cluster: Awaited<ReturnType<typeof startCluster>>;
before(async () => {
  cluster = await startCluster(3);
});
after(async () => {
  await cluster?.stop();
});

test("cluster: a rolling restart of every node under steady QoS 1 load loses 0 acknowledged messages and delivers none twice", async () => {
  const nodes = cluster.nodes;
  const ports = nodes.map((n) => n.port);
  const servers = (first: number) =>
    [0, 1, 2].map((i) => ({ host: "127.0.0.1", port: ports[(first + i) % 3] }));
  const sub = mqtt.connect({
    servers: servers(1),
    clientId: "rolling-sub",
    clean: false,
    reconnectPeriod: 100,
    connectTimeout: 5000,
  });
  const received: { n: number; dup: boolean }[] = [];
  sub.on(
    "message",
    (_t, payload, packet) => received.push({ n: Number(String(payload)), dup: !!packet.dup }),
  );
  await new Promise<void>((r) => sub.once("connect", () => r()));
  await sub.subscribeAsync("rolling/#", { qos: 1 });
  const pub = mqtt.connect({
    servers: servers(0),
    clientId: "rolling-pub",
    clean: false,
    reconnectPeriod: 100,
    connectTimeout: 5000,
  });
  await new Promise<void>((r) => pub.once("connect", () => r()));
  const acked = new Set<number>();
  let sent = 0;
  let running = true;
  const publishing = (async () => {
    while (running) {
      const n = sent++;
      pub.publish("rolling/x", String(n), { qos: 1 }, (err) => {
        if (!err) acked.add(n);
      });
      await new Promise((r) => setTimeout(r, 4));
    }
  })();
  try {
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 400));
      const old = nodes[i];
      await old.stop();
      const back: TestNode = await startNode(cluster.nats.urls(), old.id, {
        listeners: [{ ...defaults(LISTENER_KEYS), port: ports[i] }],
      });
      nodes[i] = back;
      await until(() => nodes.every((x) => x.node.livePeers().length === 2), 10_000, "peers");
    }
    await new Promise((r) => setTimeout(r, 400));
    running = false;
    await publishing;
    await until(() => acked.size >= sent - 5, 10_000, "the publisher's last acknowledgements");
    const got = () => new Set(received.map((x) => x.n));
    await until(() => [...acked].every((n) => got().has(n)), 10_000, "every acknowledged message");
    const lost = [...acked].filter((n) => !got().has(n));
    assert.deepEqual(lost, [], "lost");
    const counts = new Map<number, number>();
    for (const x of received) counts.set(x.n, (counts.get(x.n) ?? 0) + 1);
    const twice = [...counts].filter(([, c]) => c > 1).map(([n]) => n);
    assert.deepEqual(
      twice,
      [],
      `delivered twice: ${JSON.stringify(received.filter((x) => twice.includes(x.n)))}`,
    );
    assert.ok(acked.size > 300, `a steady load went through (${acked.size} acknowledged)`);
  } finally {
    running = false;
    await endAll(pub, sub);
  }
});
