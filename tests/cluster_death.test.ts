/**
 * A node killed with SIGKILL: its clients are served by another node as soon as they reconnect,
 * and the wills its connected clients left are published by one survivor, once. The killed node
 * is a `midge serve` process started the way the README says; the survivors run in this process.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import process from "node:process";
import mqtt from "mqtt";
import { collect, connect, endAll, until } from "./helpers/broker.ts";
import { startNode, type TestNode } from "./helpers/cluster.ts";
import { type NatsCluster, startNatsCluster } from "./helpers/nats.ts";
import { run } from "./helpers/procs.ts";
import type { KvSessions } from "../src/cluster/sessions.ts";

const runtime = process.env.MIDGE_TEST_RUNTIME === "deno" ? "deno" : "bun";
const root = fileURLToPath(new URL("..", import.meta.url));
const bin = join(root, "node_modules", ".bin", runtime);
const prefix = runtime === "deno" ? ["run", "-A", "src/main.ts"] : ["src/main.ts"];

let nats: NatsCluster;
let survivors: TestNode[] = [];
let dir: string;
before(async () => {
  nats = await startNatsCluster(3);
  survivors = [await startNode(nats.urls(), "s1"), await startNode(nats.urls(), "s2")];
  dir = mkdtempSync(join(tmpdir(), "midge-death-"));
});
after(async () => {
  await Promise.allSettled(survivors.map((s) => s.stop()));
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** `midge serve` as a node of the test cluster, in a child process (to be killed). */
function startVictim(id: string) {
  const config = join(dir, `${id}.toml`);
  writeFileSync(
    config,
    [
      "persistence = false",
      "[[listener]]",
      "port = 0",
      "[cluster]",
      `node_id = "${id}"`,
      `servers = [${nats.urls().map((u) => JSON.stringify(u)).join(", ")}]`,
      'name = "t"',
      "",
    ].join("\n"),
  );
  return run(bin, [...prefix, "serve", "-c", config], { NO_COLOR: "1" });
}

test("cluster: a node killed with SIGKILL: its client is served by another node on reconnect, and its client's will is published once by a survivor [MQTT-3.1.2-8]", async () => {
  const victim = startVictim("victim");
  const watcher = await connect(survivors[0], { clientId: "will-watcher" });
  let client: mqtt.MqttClient | undefined;
  try {
    const port = Number(
      (await victim.waitFor(/listening mqtt on 127\.0\.0\.1:(\d+)/, 30_000, "victim"))[1],
    );
    await until(
      () => survivors.every((s) => s.node.livePeers().some((p) => p.id === "victim")),
      10_000,
      "the victim's heartbeat",
    );
    const wills = collect(watcher);
    await watcher.subscribeAsync("death/#", { qos: 1 });
    // A client on the victim with a will, and a server list to fail over to.
    client = mqtt.connect({
      servers: [{ host: "127.0.0.1", port }, { host: "127.0.0.1", port: survivors[1].port }],
      clientId: "doomed",
      will: { topic: "death/doomed", payload: Buffer.from("gone"), qos: 1, retain: false },
      reconnectPeriod: 100,
      connectTimeout: 5000,
    });
    await new Promise<void>((r) => client!.once("connect", () => r()));
    // The will is kept in the cluster before the node dies.
    await new Promise((r) => setTimeout(r, 300));
    const killedAt = Date.now();
    victim.proc.kill("SIGKILL");
    await victim.exited(10_000);
    // The client moves to the next server and is served at once.
    let servedAt = 0;
    client.once("connect", () => (servedAt = Date.now()));
    await until(() => servedAt > 0, 10_000, "the client served by a survivor");
    const reconnected = servedAt - killedAt;
    // The will goes out once, from one survivor, within the lease (5 s) and a claim.
    const [w] = await wills.next(1, 15_000);
    const willAfter = Date.now() - killedAt;
    assert.equal(w.topic, "death/doomed");
    assert.equal(w.payload, "gone");
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(wills.messages.length, 1, "published exactly once");
    assert.ok(willAfter < 15_000, `will within 15 s of the kill (${willAfter} ms)`);
    console.log(`# reconnected to a survivor after ${reconnected} ms; will after ${willAfter} ms`);
    // The survivor serves it: a message reaches it there.
    const got = collect(client);
    await client.subscribeAsync("after/death", { qos: 1 });
    const pub = await connect(survivors[0], { clientId: "after-pub" });
    await pub.publishAsync("after/death", "alive", { qos: 1 });
    assert.equal((await got.next(1, 5000))[0].payload, "alive");
    await endAll(pub);
  } finally {
    await endAll(watcher, client);
    if (victim.proc.exitCode === null) victim.proc.kill("SIGKILL");
  }
});

