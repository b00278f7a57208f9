/**
 * The nats-server that leads the cluster's message stream is killed with SIGKILL under a QoS 1
 * load between two Midge nodes. JetStream has no leader for that stream until Raft elects one
 * (seconds), so no QoS 1 message can be stored meanwhile. Checked:
 * - no acknowledgement is given for a message before the stream stored it (every PUBACK'd
 *   message is in the stream, with a storage time before its PUBACK reached the publisher);
 * - a QoS 0 publisher and subscriber on one node keep exchanging messages while PUBACKs wait;
 * - after the election every acknowledged message reaches the persistent subscriber on the other
 *   node (at least once [MQTT-4.3.2-1 v5]);
 * - the node whose NATS connection went to the killed server fails over to another one;
 * - no node crashes (they run in this process: an uncaught error fails the test).
 * Once with the leader on the publishing node's server, once on the subscribing node's. A message
 * whose first copy was lost with the server and whose store is retried arrives after later ones:
 * the last tests check that such a late copy is delivered, and a second copy is not.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import mqtt, { type MqttClient } from "mqtt";
import { connect as natsConnect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { endAll, sleep, until } from "./helpers/broker.ts";
import { startNode, type TestNode } from "./helpers/cluster.ts";
import { type NatsCluster, startNatsCluster } from "./helpers/nats.ts";
import { decodeEnvelope, encodeEnvelope, isBatch, splitBatch } from "../src/cluster/envelope.ts";
import { topicSubject } from "../src/cluster/subject.ts";
import { SEEN_WINDOW, SeenSequences } from "../src/cluster/seen.ts";
import { FABRIC_SEQ } from "../src/broker/message.ts";

const STREAM = "t_msgs";
const dec = new TextDecoder();

/** The stream's leader and whether every replica is current, or null without a leader. */
async function streamLeader(
  nc: NatsConnection,
): Promise<{ leader: string; current: boolean } | null> {
  try {
    const jsm = await jetstreamManager(nc, { timeout: 2000, checkAPI: false });
    const info = await jsm.streams.info(STREAM);
    const c = info.cluster;
    if (!c?.leader) return null;
    return {
      leader: c.leader,
      current: (c.replicas ?? []).length === 2 && (c.replicas ?? []).every((r) => r.current),
    };
  } catch {
    return null;
  }
}

/** Moves the stream's leadership to `server` (the stream's leader steps down until it is). */
async function moveLeader(nc: NatsConnection, server: string): Promise<void> {
  for (let i = 0; i < 30; i++) {
    const s = await streamLeader(nc);
    if (s?.leader === server && s.current) return;
    if (s && s.leader !== server && s.current) {
      await nc.request(`$JS.API.STREAM.LEADER.STEPDOWN.${STREAM}`, undefined, { timeout: 5000 })
        .catch(() => {});
    }
    await sleep(500);
  }
  throw new Error(`the stream's leader could not be moved to ${server}`);
}

/** Every message of the stream: its payload (a sequence number) → the earliest storage time. */
async function stored(nc: NatsConnection): Promise<Map<number, number>> {
  const js = jetstream(nc, { timeout: 5000 });
  let consumer;
  for (let i = 0;; i++) {
    try {
      consumer = await js.consumers.get(STREAM, { deliver_policy: DeliverPolicy.All });
      break;
    } catch (e) {
      if (i >= 10) throw e; // JetStream may still be settling after the kill
      await sleep(1000);
    }
  }
  const out = new Map<number, number>();
  for (;;) {
    const batch = await consumer.fetch({ max_messages: 500, expires: 2000 });
    let got = 0;
    for await (const m of batch) {
      got++;
      const at = Math.floor(m.info.timestampNanos / 1e6);
      // One stored message may be a batch of envelopes.
      for (const part of isBatch(m.data) ? splitBatch(m.data) : [m.data]) {
        const n = Number(dec.decode(decodeEnvelope(part, null).msg.payload));
        if (!Number.isInteger(n)) continue;
        if (!out.has(n) || out.get(n)! > at) out.set(n, at);
      }
      if (m.info.pending === 0) return out;
    }
    if (got === 0) return out;
  }
}

function client(port: number, clientId: string, clean = true): Promise<MqttClient> {
  return mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    clientId,
    clean,
    reconnectPeriod: 0,
    connectTimeout: 5000,
  });
}

