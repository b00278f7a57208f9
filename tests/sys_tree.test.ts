/**
 * The $SYS tree: Mosquitto's topic names and value formats, published retained by the broker,
 * only when a value changed, never seen by "#" subscribers [MQTT-4.7.2-1], never stored.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { collect, connect, endAll, type Received, sleep, startBroker } from "./helpers/broker.ts";
import { SysTree } from "../src/sys/systree.ts";
import { VERSION } from "../src/version.ts";

/** Every periodic topic Mosquitto 2.0 publishes (heap/* is the memory-tracking build's). */
const NAMES = [
  "uptime",
  "clients/total",
  "clients/maximum",
  "clients/connected",
  "clients/active",
  "clients/disconnected",
  "clients/inactive",
  "clients/expired",
  "messages/received",
  "messages/sent",
  "messages/stored",
  "store/messages/count",
  "store/messages/bytes",
  "subscriptions/count",
  "shared_subscriptions/count",
  "retained messages/count",
  "publish/messages/received",
  "publish/messages/sent",
  "publish/messages/dropped",
  "publish/bytes/received",
  "publish/bytes/sent",
  "bytes/received",
  "bytes/sent",
  "heap/current",
  "heap/maximum",
];
const LOADS = [
  "messages/received",
  "messages/sent",
  "publish/received",
  "publish/sent",
  "publish/dropped",
  "bytes/received",
  "bytes/sent",
  "sockets",
  "connections",
];

