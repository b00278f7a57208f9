/**
 * Sessions in a cluster: one owner per client id across nodes (take-over, a storm of CONNECTs of
 * one id), and a persistent session with its queue resumed on another node. Real nats-servers,
 * three Midge nodes, MQTT.js clients.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import mqtt from "mqtt";
import { collect, connect, connectCollect, endAll } from "./helpers/broker.ts";
import { startCluster } from "./helpers/cluster.ts";

let cluster: Awaited<ReturnType<typeof startCluster>>;
before(async () => {
  cluster = await startCluster(3);
});
after(async () => {
  await cluster?.stop();
});

test("cluster: CONNECT on node B takes the client id from node A: A sends DISCONNECT 0x8E, B resumes with Session Present 1 [MQTT-3.1.4-3 v5][MQTT-3.2.2-3 v5]", async () => {
  const [a, b, c] = cluster.nodes;
  const opts = {
    clientId: "mover",
    protocolVersion: 5 as const,
    clean: false,
    properties: { sessionExpiryInterval: 300 },
  };
  const first = await connect(a, opts);
  const pub = await connect(c, { clientId: "mover-pub" });
  try {
    await first.subscribeAsync("move/#", { qos: 1 });
    const disconnected = new Promise<number>((resolve) =>
      first.on("disconnect", (p) => resolve(p.reasonCode ?? -1))
    );
    const { client: second, got, connack } = await connectCollect(b, opts);
    assert.equal(await disconnected, 0x8e, "v5 DISCONNECT 0x8E Session taken over");
    assert.equal(connack.sessionPresent, true, "the session came along");
    // Its subscription came along too: a message published on node C reaches it on node B.
    await pub.publishAsync("move/x", "after", { qos: 1 });
    const [m] = await got.next(1);
    assert.equal(m.payload, "after");
    await endAll(second);
  } finally {
    await endAll(first, pub);
  }
});

test("cluster: 21 simultaneous CONNECTs of one client id over three nodes leave exactly one connection, which works", async () => {
  const nodes = cluster.nodes;
  const clients = Array.from({ length: 21 }, (_, i) =>
    mqtt.connect(nodes[i % 3].url, {
      clientId: "storm",
      protocolVersion: 5,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
    }));
  try {
    await Promise.all(clients.map((c) =>
      new Promise<void>((resolve) => {
        c.once("connect", () => resolve());
        c.once("error", () => resolve());
        c.once("close", () => resolve());
      })
    ));
    // Let every take-over finish: the losers are told to go.
    const deadline = Date.now() + 15_000;
    const open = () =>
      nodes.reduce(
        (n, x) =>
          n +
          [...x.broker.connections].filter((c) => c.clientId === "storm" && c.state === "open")
            .length,
        0,
      );
    while (open() !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(open(), 1, "exactly one connection of the id is open in the cluster");
    while (clients.filter((c) => c.connected).length > 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const survivor = clients.filter((c) => c.connected);
    assert.equal(survivor.length, 1, "exactly one client still connected");
    const got = collect(survivor[0]);
    await survivor[0].subscribeAsync("storm/t", { qos: 1 });
    const pub = await connect(nodes[0], { clientId: "storm-pub" });
    await pub.publishAsync("storm/t", "works", { qos: 1 });
    const [m] = await got.next(1, 5000);
    assert.equal(m.payload, "works");
    await endAll(pub);
  } finally {
    await endAll(...clients);
  }
});

test("cluster: QoS 1/2 messages queued for an offline persistent session are delivered where the client comes back, in order [MQTT-3.1.2-5 v3.1.1]", async () => {
  const [a, b, c] = cluster.nodes;
  const opts = { clientId: "roamer", clean: false };
  const sub = await connect(a, opts);
  await sub.subscribeAsync("roam/#", { qos: 2 });
  await endAll(sub);
  const pub = await connect(c, { clientId: "roam-pub" });
  try {
    for (let i = 0; i < 20; i++) {
      await pub.publishAsync(`roam/${i}`, String(i), { qos: (1 + (i % 2)) as 1 | 2 });
    }
    // The order on the wire (MQTT.js emits a QoS 2 message only after PUBREL, later than QoS 1).
    const client = mqtt.connect(b.url, { ...opts, reconnectPeriod: 0 });
    const wire: string[] = [];
    client.on("packetreceive", (p) => {
      if (p.cmd === "publish") wire.push(String(p.payload));
    });
    const got = collect(client);
    const connack = await new Promise<{ sessionPresent: boolean }>((r) =>
      client.once("connect", r)
    );
    assert.equal(connack.sessionPresent, true);
    await got.next(20, 5000);
    assert.deepEqual(wire, Array.from({ length: 20 }, (_, i) => String(i)));
    await endAll(client);
  } finally {
    await endAll(pub);
  }
});

test("cluster: a persistent session that moves while messages flow loses none, and copies of one message come only as DUP resends [MQTT-4.4.0-1]", async () => {
  const [a, b, c] = cluster.nodes;
  const opts = { clientId: "flow-mover", clean: false, protocolVersion: 4 as const };
  const first = await connect(a, opts);
  await first.subscribeAsync("flow/#", { qos: 1 });
  const seen: { n: number; dup: boolean }[] = [];
  const take = (client: typeof first) =>
    client.on(
      "message",
      (_t, payload, packet) => seen.push({ n: Number(String(payload)), dup: !!packet.dup }),
    );
  take(first);
  const pub = await connect(c, { clientId: "flow-pub" });
  const total = 300;
  let second: typeof first | undefined;
  try {
    const publishing = (async () => {
      for (let i = 0; i < total; i++) {
        await pub.publishAsync("flow/x", String(i), { qos: 1 });
        if (i % 10 === 0) await new Promise((r) => setTimeout(r, 1));
      }
    })();
    // Move the session to node B while the publisher is in the middle of its run.
    while (seen.length < 60) await new Promise((r) => setTimeout(r, 5));
    second = mqtt.connect(b.url, { ...opts, reconnectPeriod: 0 });
    take(second);
    await new Promise<void>((resolve, reject) => {
      second!.once("connect", () => resolve());
      second!.once("error", reject);
    });
    await publishing;
    const deadline = Date.now() + 10_000;
    while (new Set(seen.map((x) => x.n)).size < total && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const got = new Set(seen.map((x) => x.n));
    const lost = Array.from({ length: total }, (_, i) => i).filter((i) => !got.has(i));
    assert.deepEqual(lost, [], "no acknowledged message is lost while the session moves");
    const firstSeen = new Set<number>();
    const plainCopies = seen.filter((x) => {
      const again = firstSeen.has(x.n);
      firstSeen.add(x.n);
      return again && !x.dup;
    });
    assert.deepEqual(plainCopies.map((x) => x.n), [], "a second copy is only ever a DUP resend");
  } finally {
    await endAll(first, second, pub);
  }
});