/**
 * Kills the stream leader's nats-server while node a's publisher sends QoS 1 messages to node b's
 * subscriber; `where` says whose NATS server is made the leader first.
 */
async function leaderKill(where: "publisher" | "subscriber"): Promise<void> {
  let nats: NatsCluster | undefined;
  const nodes: TestNode[] = [];
  const clients: MqttClient[] = [];
  let nc: NatsConnection | undefined;
  let running = false;
  try {
    nats = await startNatsCluster(3);
    nodes.push(await startNode(nats.urls(), "a"), await startNode(nats.urls(), "b"));
    const [a, b] = nodes;
    await until(() => nodes.every((x) => x.node.livePeers().length === 1), 10_000, "peers");
    nc = await natsConnect({
      servers: nats.urls(),
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
    });

    // The stream leader goes where the publishing node publishes, or where the subscribing
    // node subscribes: that connection must move to another server when it is killed.
    const conn = where === "publisher" ? a.node.pub : b.node.sub;
    const victimName = conn.info!.server_name;
    await moveLeader(nc, victimName);
    const victim = nats.servers.find((s) => s.name === victimName)!;

    // Clients: the persistent QoS 1 subscriber on b, the QoS 1 publisher on a, and a QoS 0 pair
    // on a that never leaves the node.
    const sub = await client(b.port, "natskill-sub", false);
    clients.push(sub);
    const seen = new Map<number, number>();
    sub.on("message", (_t, p) => {
      const n = Number(String(p));
      seen.set(n, (seen.get(n) ?? 0) + 1);
    });
    await sub.subscribeAsync("load/#", { qos: 1 });
    const pub = await client(a.port, "natskill-pub");
    const q0sub = await client(a.port, "natskill-q0-sub");
    const q0pub = await client(a.port, "natskill-q0-pub");
    clients.push(pub, q0sub, q0pub);
    const q0: number[] = [];
    q0sub.on("message", () => q0.push(Date.now()));
    await q0sub.subscribeAsync("local/q0", { qos: 0 });

    const ackedAt = new Map<number, number>();
    let sent = 0;
    let killedAt = 0;
    let firstAfterKill = -1;
    /** QoS 0 messages received between the kill and the first PUBACK for a later publish. */
    let q0DuringStall = -1;
    running = true;
    const publishing = (async () => {
      while (running && sent < 1500) {
        const n = sent++;
        if (killedAt && firstAfterKill < 0) firstAfterKill = n;
        pub.publish(`load/${n % 4}`, String(n), { qos: 1 }, (err) => {
          if (err) return;
          ackedAt.set(n, Date.now());
          if (n === firstAfterKill && q0DuringStall < 0) {
            q0DuringStall = q0.filter((t) => t >= killedAt).length;
          }
        });
        q0pub.publish("local/q0", String(n), { qos: 0 });
        await sleep(20);
      }
    })();

    await until(() => ackedAt.size >= 50, 20_000, "acknowledgements before the kill");
    killedAt = Date.now();
    await victim.kill("SIGKILL");
    const ackedAtKill = ackedAt.size;

    // The stream gets a new leader among the two servers left (4-9 s with SIGKILL).
    const end = Date.now() + 40_000;
    let leader: { leader: string } | null = null;
    while (!(leader = await streamLeader(nc)) || leader.leader === victimName) {
      assert.ok(Date.now() < end, "a new stream leader within 40 s");
      await sleep(200);
    }
    // Some more of the load after the election, then the publisher stops.
    await until(() => ackedAt.size >= ackedAtKill + 100, 40_000, "acknowledgements after");
    running = false;
    await publishing;
    await until(() => ackedAt.size === sent, 30_000, "every publish acknowledged");

    // The connection that was on the killed server moved to another one.
    await until(
      () => !conn.isClosed() && !!conn.info && conn.info.server_name !== victimName,
      20_000,
      "the node's NATS connection on another server",
    );

    // QoS 0 on one node went on while the PUBACKs waited for the election.
    assert.ok(firstAfterKill >= 0, "messages were published after the kill");
    assert.ok(
      q0DuringStall > 0,
      `QoS 0 messages flowed on the node while PUBACKs were held (${q0DuringStall})`,
    );

    // Every acknowledged message reaches the subscriber on the other node.
    const lost = () => [...ackedAt.keys()].filter((n) => !seen.has(n));
    await until(() => lost().length === 0, 30_000, "every acknowledged message").catch(() => {});
    assert.deepEqual(lost(), [], "acknowledged but never delivered");

    // And none was acknowledged before the stream had it.
    const inStream = await stored(nc);
    const early: string[] = [];
    for (const [n, at] of ackedAt) {
      const s = inStream.get(n);
      if (s === undefined) early.push(`${n}: not in the stream`);
      else if (s > at) early.push(`${n}: stored ${s - at} ms after its PUBACK`);
    }
    assert.deepEqual(early, [], "acknowledged before stored");

    const dups = [...seen.values()].filter((c) => c > 1).length;
    console.log(
      `# ${where}'s server killed: ${sent} sent, ${ackedAtKill} acknowledged before the kill, ` +
        `${q0DuringStall} QoS 0 messages during the stall, ${dups} delivered twice`,
    );
    for (const x of nodes) assert.equal(x.node.pub.isClosed() || x.node.sub.isClosed(), false);
  } finally {
    running = false;
    await endAll(...clients);
    await Promise.allSettled(nodes.map((x) => x.stop()));
    await nc?.close().catch(() => {});
    await nats?.stop();
  }
}

