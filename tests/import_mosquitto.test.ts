/**
 * `midge import-mosquitto`: a real mosquitto.db, written by Debian's Mosquitto 2.0 at test time,
 * read by the parser, imported by the command, then served by Midge (retained messages, queued
 * and in-flight messages of persistent sessions). Mosquitto must be installed (.ci/run installs
 * it); without it these tests fail.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { Buffer } from "node:buffer";
import { assembleBroker } from "../src/assemble.ts";
import { silentLogger } from "../src/sys/log.ts";
import { MosquittoDbError, parseMosquittoDb, planImport } from "../src/store/mosquitto_import.ts";
import {
  collect,
  connect,
  connectCollect,
  endAll,
  freePort,
  sleep,
  type TestBroker,
  testConfig,
  until,
} from "./helpers/broker.ts";
import { connectPacket, rawConnect } from "./helpers/raw.ts";

const MOSQUITTO = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].find((p) => existsSync(p));
const root = fileURLToPath(new URL("..", import.meta.url));
const runtime = process.env.MIDGE_TEST_RUNTIME ?? ("Bun" in globalThis ? "bun" : "deno");
const bin = join(root, "node_modules", ".bin", runtime);
const prefix = runtime === "deno" ? ["run", "-A", "src/main.ts"] : ["src/main.ts"];

const dir = mkdtempSync(join(tmpdir(), "midge-import-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function midge(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(bin, [...prefix, ...args], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1" },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ port, host: "127.0.0.1" }, () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
}

interface Fixture {
  file: string;
  bytes: Uint8Array;
  /** Packet ids Mosquitto used for the two messages left in flight to "inflight". */
  mids: { q1: number; q2: number };
}

let fixture: Promise<Fixture> | undefined;

/**
 * Runs Mosquitto with persistence on, leaves it with retained messages (v3 and v5 with
 * properties), persistent sessions with subscriptions and queued messages, two messages in
 * flight (QoS 1 unacknowledged, QoS 2 after PUBREC) and one incoming QoS 2 message waiting for
 * PUBREL, stops it with SIGTERM (it writes mosquitto.db on exit) and returns the file. Once.
 */
function mosquittoDb(): Promise<Fixture> {
  return fixture ??= makeMosquittoDb();
}