test("cluster: the will of a client that does not come back after its node is killed is published once, by the survivor that claims the node, within 15 s", async () => {
  const victim = startVictim("victim2");
  const w1 = await connect(survivors[0], { clientId: "will-watcher-1" });
  const w2 = await connect(survivors[1], { clientId: "will-watcher-2" });
  let client: mqtt.MqttClient | undefined;
  try {
    const port = Number(
      (await victim.waitFor(/listening mqtt on 127\.0\.0\.1:(\d+)/, 30_000, "victim"))[1],
    );
    await until(
      () => survivors.every((s) => s.node.livePeers().some((p) => p.id === "victim2")),
      10_000,
      "heartbeat",
    );
    const g1 = collect(w1);
    const g2 = collect(w2);
    await w1.subscribeAsync("death2/#", { qos: 1 });
    await w2.subscribeAsync("death2/#", { qos: 1 });
    client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
      clientId: "lost-for-good",
      protocolVersion: 5,
      will: { topic: "death2/lost", payload: Buffer.from("bye"), qos: 1, retain: false },
      reconnectPeriod: 0,
    });
    client.on("error", () => {});
    await new Promise<void>((r) => client!.once("connect", () => r()));
    await new Promise((r) => setTimeout(r, 300));
    const killedAt = Date.now();
    victim.proc.kill("SIGKILL");
    await victim.exited(10_000);
    await g1.next(1, 15_000);
    const after = Date.now() - killedAt;
    await g2.next(1, 5000);
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(g1.messages.length, 1, "one will, not one per survivor");
    assert.equal(g2.messages.length, 1);
    assert.equal(g1.messages[0].payload, "bye");
    assert.ok(after < 15_000, `within 15 s (${after} ms)`);
    console.log(`# the claimed will went out ${after} ms after the kill`);
  } finally {
    await endAll(w1, w2, client);
    if (victim.proc.exitCode === null) victim.proc.kill("SIGKILL");
  }
});

/** A client with a list of servers to fail over to, resuming its session (v5, 5 minutes). */
function failoverClient(
  clientId: string,
  ports: number[],
  onMessage?: (topic: string, payload: Buffer, packet: mqtt.IPublishPacket) => void,
): Promise<mqtt.MqttClient> {
  const c = mqtt.connect({
    servers: ports.map((port) => ({ host: "127.0.0.1", port })),
    clientId,
    protocolVersion: 5,
    clean: false,
    properties: { sessionExpiryInterval: 300 },
    // The broker keeps the subscriptions: the client must not hide a lost session by
    // subscribing again.
    resubscribe: false,
    reconnectPeriod: 100,
    connectTimeout: 5000,
  });
  c.on("error", () => {});
  // Messages may come in the same read as the CONNACK: listen from the start.
  if (onMessage) c.on("message", onMessage);
  return new Promise((resolve) => c.once("connect", () => resolve(c)));
}

async function victimPort(v: ReturnType<typeof startVictim>, id: string): Promise<number> {
  const port = Number((await v.waitFor(/listening mqtt on 127\.0\.0\.1:(\d+)/, 30_000, id))[1]);
  await until(
    () => survivors.every((s) => s.node.livePeers().some((p) => p.id === id)),
    10_000,
    `${id}'s heartbeat`,
  );
  return port;
}

