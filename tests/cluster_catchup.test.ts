/**
 * A node cut off from NATS for a while misses what other nodes publish meanwhile on core NATS;
 * when it is back it reads the QoS 1/2 messages the stream stored since and delivers them, so no
 * acknowledged message is lost to its subscribers.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { connect, endAll, until } from "./helpers/broker.ts";
import { startNode, type TestNode } from "./helpers/cluster.ts";
import { type NatsCluster, startNatsCluster } from "./helpers/nats.ts";
import type { NatsFabric } from "../src/cluster/fabric.ts";
import { ownerKey } from "../src/cluster/sessions.ts";
import { Kvm } from "@nats-io/kv";

let nats: NatsCluster;
const nodes: TestNode[] = [];
before(async () => {
  // Servers that do not tell clients about each other: a client knows the servers it is given.
  nats = await startNatsCluster(3, { noAdvertise: true });
  const urls = nats.urls();
  // a knows one server only, so that it is cut off when that server goes; b knows the others.
  nodes.push(await startNode([urls[0]], "a"), await startNode([urls[1], urls[2]], "b"));
  await until(
    () => nodes.every((n) => n.node.livePeers().length === 1),
    15_000,
    "the nodes seeing each other",
  );
});
after(async () => {
  await Promise.allSettled(nodes.map((n) => n.stop()));
  await nats?.stop();
});

test("cluster: a node cut off from NATS catches up: every QoS 1 message acknowledged elsewhere meanwhile reaches its subscriber once it is back [MQTT-4.3.2-1 v5][MQTT-3.1.2-5 v3.1.1]", async () => {
  const [a, b] = nodes;
  const sub = await connect(a, { clientId: "catchup-sub", clean: false });
  const seen = new Set<number>();
  sub.on("message", (_t, payload) => seen.add(Number(payload.toString())));
  await sub.subscribeAsync("catchup/#", { qos: 1 });
  const pub = await connect(b, { clientId: "catchup-pub" });
  try {
    const acked: number[] = [];
    for (let i = 0; i < 40; i++) {
      await pub.publishAsync("catchup/x", String(i), { qos: 1 });
      acked.push(i);
    }
    await until(() => seen.size === 40, 10_000, "the messages before the cut");
    // The stream's leader must not be the server that goes: b's stores would wait for an
    // election longer than the heartbeat lease, and the nodes would take each other for dead.
    const jsm = b.node.jsm;
    for (let i = 0; (await jsm.streams.info("t_msgs")).cluster?.leader === "n1"; i++) {
      assert.ok(i < 20, "the stream's leader moves off n1");
      await b.node.pub.request("$JS.API.STREAM.LEADER.STEPDOWN.t_msgs", undefined, {
        timeout: 5000,
      }).catch(() => {});
      await new Promise((r) => setTimeout(r, 500));
    }
    // a's only server goes; b goes on publishing, acknowledged once stored by the others.
    await nats.servers[0].kill("SIGKILL");
    for (let i = 40; i < 120; i++) {
      await pub.publishAsync("catchup/x", String(i), { qos: 1 });
      acked.push(i);
    }
    assert.ok(seen.size < 120, "a was cut off while they were published");
    // A SUBSCRIBE while cut off is answered (the session cannot be kept in the cluster now)...
    await sub.subscribeAsync("catchup-later/#", { qos: 1 });
    await nats.servers[0].restart();
    await until(() => acked.every((n) => seen.has(n)), 30_000, "every acknowledged message on a")
      .catch((e) => {
        throw new Error(`${e.message}: missing ${acked.filter((n) => !seen.has(n))}`);
      });
    assert.ok((a.broker.fabric as NatsFabric).caughtUp > 0, "found again in the stream");
    // ...and kept once NATS is back: the owner entry of the session holds the new subscription.
    // (The bucket may be electing a leader after the restart: a failed read is tried again.)
    const kept = async () => {
      try {
        const kv = await new Kvm(b.node.pub).open("t_sessions");
        const e = await kv.get(ownerKey("catchup-sub"));
        return !!e && new TextDecoder().decode(e.value).includes("catchup-later/#");
      } catch {
        return false;
      }
    };
    const deadline = Date.now() + 30_000;
    while (!(await kept())) {
      assert.ok(Date.now() < deadline, "the subscription kept in the cluster");
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await endAll(sub, pub);
  }
});
