/** Bridges between Midge brokers: topic remapping, QoS, loss of the remote, loops, SIGHUP-style changes. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assembleBroker } from "../src/assemble.ts";
import type { Config } from "../src/config/schema.ts";
import { silentLogger } from "../src/sys/log.ts";
import { backoff, parseBridgeTopic } from "../src/bridge/bridge.ts";
import {
  bridgeTo,
  collect,
  connect,
  connectCollect,
  endAll,
  freePort,
  sleep,
  startBroker,
  type TestBroker,
  testConfig,
  until,
} from "./helpers/broker.ts";

/** The bridge's link is up (its local session has a connection). */
function linked(tb: TestBroker, name = "b1"): boolean {
  return tb.bridges!.bridges.get(name)?.client?.connected === true;
}

test("bridge topic lines parse like Mosquitto's, and backoff grows to its cap", () => {
  assert.deepEqual(parseBridgeTopic("a/# both 2 loc/ rem/"), {
    pattern: "a/#",
    direction: "both",
    qos: 2,
    localPrefix: "loc/",
    remotePrefix: "rem/",
  });
  assert.deepEqual(parseBridgeTopic('x/+ in 1 "" r/'), {
    pattern: "x/+",
    direction: "in",
    qos: 1,
    localPrefix: "",
    remotePrefix: "r/",
  });
  assert.equal(parseBridgeTopic("t").direction, "out");
  assert.equal(backoff("3", 5), 3000);
  for (let i = 0; i < 20; i++) {
    const d = backoff("1 4", i);
    assert.ok(d >= 1000 && d <= 4000, String(d));
  }
});

for (const version of ["mqttv311", "mqttv50"] as const) {
  test(`Midge→Midge bridge (${version}): out and in with prefix remapping at QoS 0, 1 and 2`, async () => {
    const remote = await startBroker();
    const local = await startBroker({
      bridges: [
        bridgeTo(remote.port, ["sensors/# out 2 local/ remote/", "cmd/# in 2 here/ there/"], {
          bridge_protocol_version: version,
        }),
      ],
    });
    try {
      await until(() => linked(local), 5000, "bridge link");
      const rsub = await connect(remote);
      const rgot = collect(rsub);
      await rsub.subscribeAsync("remote/#", { qos: 2 });
      const lsub = await connect(local);
      const lgot = collect(lsub);
      await lsub.subscribeAsync("here/#", { qos: 2 });
      const lpub = await connect(local);
      const rpub = await connect(remote);
      for (const qos of [0, 1, 2] as const) {
        await lpub.publishAsync("local/sensors/t", `out${qos}`, { qos });
        await rpub.publishAsync("there/cmd/x", `in${qos}`, { qos });
      }
      await lpub.publishAsync("local/other", "not bridged", { qos: 1 });
      const rm = await rgot.next(3);
      const lm = await lgot.next(3);
      assert.deepEqual(rm.map((m) => [m.topic, m.payload, m.packet.qos]), [
        ["remote/sensors/t", "out0", 0],
        ["remote/sensors/t", "out1", 1],
        ["remote/sensors/t", "out2", 2],
      ]);
      assert.deepEqual(lm.map((m) => [m.topic, m.payload]).sort(), [
        ["here/cmd/x", "in0"],
        ["here/cmd/x", "in1"],
        ["here/cmd/x", "in2"],
      ]);
      await endAll(rsub, lsub, lpub, rpub);
    } finally {
      await local.stop();
      await remote.stop();
    }
  });
}

test("QoS 2 messages forwarded by a bridge are done locally once the remote has them: none stays in flight, the window never fills [MQTT-4.3.3-1 v3.1.1]", async () => {
  const remote = await startBroker();
  // A window of 2: messages left in flight locally would stop the bridge after the second.
  const local = await startBroker({
    max_inflight_messages: 2,
    bridges: [bridgeTo(remote.port, ["q2/# out 2"])],
  });
  try {
    await until(() => linked(local), 5000, "bridge link");
    const rsub = await connect(remote);
    const rgot = collect(rsub);
    await rsub.subscribeAsync("q2/#", { qos: 2 });
    const lpub = await connect(local);
    for (let i = 0; i < 6; i++) await lpub.publishAsync("q2/x", `m${i}`, { qos: 2 });
    const got = await rgot.next(6);
    assert.deepEqual(got.map((m) => m.payload), ["m0", "m1", "m2", "m3", "m4", "m5"]);
    const localId = local.bridges!.bridges.get("b1")!.localId;
    await until(
      () => local.broker.sessions.get(localId)!.inflight.size === 0,
      5000,
      "the bridge session's in-flight messages completed",
    );
    await endAll(rsub, lpub);
  } finally {
    await local.stop();
    await remote.stop();
  }
});