test("cluster: every PUBACKed QoS 1 message reaches a persistent subscriber on another node while the publisher's node and then the subscriber's node are killed with SIGKILL [MQTT-4.5.0-1][MQTT-3.1.2-5 v3.1.1]", async () => {
  const pubNode = startVictim("pubnode");
  const subNode = startVictim("subnode");
  let sub: mqtt.MqttClient | undefined;
  let pub: mqtt.MqttClient | undefined;
  try {
    const [pp, sp] = [await victimPort(pubNode, "pubnode"), await victimPort(subNode, "subnode")];
    sub = await failoverClient("ha-sub", [sp, survivors[1].port]);
    await sub.subscribeAsync("ha/seq", { qos: 1 });
    const got: number[] = [];
    let dups = 0;
    const seen = new Set<number>();
    let present = true;
    sub.on("connect", (ack) => (present &&= ack.sessionPresent));
    sub.on("message", (_t, payload, packet) => {
      const n = Number(payload.toString());
      if (seen.has(n)) dups++;
      else if (!packet.dup) got.push(n);
      else got.push(n);
      seen.add(n);
    });
    pub = await failoverClient("ha-pub", [pp, survivors[0].port]);
    const acked: number[] = [];
    const total = 300;
    let killedPub = false;
    let killedSub = false;
    for (let i = 0; i < total; i++) {
      await pub.publishAsync("ha/seq", String(i), { qos: 1 });
      acked.push(i);
      if (i === 100) {
        pubNode.proc.kill("SIGKILL");
        killedPub = true;
      }
      if (i === 200) {
        await until(() => seen.size >= 150, 10_000, "the subscriber keeping up");
        subNode.proc.kill("SIGKILL");
        killedSub = true;
      }
      await new Promise((r) => setTimeout(r, 2));
    }
    assert.ok(killedPub && killedSub);
    await until(() => acked.every((n) => seen.has(n)), 30_000, "every acknowledged message");
    const missing = acked.filter((n) => !seen.has(n));
    assert.deepEqual(missing, [], "no acknowledged message lost");
    assert.ok(present, "the subscriber's session was present on every reconnect");
    const took = survivors[1].broker.registry as KvSessions;
    assert.ok(took.resumed >= 1 && took.replayed >= 1, "resumed from the cluster and the stream");
    console.log(`# ${acked.length} acknowledged, all received; ${dups} duplicates`);
  } finally {
    await endAll(sub, pub);
    for (const v of [pubNode, subNode]) if (v.proc.exitCode === null) v.proc.kill("SIGKILL");
  }
});

test("cluster: a persistent session that was offline on a node killed with SIGKILL is taken over by a survivor with every QoS 1 message queued for it, delivered when its client comes back elsewhere [MQTT-4.1.0-1][MQTT-3.1.2-4 v3.1.1]", async () => {
  const victim = startVictim("queuenode");
  let sub: mqtt.MqttClient | undefined;
  let pub: mqtt.MqttClient | undefined;
  try {
    const port = await victimPort(victim, "queuenode");
    sub = await failoverClient("ha-offline", [port]);
    await sub.subscribeAsync("ha/offline/+", { qos: 1 });
    await sub.endAsync();
    sub = undefined;
    pub = await connect(survivors[0], { clientId: "ha-offline-pub" });
    for (let i = 0; i < 50; i++) {
      await pub.publishAsync(`ha/offline/${i % 3}`, String(i), { qos: 1 });
    }
    // Its queue is on the victim; the victim dies; a survivor claims its sessions.
    await new Promise((r) => setTimeout(r, 1500));
    victim.proc.kill("SIGKILL");
    await victim.exited(10_000);
    await until(
      () => survivors.some((s) => s.broker.sessions.has("ha-offline")),
      15_000,
      "a survivor taking the session",
    );
    const seen = new Set<number>();
    sub = await failoverClient(
      "ha-offline",
      [survivors[1].port],
      (_t, payload) => seen.add(Number(payload.toString())),
    );
    await until(() => seen.size === 50, 15_000, "every queued message");
    assert.deepEqual([...seen].sort((a, b) => a - b), [...Array(50).keys()]);
  } finally {
    await endAll(sub, pub);
    if (victim.proc.exitCode === null) victim.proc.kill("SIGKILL");
  }
});