async function makeMosquittoDb(): Promise<Fixture> {
  assert.ok(MOSQUITTO, "mosquitto is not installed (apt-get install mosquitto)");
  const port = await freePort();
  const conf = join(dir, "mosquitto.conf");
  const user = process.getuid?.() === 0 ? "root" : userInfo().username;
  writeFileSync(
    conf,
    `user ${user}\npersistence true\npersistence_location ${dir}/\n` +
      `listener ${port} 127.0.0.1\nallow_anonymous true\n`,
  );
  const child: ChildProcess = spawn(MOSQUITTO, ["-c", conf], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  try {
    const end = Date.now() + 5000;
    while (!(await canConnect(port))) {
      if (Date.now() > end || child.exitCode !== null) {
        throw new Error(`mosquitto did not start: ${err}`);
      }
      await sleep(30);
    }
    const tb = { port, url: `mqtt://127.0.0.1:${port}` } as TestBroker;

    // Persistent sessions, then offline while messages arrive for them.
    const k5 = await connect(tb, {
      clientId: "keeper5",
      clean: false,
      protocolVersion: 5,
      properties: { sessionExpiryInterval: 3600 },
    });
    await k5.subscribeAsync("work/#", {
      qos: 2,
      nl: true,
      rap: true,
      properties: { subscriptionIdentifier: 7 },
    });
    await k5.subscribeAsync("alerts/+", { qos: 1 });
    const k3 = await connect(tb, { clientId: "keeper3", clean: false, protocolVersion: 4 });
    await k3.subscribeAsync("work/#", { qos: 1 });
    await endAll(k5, k3);

    // A client that takes two messages and acknowledges neither fully.
    const inf = await rawConnect(port, 4);
    inf.send(connectPacket("inflight", 4, { clean: false }));
    await inf.next("connack");
    inf.send({
      cmd: "subscribe",
      messageId: 1,
      subscriptions: [{ topic: "inf/q1", qos: 1 }, { topic: "inf/q2", qos: 2 }],
    });
    await inf.next("suback");

    // A persistent publisher whose QoS 2 message waits for its PUBREL.
    const pend = await rawConnect(port, 4);
    pend.send(connectPacket("halfway", 4, { clean: false }));
    await pend.next("connack");
    pend.send({ cmd: "publish", topic: "in/q2", payload: "pending", qos: 2, messageId: 9 });
    await pend.next("pubrec");
    pend.close();

    const p5 = await connect(tb, { protocolVersion: 5 });
    await p5.publishAsync("keep/v5", "R5", {
      qos: 1,
      retain: true,
      properties: {
        contentType: "text/plain",
        userProperties: { k: "v" },
        correlationData: Buffer.from([1, 2]),
        messageExpiryInterval: 3600,
      },
    });
    await p5.publishAsync("work/a", "w1", { qos: 1, properties: { userProperties: { x: "y" } } });
    await p5.publishAsync("work/b", "w2", { qos: 2 });
    await p5.publishAsync("inf/q1", "f1", { qos: 1 });
    await p5.publishAsync("inf/q2", "f2", { qos: 2 });
    const p3 = await connect(tb, { protocolVersion: 4 });
    await p3.publishAsync("keep/v3", "R3", { qos: 0, retain: true });
    // Not endAll: a forced end may drop the QoS 0 PUBLISH still in the socket's buffer.
    await Promise.all([p5.endAsync(), p3.endAsync()]);

    const f1 = await inf.next("publish");
    const f2 = await inf.next("publish");
    inf.send({ cmd: "pubrec", messageId: f2.messageId });
    await inf.next("pubrel");
    inf.close();
    await sleep(50);

    child.kill("SIGTERM");
    await exited;
    const file = join(dir, "mosquitto.db");
    assert.ok(existsSync(file), `mosquitto wrote no ${file}: ${err}`);
    return {
      file,
      bytes: new Uint8Array(readFileSync(file)),
      mids: { q1: f1.messageId, q2: f2.messageId },
    };
  } finally {
    if (child.exitCode === null) {
      child.kill("SIGKILL");
      await exited;
    }
  }
}

test("parseMosquittoDb reads Mosquitto 2.0's file: retained, sessions, subscriptions, queues", async () => {
  const { bytes, mids } = await mosquittoDb();
  const db = parseMosquittoDb(bytes);
  assert.equal(db.version, 6);
  assert.equal(db.shutdown, true);
  assert.equal(db.littleEndian, true);
  assert.deepEqual(db.warnings, []);

  const byTopic = new Map(db.retained.map((m) => [m.topic, m]));
  assert.deepEqual([...byTopic.keys()].sort(), ["keep/v3", "keep/v5"]);
  const r5 = byTopic.get("keep/v5")!;
  assert.equal(new TextDecoder().decode(r5.payload), "R5");
  assert.equal(r5.qos, 1);
  assert.equal(r5.properties?.contentType, "text/plain");
  assert.deepEqual(r5.properties?.userProperties, [["k", "v"]]);
  assert.deepEqual([...r5.properties!.correlationData!], [1, 2]);
  const left = r5.expiryTime - Date.now() / 1000;
  assert.ok(left > 3000 && left <= 3601, `expiry in ${left} s`);
  assert.equal(byTopic.get("keep/v3")!.qos, 0);
  assert.equal(byTopic.get("keep/v3")!.expiryTime, 0);

  const s = new Map(db.sessions.map((x) => [x.clientId, x]));
  assert.deepEqual([...s.keys()].sort(), ["halfway", "inflight", "keeper3", "keeper5"]);
  const k5 = s.get("keeper5")!;
  assert.equal(k5.expiryInterval, 3600);
  assert.deepEqual(k5.subscriptions.find((x) => x.filter === "work/#"), {
    filter: "work/#",
    qos: 2,
    identifier: 7,
    noLocal: true,
    retainAsPublished: true,
    retainHandling: 0,
  });
  assert.equal(k5.subscriptions.find((x) => x.filter === "alerts/+")?.qos, 1);
  const k5msgs = k5.messages.map((m) => ({
    topic: db.messages.get(m.storeId)?.topic,
    qos: m.qos,
    state: m.state,
    direction: m.direction,
    subId: m.properties?.subscriptionIdentifier,
  }));
  assert.deepEqual(k5msgs, [
    { topic: "work/a", qos: 1, state: 11, direction: "out", subId: 7 },
    { topic: "work/b", qos: 2, state: 11, direction: "out", subId: 7 },
  ]);
  assert.equal(s.get("keeper3")!.expiryInterval, 0xffffffff, "v3.1.1 sessions never expire");
  assert.deepEqual(s.get("keeper3")!.messages.map((m) => m.qos), [1, 1], "downgraded to QoS 1");
  // Mosquitto's states: 3 wait_for_puback, 9 wait_for_pubcomp, 7 wait_for_pubrel (incoming).
  assert.deepEqual(
    s.get("inflight")!.messages.map((m) => [m.mid, m.state, m.direction]),
    [[mids.q1, 3, "out"], [mids.q2, 9, "out"]],
  );
  assert.deepEqual(s.get("halfway")!.messages.map((m) => [m.mid, m.state, m.direction]), [
    [9, 7, "in"],
  ]);
});

test("planImport maps states and leaves out what Midge cannot hold, and what has expired", async () => {
  const db = parseMosquittoDb((await mosquittoDb()).bytes);
  const now = Date.now();
  const plan = planImport(db, now);
  assert.equal(plan.retained.length, 2);
  const inflight = plan.sessions.find((x) => x.session.clientId === "inflight")!;
  assert.deepEqual(inflight.messages.map((m) => [m.msg.topic, m.state]), [
    ["inf/q1", 1],
    ["inf/q2", 2],
  ]);
  const halfway = plan.sessions.find((x) => x.session.clientId === "halfway")!;
  assert.equal(halfway.messages.length, 0);
  assert.deepEqual([...plan.skipped.keys()].map((k) => k.split(" (")[0]), [
    "QoS 2 messages received from a client and waiting for its PUBREL",
  ]);
  const k5 = plan.sessions.find((x) => x.session.clientId === "keeper5")!;
  assert.equal(k5.session.expiryInterval, 3600);
  assert.ok(Math.abs(k5.session.disconnectedAt - now) < 60_000, "disconnected at the shutdown");
  // The same message body is shared by both queues (stored once).
  const k3 = plan.sessions.find((x) => x.session.clientId === "keeper3")!;
  assert.equal(k3.messages[0].msg, k5.messages[0].msg);

  // Two hours on: the v5 retained message (1 h expiry) and keeper5 (1 h session) are gone.
  const later = planImport(db, now + 2 * 3600_000);
  assert.deepEqual(later.retained.map((m) => m.topic), ["keep/v3"]);
  assert.ok(!later.sessions.some((x) => x.session.clientId === "keeper5"));
  assert.equal(later.skipped.get("retained messages past their message expiry"), 1);
  assert.equal(later.skipped.get("sessions past their session expiry"), 1);
});

test("midge import-mosquitto imports into the configured store; Midge then serves the retained messages and resumes the sessions", async () => {
  const { file, mids } = await mosquittoDb();
  const data = join(dir, "midge-data");
  rmSync(data, { recursive: true, force: true });
  const conf = join(dir, "midge.toml");
  writeFileSync(conf, `persistence = true\npersistence_location = ${JSON.stringify(data)}\n`);

  const r = midge("import-mosquitto", "-c", conf, file);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^Imported .*mosquitto\.db \(Mosquitto db version 6\) into .*midge\.db:/);
  assert.match(r.stdout, /^ {2}2 retained messages$/m);
  assert.match(r.stdout, /^ {2}4 sessions$/m);
  assert.match(r.stdout, /^ {2}5 subscriptions$/m);
  assert.match(r.stdout, /^ {2}4 queued messages, 2 messages in flight$/m);
  assert.match(r.stdout, /^Not imported:\n {2}QoS 2 messages received from a client .*: 1$/m);

  const again = midge("import-mosquitto", "-c", conf, file);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /already holds 4 sessions and 2 retained messages; --force/);
  const forced = midge("import-mosquitto", "-c", conf, "--force", file);
  assert.equal(forced.status, 0, forced.stderr);

  const broker = assembleBroker(
    testConfig({ persistence: true, persistence_location: data }),
    silentLogger,
  ).broker;
  const [l] = await broker.start();
  const tb: TestBroker = {
    broker,
    port: l.port,
    url: `mqtt://127.0.0.1:${l.port}`,
    stop: () => broker.stop(),
  };
  try {
    const k5sub = broker.sessions.get("keeper5")?.subscriptions.get("work/#");
    assert.deepEqual(
      k5sub && [k5sub.qos, k5sub.nl, k5sub.rap, k5sub.subId],
      [2, true, true, 7],
    );

    const sub = await connect(tb, { protocolVersion: 5 });
    const got = collect(sub);
    await sub.subscribeAsync("keep/#", { qos: 1 });
    const retained = await got.next(2);
    const r5 = retained.find((m) => m.topic === "keep/v5")!;
    assert.equal(r5.payload, "R5");
    assert.equal(r5.packet.retain, true);
    assert.equal(r5.packet.qos, 1);
    assert.equal(r5.packet.properties?.contentType, "text/plain");
    assert.deepEqual({ ...r5.packet.properties?.userProperties }, { k: "v" });
    assert.deepEqual([...r5.packet.properties?.correlationData], [1, 2]);
    const expiry = r5.packet.properties?.messageExpiryInterval;
    assert.ok(expiry > 3000 && expiry <= 3600, `message expiry ${expiry}`);
    assert.equal(retained.find((m) => m.topic === "keep/v3")?.payload, "R3");

    // [MQTT-3.1.2-4 v3.1.1] the imported sessions are resumed with what was queued for them.
    const k5 = await connectCollect(tb, {
      clientId: "keeper5",
      clean: false,
      protocolVersion: 5,
      properties: { sessionExpiryInterval: 3600 },
    });
    assert.equal(k5.connack.sessionPresent, true);
    const q5 = await k5.got.next(2);
    assert.deepEqual(q5.map((m) => [m.topic, m.payload, m.packet.qos]), [
      ["work/a", "w1", 1],
      ["work/b", "w2", 2],
    ]);
    assert.deepEqual({ ...q5[0].packet.properties?.userProperties }, { x: "y" });
    assert.deepEqual([q5[0].packet.properties?.subscriptionIdentifier].flat(), [7]);

    const k3 = await connectCollect(tb, { clientId: "keeper3", clean: false });
    assert.equal(k3.connack.sessionPresent, true);
    const q3 = await k3.got.next(2);
    assert.deepEqual(q3.map((m) => [m.topic, m.payload, m.packet.qos]), [
      ["work/a", "w1", 1],
      ["work/b", "w2", 1],
    ]);

    // The subscriptions are live: a new message reaches keeper3.
    await sub.publishAsync("work/c", "w3", { qos: 1 });
    assert.equal((await k3.got.next(3))[2].payload, "w3");

    // In flight to "inflight": the QoS 1 PUBLISH again with DUP [MQTT-4.4.0-1], and the PUBREL
    // for the QoS 2 message, both under Mosquitto's packet ids.
    const inf = await rawConnect(tb.port, 4);
    inf.send(connectPacket("inflight", 4, { clean: false }));
    await until(
      () =>
        inf.packets.some((p) => p.cmd === "publish") && inf.packets.some((p) => p.cmd === "pubrel"),
      3000,
      "the resent PUBLISH and PUBREL",
    );
    const pub = inf.packets.find((p) => p.cmd === "publish");
    assert.equal(inf.packets[0].sessionPresent, true);
    assert.deepEqual([pub.topic, String(pub.payload), pub.qos, pub.dup, pub.messageId], [
      "inf/q1",
      "f1",
      1,
      true,
      mids.q1,
    ]);
    assert.equal(inf.packets.find((p) => p.cmd === "pubrel").messageId, mids.q2);
    inf.close();
    await endAll(sub, k5.client, k3.client);
  } finally {
    await broker.stop();
  }
});