test("two brokers bridged both ways on # do not echo messages back and forth", async () => {
  for (const version of ["mqttv311", "mqttv50"] as const) {
    const b = await startBroker();
    const a = await startBroker({
      bridges: [bridgeTo(b.port, ["# both 1"], { bridge_protocol_version: version })],
    });
    try {
      await until(() => linked(a), 5000, "bridge link");
      const sa = await connect(a);
      const sb = await connect(b);
      const ga = collect(sa);
      const gb = collect(sb);
      await sa.subscribeAsync("loop/#", { qos: 1 });
      await sb.subscribeAsync("loop/#", { qos: 1 });
      const pa = await connect(a);
      const pb = await connect(b);
      await pa.publishAsync("loop/a", "from a", { qos: 1 });
      await pb.publishAsync("loop/b", "from b", { qos: 1 });
      await ga.next(2);
      await gb.next(2);
      await sleep(500);
      assert.deepEqual(ga.messages.map((m) => m.payload).sort(), ["from a", "from b"], version);
      assert.deepEqual(gb.messages.map((m) => m.payload).sort(), ["from a", "from b"], version);
      await endAll(sa, sb, pa, pb);
    } finally {
      await a.stop();
      await b.stop();
    }
  }
});

test("the remote stopped and restarted mid-stream: no acknowledged QoS 1/2 message is lost", async () => {
  const dir = mkdtempSync(join(tmpdir(), "midge-bridge-"));
  const remoteCfg: Config = testConfig({ persistence: true, persistence_location: dir });
  let remote = assembleBroker(remoteCfg, silentLogger).broker;
  const [rl] = await remote.start();
  remoteCfg.listeners[0].port = rl.port; // restart on the same port
  const remoteTb = {
    broker: remote,
    port: rl.port,
    url: `mqtt://127.0.0.1:${rl.port}`,
    stop: () => remote.stop(),
  };
  const local = await startBroker({ bridges: [bridgeTo(rl.port, ["data/# out 2"])] });
  try {
    await until(() => linked(local), 5000, "bridge link");
    // A persistent subscriber on the remote.
    let rsub = await connect(remoteTb, { clientId: "rsub", clean: false });
    await rsub.subscribeAsync("data/#", { qos: 2 });
    await endAll(rsub);
    const pub = await connect(local);
    const acked: string[] = [];
    for (let i = 0; i < 20; i++) {
      await pub.publishAsync("data/x", `m${i}`, { qos: (1 + (i % 2)) as 1 | 2 });
      acked.push(`m${i}`);
      if (i === 7) await remote.stop();
    }
    await sleep(200);
    remote = assembleBroker(remoteCfg, silentLogger).broker;
    await remote.start();
    remoteTb.broker = remote;
    await until(() => linked(local), 10000, "bridge link after the remote's restart");
    const got = await (async () => {
      const r = await connectCollect(remoteTb, { clientId: "rsub", clean: false });
      rsub = r.client;
      const g = r.got;
      await until(
        () => new Set(g.messages.map((m) => m.payload)).size >= 20,
        10000,
        "all messages: " + JSON.stringify(g.messages.map((m) => m.payload)),
      );
      return g.messages.map((m) => m.payload);
    })();
    assert.deepEqual([...new Set(got)].sort(), acked.slice().sort());
    await endAll(rsub, pub);
  } finally {
    await local.stop();
    await remote.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("notifications: connection state 1 while linked, 0 (the bridge's will) when the bridge dies", async () => {
  const remote = await startBroker();
  const local = await startBroker({
    bridges: [bridgeTo(remote.port, ["n/# out 0"], { remote_clientid: "edge1" })],
  });
  try {
    await until(() => linked(local), 5000, "bridge link");
    const watch = await connect(remote);
    const g = collect(watch);
    await watch.subscribeAsync("$SYS/broker/connection/edge1/state", { qos: 1 });
    const [m] = await g.next(1);
    assert.equal(m.payload, "1");
    assert.equal(m.packet.retain, true);
    // Kill the bridge's socket without a DISCONNECT: the remote publishes the will.
    const client = local.bridges!.bridges.get("b1")!.client!;
    client.destroy();
    const all = await g.next(2);
    assert.equal(all[1].payload, "0");
    await endAll(watch);
  } finally {
    await local.stop();
    await remote.stop();
  }
});

test("bridges are added and removed at run time (SIGHUP) without a restart", async () => {
  const remote = await startBroker();
  const local = await startBroker();
  try {
    const rsub = await connect(remote);
    const g = collect(rsub);
    await rsub.subscribeAsync("hup/#", { qos: 1 });
    const pub = await connect(local);
    await local.bridges!.apply([bridgeTo(remote.port, ["hup/# out 1"])]);
    await until(() => linked(local), 5000, "bridge link");
    await pub.publishAsync("hup/1", "bridged", { qos: 1 });
    await g.next(1);
    await local.bridges!.apply([]);
    assert.equal(local.bridges!.bridges.size, 0);
    await pub.publishAsync("hup/2", "not bridged", { qos: 1 });
    await sleep(300);
    assert.deepEqual(g.messages.map((m) => m.payload), ["bridged"]);
    await endAll(rsub, pub);
  } finally {
    await local.stop();
    await remote.stop();
  }
});

test("broker.reload() (what SIGHUP runs) applies a changed [[bridge]] list", async () => {
  const remote = await startBroker();
  const local = await startBroker();
  try {
    local.broker.config.bridges = [bridgeTo(remote.port, ["r/# out 1"], { name: "added" })];
    await local.broker.reload();
    await until(() => linked(local, "added"), 5000, "bridge added by reload");
    local.broker.config.bridges = [];
    await local.broker.reload();
    assert.equal(local.bridges!.bridges.size, 0);
  } finally {
    await local.stop();
    await remote.stop();
  }
});

test("start_type lazy: the bridge connects once `threshold` messages wait, and sends them", async () => {
  const remote = await startBroker();
  const local = await startBroker({
    bridges: [bridgeTo(remote.port, ["lazy/# out 1"], { start_type: "lazy", threshold: 3 })],
  });
  try {
    const rsub = await connect(remote);
    const g = collect(rsub);
    await rsub.subscribeAsync("lazy/#", { qos: 1 });
    const pub = await connect(local);
    await pub.publishAsync("lazy/1", "a", { qos: 1 });
    await pub.publishAsync("lazy/2", "b", { qos: 1 });
    await sleep(700);
    assert.equal(linked(local), false, "not connected below the threshold");
    await pub.publishAsync("lazy/3", "c", { qos: 1 });
    await until(() => linked(local), 5000, "lazy bridge link");
    const msgs = await g.next(3);
    assert.deepEqual(msgs.map((m) => m.payload), ["a", "b", "c"]);
    await endAll(rsub, pub);
  } finally {
    await local.stop();
    await remote.stop();
  }
});

test("a v5 bridge keeps a remote session (Session Expiry) and advertises bridge_max_packet_size", async () => {
  const remote = await startBroker();
  const local = await startBroker({
    bridges: [bridgeTo(remote.port, ["p/# out 1"], {
      bridge_protocol_version: "mqttv50",
      remote_clientid: "edge-v5",
      bridge_max_packet_size: 4096,
    })],
  });
  try {
    await until(() => linked(local), 5000, "bridge link");
    const conn = [...remote.broker.connections].find((c) => c.clientId === "edge-v5")!;
    assert.equal(conn.terms.maxPacket, 4096);
    assert.equal(remote.broker.sessions.get("edge-v5")?.expiryInterval, 0xffffffff);
  } finally {
    await local.stop();
    await remote.stop();
  }
});

test("messages queued for an absent remote survive a restart of the local broker (persistence)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "midge-bridge-local-"));
  const remotePort = await freePort();
  const cfg: Config = testConfig({
    persistence: true,
    persistence_location: dir,
    // A constant 1 s retry: the remote's subscriber is in place before the link comes up.
    bridges: [bridgeTo(remotePort, ["keep/# out 1"], { restart_timeout: "1" })],
  });
  let local = assembleBroker(cfg, silentLogger).broker;
  const [ll] = await local.start();
  cfg.listeners[0].port = ll.port;
  const localTb = {
    broker: local,
    port: ll.port,
    url: `mqtt://127.0.0.1:${ll.port}`,
    stop: () => local.stop(),
  };
  let remote: TestBroker | undefined;
  try {
    const pub = await connect(localTb);
    for (let i = 0; i < 5; i++) await pub.publishAsync("keep/x", `k${i}`, { qos: 1 });
    await endAll(pub);
    await local.stop();
    local = assembleBroker(cfg, silentLogger).broker;
    await local.start();
    remote = await startBroker({ listeners: [{ ...testConfig().listeners[0], port: remotePort }] });
    const rsub = await connect(remote);
    const g = collect(rsub);
    await rsub.subscribeAsync("keep/#", { qos: 1 });
    // The bridge retries with backoff until the remote is there.
    const msgs = await g.next(5, 10000);
    assert.deepEqual(msgs.map((m) => m.payload), ["k0", "k1", "k2", "k3", "k4"]);
    await endAll(rsub);
  } finally {
    await local.stop();
    await remote?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