test("cluster: QoS 2 across SIGKILL of the publisher's node and then the subscriber's node: every completed message is delivered, none twice [MQTT-4.3.3-10 v5][MQTT-4.3.3-2 v3.1.1]", async () => {
  const pubNode = startVictim("q2pub");
  const subNode = startVictim("q2sub");
  let sub: mqtt.MqttClient | undefined;
  let pub: mqtt.MqttClient | undefined;
  try {
    const [pp, sp] = [await victimPort(pubNode, "q2pub"), await victimPort(subNode, "q2sub")];
    const counts = new Map<number, number>();
    sub = await failoverClient(
      "q2-sub",
      [sp, survivors[1].port],
      (_t, payload) => {
        const n = Number(payload.toString());
        counts.set(n, (counts.get(n) ?? 0) + 1);
      },
    );
    await sub.subscribeAsync("q2/seq", { qos: 2 });
    pub = await failoverClient("q2-pub", [pp, survivors[0].port]);
    const completed: number[] = [];
    for (let i = 0; i < 240; i++) {
      await pub.publishAsync("q2/seq", String(i), { qos: 2 });
      completed.push(i);
      if (i === 80) pubNode.proc.kill("SIGKILL");
      if (i === 160) {
        await until(() => counts.size >= 120, 10_000, "the subscriber keeping up");
        subNode.proc.kill("SIGKILL");
      }
      await new Promise((r) => setTimeout(r, 2));
    }
    await until(() => completed.every((n) => counts.has(n)), 30_000, "every completed message");
    // Late copies would come now.
    await new Promise((r) => setTimeout(r, 1500));
    const twice = [...counts].filter(([, c]) => c > 1).map(([n]) => n);
    assert.deepEqual(twice, [], "delivered twice");
    console.log(`# ${completed.length} completed, each delivered once`);
  } finally {
    await endAll(sub, pub);
    for (const v of [pubNode, subNode]) if (v.proc.exitCode === null) v.proc.kill("SIGKILL");
  }
});

test("cluster: a will whose delay is running when its node is killed with SIGKILL is published once by the survivor that claims the node [MQTT-3.1.3-9 v5]", async () => {
  const victim = startVictim("delaynode");
  const watcher = await connect(survivors[0], { clientId: "delay-watcher" });
  let client: mqtt.MqttClient | undefined;
  try {
    const port = await victimPort(victim, "delaynode");
    const wills = collect(watcher);
    await watcher.subscribeAsync("delayed/#", { qos: 1 });
    client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
      clientId: "delayed-will",
      protocolVersion: 5,
      clean: false,
      properties: { sessionExpiryInterval: 300 },
      will: {
        topic: "delayed/will",
        payload: Buffer.from("late"),
        qos: 1,
        retain: false,
        properties: { willDelayInterval: 2 },
      },
      reconnectPeriod: 0,
    });
    client.on("error", () => {});
    await new Promise<void>((r) => client!.once("connect", () => r()));
    // The connection breaks (no DISCONNECT): the will waits 2 s on the victim, which dies first.
    client.stream.destroy();
    await new Promise((r) => setTimeout(r, 500));
    victim.proc.kill("SIGKILL");
    await victim.exited(10_000);
    const [w] = await wills.next(1, 15_000);
    assert.equal(w.payload, "late");
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(wills.messages.length, 1, "published exactly once");
  } finally {
    await endAll(watcher, client);
    if (victim.proc.exitCode === null) victim.proc.kill("SIGKILL");
  }
});