test("a truncated or corrupt mosquitto.db gives an error naming the offset and chunk", async () => {
  const { bytes } = await mosquittoDb();
  const fails = (b: Uint8Array, re: RegExp) => {
    assert.throws(() => parseMosquittoDb(b), (e) => {
      assert.ok(e instanceof MosquittoDbError, String(e));
      assert.match(e.message, re);
      return true;
    });
  };
  const edit = (f: (b: Uint8Array, v: DataView) => void) => {
    const b = new Uint8Array(bytes);
    f(b, new DataView(b.buffer));
    return b;
  };
  fails(new Uint8Array(0), /^offset 0: the file is empty/);
  fails(bytes.subarray(0, 10), /^offset 10: the file ends inside the Mosquitto header/);
  fails(edit((b) => (b[5] = 0x4d)), /^offset 5: not a Mosquitto persistence file/);
  fails(
    edit((_, v) => v.setUint32(19, 4)),
    /^offset 19 \(file header\): db version 4 .*not supported/,
  );
  fails(
    bytes.subarray(0, bytes.length - 5),
    /^offset \d+ \(RETAIN chunk at offset \d+\): chunk length 8 runs 5 bytes past the end of the file \(truncated\?\)/,
  );
  fails(
    bytes.subarray(0, 26),
    /^offset 23 \(chunk header at offset 23\): chunk type: 4 bytes needed, 3 left before the end of the file/,
  );
  // The first chunk is CFG (8 + 16 bytes); the second a MSG_STORE at offset 47: its QoS byte is
  // at 47 + 8 + 30, its topic length at 47 + 8 + 26.
  assert.equal(new DataView(bytes.buffer, bytes.byteOffset).getUint32(47), 2);
  fails(
    edit((b) => (b[85] = 7)),
    /^offset 85 \(MSG_STORE chunk at offset 47\): QoS 7 is not 0, 1 or 2/,
  );
  fails(
    edit((_, v) => v.setUint16(81, 0xffff)),
    /^offset \d+ \(MSG_STORE chunk at offset 47\): topic: 65535 bytes needed, \d+ left before the end of the chunk/,
  );

  const cut = join(dir, "cut.db");
  writeFileSync(cut, bytes.subarray(0, bytes.length - 5));
  const r = midge("import-mosquitto", "-n", cut);
  assert.equal(r.status, 1);
  assert.match(
    r.stderr,
    /^midge: import-mosquitto: .*cut\.db: offset \d+ \(RETAIN chunk at offset \d+\): .*past the end of the file/,
  );
});