test(
  "cluster: the stream leader's nats-server killed with SIGKILL, the publishing node on it: PUBACKs wait for the new leader, local QoS 0 flows, every acknowledged message arrives [MQTT-4.3.2-1 v5]",
  { timeout: 180_000 },
  () => leaderKill("publisher"),
);

test(
  "cluster: the stream leader's nats-server killed with SIGKILL, the subscribing node on it: every acknowledged message arrives after the election [MQTT-4.3.2-1 v5]",
  { timeout: 180_000 },
  () => leaderKill("subscriber"),
);

test(
  "cluster: a retried QoS 1 message that arrives after later ones from its node is delivered, once [MQTT-4.3.2-1 v5]",
  {
    timeout: 60_000,
  },
  async () => {
    const nats = await startNatsCluster(1);
    let node: TestNode | undefined;
    let sub: MqttClient | undefined;
    let nc: NatsConnection | undefined;
    try {
      node = await startNode(nats.urls(), "late");
      sub = await client(node.port, "late-sub", false);
      const got: string[] = [];
      sub.on("message", (_t, p) => got.push(String(p)));
      await sub.subscribeAsync("late/#", { qos: 1 });
      nc = await natsConnect({ servers: nats.urls() });
      // Another node's messages as they travel, 3's first copy lost: 3 comes again after 4.
      const origin = 0x1234567;
      const subject = topicSubject("t.d.q", "late/x")!;
      for (const seq of [1, 2, 4, 3, 2, 4, 3]) {
        const msg = {
          topic: "late/x",
          payload: new TextEncoder().encode(String(seq)),
          qos: 1 as const,
          retain: false,
          expiresAt: 0,
          origin: "elsewhere",
        };
        nc.publish(subject, encodeEnvelope(msg, origin, seq, true));
      }
      await nc.flush();
      await until(() => got.length >= 4, 10_000, "four messages");
      await sleep(300);
      assert.deepEqual(got, ["1", "2", "4", "3"]);
    } finally {
      await endAll(sub);
      await node?.stop();
      await nc?.close().catch(() => {});
      await nats.stop();
    }
  },
);

test("cluster: SeenSequences takes each sequence number once, late ones too, across the wrap", () => {
  const s = new SeenSequences();
  const start = FABRIC_SEQ - 3;
  const take = (n: number) => s.first(n % FABRIC_SEQ);
  assert.equal(take(start), true);
  assert.equal(take(start), false, "a copy");
  assert.equal(take(start + 5), true, "ahead, across the wrap");
  assert.equal(take(start + 2), true, "late but not seen");
  assert.equal(take(start + 2), false, "late and seen");
  assert.equal(take(start + 5), false);
  assert.equal(take(start + 1), true);
  // Far ahead: the window moves, what it passed over counts as not seen.
  const far = start + 5 + SEEN_WINDOW + 10;
  assert.equal(take(far), true);
  assert.equal(take(far - 1), true, "skipped, then late");
  assert.equal(take(far - 1), false);
  assert.equal(take(far - SEEN_WINDOW + 1), true, "the oldest number in the window");
  assert.equal(take(far - SEEN_WINDOW + 1), false);
  // Older than the window: cannot be told, taken (at least once).
  assert.equal(take(start + 5), true);
});