/** The latest value per $SYS topic from a collector. */
function latest(msgs: Received[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const r of msgs) m.set(r.topic.replace(/^\$SYS\/broker\//, ""), r.payload);
  return m;
}

/** Wait until `pred(latest values)` holds (the broker delivers asynchronously). */
async function until(msgs: Received[], pred: (v: Map<string, string>) => boolean, what: string) {
  for (let i = 0; i < 200; i++) {
    if (pred(latest(msgs))) return latest(msgs);
    await sleep(10);
  }
  assert.fail(`timed out waiting for ${what}: ${JSON.stringify([...latest(msgs)])}`);
}

test("$SYS/# subscribers get every Mosquitto topic name, retained, with Mosquitto's formats", async () => {
  const tb = await startBroker({ sys_interval: 1 });
  const sys = new SysTree(tb.broker);
  sys.start();
  const c = await connect(tb, { protocolVersion: 5 });
  try {
    const got = collect(c);
    await c.subscribeAsync("$SYS/#");
    const v = await until(
      got.messages,
      (v) => v.has("version") && NAMES.every((n) => v.has(n)) && v.has("load/sockets/15min"),
      "every topic",
    );
    assert.ok(got.messages.every((r) => r.packet.retain), "sent as retained on subscription");
    assert.equal(v.get("version"), `midge version ${VERSION}`);
    assert.match(v.get("uptime")!, /^\d+ seconds$/);
    for (const n of NAMES.filter((n) => n !== "uptime")) assert.match(v.get(n)!, /^\d+$/, n);
    for (const l of LOADS) {
      for (const w of ["1min", "5min", "15min"]) {
        assert.match(v.get(`load/${l}/${w}`)!, /^\d+\.\d\d$/, `load/${l}/${w} is "%.2f"`);
      }
    }
  } finally {
    sys.stop();
    await endAll(c);
    await tb.stop();
  }
});

test("$SYS values follow the broker: clients, subscriptions, retained, publish counts and bytes", async () => {
  const tb = await startBroker({ sys_interval: 1 });
  const sys = new SysTree(tb.broker);
  sys.start();
  const watcher = await connect(tb, { clientId: "watcher" });
  const pub = await connect(tb, { clientId: "pub", clean: false });
  try {
    const got = collect(watcher);
    await watcher.subscribeAsync("$SYS/#");
    await watcher.subscribeAsync("$share/g/x/#");
    await pub.publishAsync("a/1", "12345", { retain: true, qos: 1 });
    await pub.publishAsync("a/2", "1234567", { qos: 1 });
    await pub.publishAsync("a/3", "", { qos: 0 });
    sys.tick();
    const v = await until(got.messages, (v) => v.get("publish/messages/received") === "3", "3");
    assert.equal(v.get("publish/bytes/received"), "12", "payload bytes of the three PUBLISH");
    assert.equal(v.get("clients/connected"), "2");
    assert.equal(v.get("clients/active"), "2");
    assert.equal(v.get("clients/total"), "2");
    assert.equal(v.get("subscriptions/count"), "2");
    assert.equal(v.get("shared_subscriptions/count"), "1");
    assert.equal(v.get("retained messages/count"), String(tb.broker.retained.size));
    const received = Number(v.get("messages/received"));
    assert.ok(received >= 2 + 2 + 3, `2 CONNECT, 2 SUBSCRIBE, 3 PUBLISH: ${received}`);
    assert.ok(Number(v.get("bytes/received")) > 12);
    assert.ok(Number(v.get("publish/messages/sent")) > 0, "$SYS messages were sent to watcher");

    // The persistent client goes away: connected falls, total keeps its offline session.
    await endAll(pub);
    await sleep(50);
    sys.tick();
    const w = await until(got.messages, (v) => v.get("clients/connected") === "1", "1 connected");
    assert.equal(w.get("clients/total"), "2");
    assert.equal(w.get("clients/disconnected"), "1");
    assert.equal(w.get("clients/inactive"), "1");
    assert.equal(w.get("clients/maximum"), "2");
  } finally {
    sys.stop();
    await endAll(watcher, pub);
    await tb.stop();
  }
});

test("a $SYS topic is published again only when its value changed", async () => {
  const tb = await startBroker({ sys_interval: 0 });
  const sys = new SysTree(tb.broker);
  sys.start();
  try {
    const now = Date.now();
    sys.tick(now);
    const first = tb.broker.retained.match("$SYS/broker/clients/total", now)[0];
    assert.equal(new TextDecoder().decode(first.payload), "0");
    sys.tick(now);
    const second = tb.broker.retained.match("$SYS/broker/clients/total", now)[0];
    assert.equal(second, first, "the same retained message: nothing was published");
    const c = await connect(tb);
    sys.tick(now);
    const third = tb.broker.retained.match("$SYS/broker/clients/total", now)[0];
    assert.notEqual(third, first);
    assert.equal(new TextDecoder().decode(third.payload), "1");
    await endAll(c);
  } finally {
    sys.stop();
    await tb.stop();
  }
});

test("load averages: per-minute rates folded in with Mosquitto's exponential decay", async () => {
  const tb = await startBroker({ sys_interval: 0 });
  const sys = new SysTree(tb.broker);
  sys.start();
  try {
    const t0 = Date.now();
    sys.values(t0); // a baseline tick
    tb.broker.stats.publishReceived += 120; // 120 in one minute = 120/min
    const v = new Map(sys.values(t0 + 60000));
    const expect = (w: number) => (120 * (1 - Math.exp(-60 / w))).toFixed(2);
    assert.equal(v.get("$SYS/broker/load/publish/received/1min"), expect(60));
    assert.equal(v.get("$SYS/broker/load/publish/received/5min"), expect(300));
    assert.equal(v.get("$SYS/broker/load/publish/received/15min"), expect(900));
    assert.equal(v.get("$SYS/broker/load/publish/sent/1min"), "0.00");
  } finally {
    sys.stop();
    await tb.stop();
  }
});

test("'#' and '+/...' subscribers do not see $SYS topics [MQTT-4.7.2-1]", async () => {
  const tb = await startBroker({ sys_interval: 1 });
  const sys = new SysTree(tb.broker);
  sys.start();
  const c = await connect(tb);
  try {
    const got = collect(c);
    await c.subscribeAsync(["#", "+/broker/#"]);
    sys.tick();
    await c.publishAsync("plain/topic", "x", { qos: 1 });
    await got.next(1);
    sys.tick();
    await sleep(100);
    assert.deepEqual(got.messages.map((m) => m.topic), ["plain/topic"]);
  } finally {
    sys.stop();
    await endAll(c);
    await tb.stop();
  }
});

test("a client cannot publish into $SYS (v5 PUBACK 0x87); the broker's value stays", async () => {
  const tb = await startBroker({ sys_interval: 0 });
  const sys = new SysTree(tb.broker);
  sys.start();
  const c = await connect(tb, { protocolVersion: 5 });
  try {
    await assert.rejects(
      c.publishAsync("$SYS/broker/version", "fake", { qos: 1, retain: true }),
      /Not authorized/,
      "v5 PUBACK 0x87",
    );
    const m = tb.broker.retained.match("$SYS/broker/version", Date.now());
    assert.equal(new TextDecoder().decode(m[0].payload), `midge version ${VERSION}`);
  } finally {
    sys.stop();
    await endAll(c);
    await tb.stop();
  }
});

test("retained $SYS messages are not written to the persistent store", async () => {
  const dir = mkdtempSync(join(tmpdir(), "midge-sys-"));
  try {
    const over = { persistence: true, persistence_location: dir, sys_interval: 0 };
    let tb = await startBroker(over);
    const sys = new SysTree(tb.broker);
    sys.start();
    const c = await connect(tb);
    await c.publishAsync("kept/topic", "v", { qos: 1, retain: true });
    await endAll(c);
    assert.ok(tb.broker.retained.size > 1);
    sys.stop();
    await tb.stop();
    tb = await startBroker(over);
    const topics = tb.broker.retained.match("#", Date.now()).map((m) => m.topic);
    assert.deepEqual(topics, ["kept/topic"]);
    assert.equal(tb.broker.retained.match("$SYS/#", Date.now()).length, 0);
    await tb.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