/** Chunks of a hand-made db file: type, then its body. */
function dbFile(version: number, chunks: [number, Uint8Array][]): Uint8Array {
  const parts: number[] = [0x00, 0xb5, 0x00, ...new TextEncoder().encode("mosquitto db")];
  const u32 = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
  parts.push(...u32(0), ...u32(version));
  for (const [type, body] of chunks) parts.push(...u32(type), ...u32(body.length), ...body);
  return new Uint8Array(parts);
}

/** Big-endian fields in order: [bytes, value] (8-byte values big-endian too: a big-endian host). */
function fields(...f: [1 | 2 | 4 | 8, number][]): number[] {
  const out: number[] = [];
  for (const [n, v] of f) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v));
    out.push(...b.subarray(8 - n));
  }
  return out;
}

const text = (s: string) => [...new TextEncoder().encode(s)];

test("db version 5 (Mosquitto 1.6) from a big-endian host: session without user name", () => {
  const body = (...xs: number[][]) => new Uint8Array(xs.flat());
  const file = dbFile(5, [
    [1, body(fields([8, 3], [1, 1], [1, 8]), [0, 0, 0, 0, 0, 0])],
    // MSG_STORE: id 3, no expiry, payload 2, source mid, source id "p", no user, topic 3, port, QoS 1, retain
    [
      2,
      body(
        fields([8, 3], [8, 0], [4, 2], [2, 0], [2, 1], [2, 0], [2, 3], [2, 0], [1, 1], [1, 1]),
        text("pa/bhi"),
      ),
    ],
    [4, body(fields([8, 3]))],
    // CLIENT v5: expiry time 0, interval never, last mid 1, id "c1"
    [6, body(fields([8, 0], [4, 0xffffffff], [2, 1], [2, 2]), text("c1"))],
    // SUB: identifier 0, id 2, topic 3, QoS 1, options none, padding
    [5, body(fields([4, 0], [2, 2], [2, 3], [1, 1], [1, 0], [2, 0]), text("c1a/#"))],
    // CLIENT_MSG: store 3, mid 1, id 2, QoS 1, state wait_for_puback, retain/dup, out
    [3, body(fields([8, 3], [2, 1], [2, 2], [1, 1], [1, 3], [1, 0x01], [1, 1]), text("c1"))],
    [99, body([1, 2, 3])],
  ]);
  const db = parseMosquittoDb(file);
  assert.equal(db.version, 5);
  assert.equal(db.littleEndian, false);
  assert.equal(db.lastDbId, 3n);
  assert.deepEqual(db.retained.map((m) => [m.topic, new TextDecoder().decode(m.payload), m.qos]), [
    ["a/b", "hi", 1],
  ]);
  assert.equal(db.sessions.length, 1);
  const [s] = db.sessions;
  assert.deepEqual([s.clientId, s.username, s.expiryInterval, s.subscriptions[0].filter], [
    "c1",
    undefined,
    0xffffffff,
    "a/#",
  ]);
  assert.deepEqual([s.messages[0].storeId, s.messages[0].state, s.messages[0].dup], [3n, 3, true]);
  assert.deepEqual(db.warnings, ["unknown type 99 chunk at offset 186 (3 bytes) ignored"]);
  const plan = planImport(db, Date.now());
  assert.deepEqual(plan.sessions[0].messages.map((m) => [m.msg.topic, m.state, m.packetId]), [
    ["a/b", 1, 1],
  ]);
});
