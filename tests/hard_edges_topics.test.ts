/**
 * Topics that a prefix (a listener's mount_point, a bridge's local or remote prefix) would push
 * past 65,535 bytes [MQTT-4.7.3-3], and errors that escape a client's path (a will timer, the
 * packets held behind a slow login, a store callback): each is refused or dropped with the right
 * reason code and one log line, and the broker goes on serving everyone else.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { Buffer } from "node:buffer";
import mqttPacket from "mqtt-packet";
import { assembleBroker } from "../src/assemble.ts";
import { bridgeTopicProblem, type Config } from "../src/config/schema.ts";
import { Logger } from "../src/sys/log.ts";
import { hashPassword } from "../src/auth/password.ts";
import { SqliteStore } from "../src/store/sqlite.ts";
import { adminRead } from "../src/sys/admin.ts";
import {
  bridgeTo,
  collect,
  connect,
  endAll,
  type TestBroker,
  testConfig,
  until,
} from "./helpers/broker.ts";
import { type AnyPacket, connectPacket, type RawClient, rawConnect } from "./helpers/raw.ts";

const MOUNT = "tenant/";
const dir = mkdtempSync(join(tmpdir(), "midge-hard-edges-"));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Edged extends TestBroker {
  /** Port of the listener with mount_point "tenant/". */
  mountPort: number;
  /** Log lines (errors, warnings, notices) without timestamps. */
  lines: string[];
}

/** A broker with a plain listener and a mount-point listener, logging into `lines`. */
async function startEdged(over: Partial<Config> = {}): Promise<Edged> {
  const lines: string[] = [];
  const log = new Logger(["error", "warning", "notice"], {
    timestamp: false,
    sink: (l) => lines.push(l),
  });
  const base = testConfig(over);
  const plain = base.listeners[0];
  base.listeners = [plain, { ...plain, mount_point: MOUNT }];
  const broker = assembleBroker(base, log).broker;
  const [a, b] = await broker.start();
  return {
    broker,
    port: a.port,
    url: `mqtt://127.0.0.1:${a.port}`,
    mountPort: b.port,
    lines,
    stop: () => broker.stop(),
  };
}

/** A raw client on `port` after a successful CONNECT. */
async function rawOpen(port: number, version: number, extra: AnyPacket = {}): Promise<RawClient> {
  const rc = await rawConnect(port, version);
  rc.send(connectPacket(`raw${Math.random().toString(36).slice(2, 8)}`, version, extra));
  const ack = await rc.next("connack");
  assert.equal(version === 5 ? ack.reasonCode : ack.returnCode, 0);
  return rc;
}

/** Another client publishes and receives normally: the broker is unharmed. */
async function stillWorks(tb: TestBroker): Promise<void> {
  const c = await connect(tb);
  const got = collect(c);
  await c.subscribeAsync("alive", { qos: 1 });
  await c.publishAsync("alive", "yes", { qos: 1 });
  const [m] = await got.next(1);
  assert.equal(m.payload, "yes");
  await endAll(c);
}

/** A topic (or filter) of `n` bytes under "a/". */
const long = (n: number) => "a/" + "x".repeat(n - 2);

test("a PUBLISH that the mount_point pushes past 65,535 bytes gets 0x90 and is neither routed nor retained [MQTT-4.7.3-3]", async () => {
  const tb = await startEdged();
  try {
    const watcher = await rawOpen(tb.port, 5);
    watcher.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "#", qos: 0 }] });
    await watcher.next("suback");

    const v5 = await rawOpen(tb.mountPort, 5);
    v5.send({
      cmd: "publish",
      topic: long(65530),
      payload: "p",
      qos: 1,
      messageId: 7,
      retain: true,
    });
    const ack = await v5.next("puback");
    assert.equal(ack.messageId, 7);
    assert.equal(ack.reasonCode, 0x90);
    // A topic that fits with the prefix still goes through on the same connection.
    v5.send({ cmd: "publish", topic: "ok", payload: "p", qos: 1, messageId: 8 });
    assert.equal((await v5.next("puback")).reasonCode, 0);
    assert.equal((await watcher.next("publish")).topic, "tenant/ok");

    // v3 has no reason code: acknowledged, not delivered.
    const v3 = await rawOpen(tb.mountPort, 4);
    v3.send({
      cmd: "publish",
      topic: long(65535),
      payload: "p",
      qos: 1,
      messageId: 9,
      retain: true,
    });
    assert.equal((await v3.next("puback")).messageId, 9);

    // QoS 0 has no acknowledgement: v5 is told by DISCONNECT 0x90.
    v5.send({ cmd: "publish", topic: long(65535), payload: "p", qos: 0, retain: true });
    assert.equal((await v5.next("disconnect")).reasonCode, 0x90);
    await v5.closed;

    // Nothing was retained: a new "#" subscriber gets its SUBACK and is not reset.
    assert.equal(tb.broker.retained.size, 0);
    const late = await rawOpen(tb.port, 5);
    late.send({ cmd: "subscribe", messageId: 2, subscriptions: [{ topic: "#", qos: 1 }] });
    assert.deepEqual((await late.next("suback")).granted, [1]);
    assert.equal(late.socket.destroyed, false);
    assert.deepEqual(watcher.packets.filter((p) => p.cmd === "publish").length, 1);
    for (const c of [watcher, v3, late]) c.close();
    await stillWorks(tb);
  } finally {
    await tb.stop();
  }
});

test("a SUBSCRIBE filter that the mount_point pushes past 65,535 bytes gets 0x8F (v3 0x80) [MQTT-4.7.3-3]", async () => {
  const tb = await startEdged();
  try {
    for (const version of [5, 4]) {
      const rc = await rawOpen(tb.mountPort, version);
      rc.send({
        cmd: "subscribe",
        messageId: 3,
        subscriptions: [{ topic: long(65535), qos: 1 }, { topic: "fine/#", qos: 1 }],
      });
      const ack = await rc.next("suback");
      assert.deepEqual(ack.granted, [version === 5 ? 0x8f : 0x80, 1]);
      rc.close();
    }
    await stillWorks(tb);
  } finally {
    await tb.stop();
  }
});

test("CONNECT and a too-long SUBSCRIBE in one write, held behind a slow password check: SUBACK 0x8F, broker up", async () => {
  const pw = join(dir, "passwd");
  writeFileSync(pw, `u:${await hashPassword(new TextEncoder().encode("pw"))}\n`);
  const tb = await startEdged({ password_file: pw, allow_anonymous: true });
  try {
    const rc = await rawConnect(tb.mountPort, 5);
    const gen = (p: AnyPacket) => mqttPacket.generate(p, { protocolVersion: 5 });
    rc.send(
      Buffer.concat([
        gen(connectPacket("held", 5, { username: "u", password: Buffer.from("pw") })),
        gen({ cmd: "subscribe", messageId: 4, subscriptions: [{ topic: long(65535), qos: 0 }] }),
      ]),
    );
    assert.equal((await rc.next("connack")).reasonCode, 0);
    assert.deepEqual((await rc.next("suback")).granted, [0x8f]);
    rc.close();
    await stillWorks(tb);
  } finally {
    await tb.stop();
  }
});

test("a will topic that the mount_point pushes past 65,535 bytes: v5 CONNACK 0x90, v3 closed without CONNACK, no session left [MQTT-4.7.3-3]", async () => {
  const tb = await startEdged();
  try {
    // v5 with a will delay (the will timer used to fire and end the process).
    const v5 = await rawConnect(tb.mountPort, 5);
    v5.send(connectPacket("w5", 5, {
      will: {
        topic: long(65535),
        payload: Buffer.from("gone"),
        qos: 0,
        retain: true,
        properties: { willDelayInterval: 1 },
      },
      properties: { sessionExpiryInterval: 60 },
    }));
    const ack = await v5.next("connack");
    assert.equal(ack.reasonCode, 0x90);
    await v5.closed;

    // v3 clean session (it used to stay behind as a session nobody could end).
    const v3 = await rawConnect(tb.mountPort, 4);
    v3.send(connectPacket("w3", 4, {
      will: { topic: long(65535), payload: Buffer.from("gone"), qos: 0, retain: false },
    }));
    await v3.closed;
    assert.deepEqual(v3.packets.map((p) => p.cmd), []);
    await until(() => tb.broker.connections.size === 0, 3000, "both connections gone");
    assert.equal(tb.broker.sessions.size, 0);
    assert.equal(tb.broker.retained.size, 0);
    await stillWorks(tb);
  } finally {
    await tb.stop();
  }
});

test("a bridge drops (and logs) an incoming message its local prefix would push past 65,535 bytes, and goes on", async () => {
  const remote = await startEdged();
  const local = await startEdged({
    bridges: [bridgeTo(remote.port, ['# in 1 local/ ""'], { notifications: false })],
  });
  try {
    await until(() => remote.broker.sessions.size === 1, 5000, "the bridge to connect");
    await until(
      () => [...remote.broker.sessions.values()].some((s) => s.subscriptions.size === 1),
      5000,
      "the bridge to subscribe",
    );
    const sub = await connect(local);
    const got = collect(sub);
    await sub.subscribeAsync("#", { qos: 1 });
    const pub = await connect(remote);
    await pub.publishAsync(long(65530), "too long here", { qos: 1 });
    await pub.publishAsync("fine", "arrives", { qos: 1 });
    const [m] = await got.next(1);
    assert.equal(m.topic, "local/fine");
    assert.equal(m.payload, "arrives");
    assert.equal(got.messages.length, 1);
    assert.ok(local.lines.some((l) => /Bridge b1: message dropped.*local prefix/.test(l)));
    await endAll(sub, pub);
    await stillWorks(local);
  } finally {
    await local.stop();
    await remote.stop();
  }
});

test("a bridge drops (and logs) an outgoing message its remote prefix would push past 65,535 bytes, and goes on", async () => {
  const remote = await startEdged();
  const local = await startEdged({
    bridges: [bridgeTo(remote.port, ['# out 1 "" remote/'], { notifications: false })],
  });
  try {
    await until(() => remote.broker.sessions.size === 1, 5000, "the bridge to connect");
    const sub = await connect(remote);
    const got = collect(sub);
    await sub.subscribeAsync("remote/#", { qos: 1 });
    const pub = await connect(local);
    await pub.publishAsync(long(65530), "too long there", { qos: 1 });
    await pub.publishAsync("fine", "arrives", { qos: 1 });
    const [m] = await got.next(1);
    assert.equal(m.topic, "remote/fine");
    assert.equal(got.messages.length, 1);
    assert.ok(local.lines.some((l) => /Bridge b1: message dropped.*remote prefix/.test(l)));
    // Both were completed locally: nothing waits in the bridge's session.
    const s = [...local.broker.sessions.values()].find((x) => x.clientId.startsWith("local."))!;
    await until(() => s.inflight.size === 0 && s.queue.length === 0, 3000, "the bridge's session");
    await endAll(sub, pub);
    await stillWorks(local);
  } finally {
    await local.stop();
    await remote.stop();
  }
});

test("a retained message on a topic too long to send, found in the store at start-up, is dropped and logged", async () => {
  const loc = mkdtempSync(join(dir, "store-"));
  const store = new SqliteStore(join(loc, "midge.db"));
  const payload = new TextEncoder().encode("poison");
  const msg = { qos: 0 as const, retain: true, expiresAt: 0, origin: "x", payload };
  store.setRetained({ ...msg, topic: "tenant/" + long(65535) });
  store.setRetained({ ...msg, topic: "good", payload: new TextEncoder().encode("kept") });
  store.flush();
  store.close();
  const tb = await startEdged({ persistence: true, persistence_location: loc });
  try {
    assert.equal(tb.broker.retained.size, 1);
    assert.ok(tb.lines.some((l) => /retained message on an invalid topic .* dropped/.test(l)));
    const sub = await connect(tb);
    const got = collect(sub);
    await sub.subscribeAsync("#", { qos: 1 });
    const [m] = await got.next(1);
    assert.equal(m.topic, "good");
    await endAll(sub);
  } finally {
    await tb.stop();
  }
  // The row is gone from the database too.
  const again = new SqliteStore(join(loc, "midge.db"));
  try {
    assert.deepEqual(again.load().retained.map((m) => m.topic), ["good"]);
  } finally {
    again.close();
  }
});

// --- Errors that escape a client's path ---------------------------------------------------------

/** Make `broker.publish` throw for topics under "boom/", as an unforeseen bug would. */
function boobyTrap(tb: TestBroker): void {
  const publish = tb.broker.publish.bind(tb.broker);
  tb.broker.publish = (m) => {
    if (m.topic.startsWith("boom/")) throw new Error("forced failure");
    return publish(m);
  };
}

test("an error inside a delayed will's timer is logged as one line; the session ends, the broker stays up", async () => {
  const tb = await startEdged();
  boobyTrap(tb);
  try {
    const rc = await rawOpen(tb.port, 5, {
      clientId: "doomed",
      will: {
        topic: "boom/will",
        payload: Buffer.from("x"),
        qos: 1,
        retain: false,
        properties: { willDelayInterval: 1 },
      },
      properties: { sessionExpiryInterval: 2 },
    });
    rc.close();
    await until(() => tb.broker.sessions.get("doomed")?.willTimer !== undefined, 3000, "offline");
    await until(
      () => tb.lines.some((l) => /doomed/.test(l) && /forced failure/.test(l)),
      5000,
      "log",
    );
    assert.equal(tb.lines.filter((l) => /forced failure/.test(l)).length, 1);
    await until(() => !tb.broker.sessions.has("doomed"), 5000, "the session to expire");
    await stillWorks(tb);
  } finally {
    await tb.stop();
  }
});

test("an error in a clean session's will at disconnect does not leave the session behind", async () => {
  const tb = await startEdged();
  boobyTrap(tb);
  try {
    const rc = await rawOpen(tb.port, 4, {
      clientId: "ghost",
      will: { topic: "boom/now", payload: Buffer.from("x"), qos: 0, retain: false },
    });
    rc.close();
    await until(() => tb.broker.connections.size === 0, 3000, "the connection to go");
    assert.equal(tb.broker.sessions.has("ghost"), false);
    assert.equal(tb.lines.filter((l) => /forced failure/.test(l)).length, 1);
    await stillWorks(tb);
  } finally {
    await tb.stop();
  }
});

test("an error in a packet held behind a slow password check closes that client only, with one log line", async () => {
  const pw = join(dir, "passwd2");
  writeFileSync(pw, `u:${await hashPassword(new TextEncoder().encode("pw"))}\n`);
  const tb = await startEdged({ password_file: pw, allow_anonymous: true });
  boobyTrap(tb);
  try {
    const rc = await rawConnect(tb.port, 5);
    const gen = (p: AnyPacket) => mqttPacket.generate(p, { protocolVersion: 5 });
    rc.send(
      Buffer.concat([
        gen(connectPacket("held", 5, { username: "u", password: Buffer.from("pw") })),
        gen({ cmd: "publish", topic: "boom/held", payload: "x", qos: 1, messageId: 5 }),
      ]),
    );
    assert.equal((await rc.next("connack")).reasonCode, 0);
    assert.equal((await rc.next("disconnect")).reasonCode, 0x80);
    await rc.closed;
    assert.equal(tb.lines.filter((l) => /forced failure/.test(l)).length, 1);
    assert.ok(tb.lines.some((l) => /Client held .*internal error/.test(l)));
    await stillWorks(tb);
  } finally {
    await tb.stop();
  }
});

test("an error in a store callback is logged; the other acknowledgements of the commit still go out", async () => {
  const loc = mkdtempSync(join(dir, "store-"));
  const tb = await startEdged({ persistence: true, persistence_location: loc });
  try {
    const store = tb.broker.store!;
    store.afterCommit(() => {
      throw new Error("forced failure");
    });
    const c = await connect(tb);
    await c.publishAsync("after", "x", { qos: 1 });
    await until(() => tb.lines.some((l) => /forced failure/.test(l)), 3000, "the log line");
    await endAll(c);
    await stillWorks(tb);
  } finally {
    await tb.stop();
  }
});

test("an error while publishing a control handler's answer is logged as one line, not left as an unhandled rejection", async () => {
  const tb = await startEdged();
  const topic = "$CONTROL/test/v1";
  tb.broker.controls.set(topic, { topic, control: () => Promise.resolve(new Uint8Array([1])) });
  const publish = tb.broker.publish.bind(tb.broker);
  tb.broker.publish = (m) => {
    if (m.topic === `${topic}/response`) throw new Error("forced failure");
    return publish(m);
  };
  try {
    const c = await connect(tb);
    await c.publishAsync(topic, "{}", { qos: 1 });
    await until(() => tb.lines.some((l) => /forced failure/.test(l)), 3000, "the log line");
    assert.equal(tb.lines.filter((l) => /forced failure/.test(l)).length, 1);
    assert.ok(tb.lines.some((l) => /Control \$CONTROL\/test\/v1: request from .* failed/.test(l)));
    await endAll(c);
    await stillWorks(tb);
  } finally {
    await tb.stop();
  }
});

test("an error in a delivery that waited for an asynchronous read check is logged, not left unhandled", async () => {
  const tb = await startEdged();
  try {
    const c = await connect(tb);
    await c.subscribeAsync("boom/#", { qos: 0 });
    // An authorizer that answers later (as the http link does), and a delivery that fails.
    tb.broker.auth.canRead = () => Promise.resolve(true);
    const deliver = tb.broker.deliver.bind(tb.broker);
    tb.broker.deliver = (s, o) => {
      if (o.msg.topic.startsWith("boom/")) throw new Error("forced failure");
      return deliver(s, o);
    };
    const pub = await connect(tb);
    await pub.publishAsync("boom/live", "x", { qos: 1 });
    await until(() => tb.lines.some((l) => /forced failure/.test(l)), 3000, "the live log line");
    // A retained message sent after the same kind of check: the subscriber is closed, not the process.
    const publish = tb.broker.publish.bind(tb.broker);
    publish({
      topic: "kept/r",
      payload: new Uint8Array([1]),
      qos: 0,
      retain: true,
      expiresAt: 0,
      origin: "",
    });
    tb.broker.replayRetained = () => {
      throw new Error("forced failure");
    };
    const late = await rawOpen(tb.port, 5);
    late.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "kept/#", qos: 0 }] });
    await late.next("suback");
    assert.equal((await late.next("disconnect")).reasonCode, 0x80);
    assert.equal(tb.lines.filter((l) => /forced failure/.test(l)).length, 2);
    await endAll(c, pub);
  } finally {
    await tb.stop();
  }
});

test("midge serve's last resort: an error no handler caught is logged as one line and the process lives on", () => {
  const root = fileURLToPath(new URL("..", import.meta.url));
  const runtime = process.env.MIDGE_TEST_RUNTIME ?? ("Bun" in globalThis ? "bun" : "deno");
  const bin = join(root, "node_modules", ".bin", runtime);
  const script = join(dir, "escape.ts");
  const lastResort = join(root, "src", "sys", "last_resort.ts");
  const logMod = join(root, "src", "sys", "log.ts");
  writeFileSync(
    script,
    `import { installLastResort } from ${JSON.stringify(lastResort)};
import { Logger } from ${JSON.stringify(logMod)};
installLastResort(new Logger(["error"], { timestamp: false }));
setTimeout(() => { throw new Error("from a timer"); }, 1);
setTimeout(() => { Promise.reject(new Error("from a promise")); }, 5);
setTimeout(() => console.log("still running"), 50);
`,
  );
  const args = runtime === "deno" ? ["run", "-A", script] : [script];
  const r = spawnSync(bin, args, { encoding: "utf8", timeout: 30000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), "still running");
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 2, r.stderr);
  assert.match(lines[0], /Internal error.*Error: from a timer/);
  assert.match(lines[1], /Internal error.*Error: from a promise/);
});

// --- $SYS --------------------------------------------------------------------------------------

test("$SYS is closed to clients level by level: only $SYS/broker/connection/+/state is writable; $SYSTEM/x is ordinary", async () => {
  const tb = await startEdged();
  try {
    const watcher = await connect(tb, { protocolVersion: 5 });
    const seen = collect(watcher);
    await watcher.subscribeAsync("$SYSTEM/#", { qos: 1 });
    const rc = await rawOpen(tb.port, 5);
    let id = 0;
    const code = async (topic: string) => {
      rc.send({ cmd: "publish", topic, payload: "1", qos: 1, messageId: ++id, retain: true });
      const ack = await rc.next("puback");
      assert.equal(ack.messageId, id);
      return ack.reasonCode ?? 0;
    };
    for (
      const t of [
        "$SYS",
        "$SYS/x",
        "$SYS/broker/connection/a/b/state",
        "$SYS/broker/connection/a",
        "$SYS/broker/connection/a/state/x",
        "$SYS/broker/connection/a/status",
      ]
    ) {
      assert.equal(await code(t), 0x87, t);
    }
    // A bridge's notification (Mosquitto's exception), and a topic that only starts with "$SYS".
    assert.equal(await code("$SYS/broker/connection/peer/state"), 0x10);
    assert.equal(await code("$SYSTEM/foo"), 0);
    const [m] = await seen.next(1);
    assert.equal(m.topic, "$SYSTEM/foo");
    const kept = ["$SYS/broker/connection/peer/state", "$SYSTEM/foo"];
    assert.deepEqual(tb.broker.retained.match("$SYS/broker/connection/#", Date.now()).length, 1);
    for (const t of kept) assert.equal(tb.broker.retained.match(t, Date.now()).length, 1, t);
    assert.equal(tb.broker.retained.match("$SYS/x", Date.now()).length, 0);
    rc.close();
    await endAll(watcher);
  } finally {
    await tb.stop();
  }
});

test("a will into $SYS is not sent (as in Mosquitto); a bridge-state will is", async () => {
  const tb = await startEdged();
  try {
    const watcher = await connect(tb, { protocolVersion: 5 });
    const seen = collect(watcher);
    await watcher.subscribeAsync("$SYS/foo", { qos: 1 });
    await watcher.subscribeAsync("$SYS/broker/connection/+/state", { qos: 1 });
    const withWill = (topic: string) =>
      rawOpen(tb.port, 4, {
        clientId: `w${topic.length}`,
        will: { topic, payload: Buffer.from("gone"), qos: 1, retain: false },
      });
    const bad = await withWill("$SYS/foo");
    bad.close();
    await until(() => !tb.broker.sessions.has("w8"), 3000, "the first client to go");
    const good = await withWill("$SYS/broker/connection/c/state");
    good.close();
    const [m] = await seen.next(1);
    assert.equal(m.topic, "$SYS/broker/connection/c/state");
    assert.equal(seen.messages.length, 1);
    assert.ok(tb.lines.some((l) => /Will of w8 on \$SYS\/foo not sent/.test(l)));
    await endAll(watcher);
  } finally {
    await tb.stop();
  }
});

test("a bridge topic line whose prefix and pattern exceed 65,535 bytes is refused by the configuration check", () => {
  assert.match(
    bridgeTopicProblem(`${long(65530)} in 0 local/ ""`) ?? "",
    /exceed 65535 bytes/,
  );
  assert.equal(bridgeTopicProblem(`${long(65528)} in 0 local/ ""`), undefined);
});

// --- Sessions belong to their mount point -------------------------------------------------------

test("a session belongs to its listener's mount point: the same client id elsewhere neither resumes nor takes it over", async () => {
  const tb = await startEdged();
  try {
    const persistent = { clean: false, properties: { sessionExpiryInterval: 60 } };
    const plain = await rawOpen(tb.port, 5, { clientId: "same", ...persistent });
    plain.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "x/#", qos: 1 }] });
    await plain.next("suback");
    plain.close();
    await until(() => !tb.broker.sessions.get("same")?.connection, 3000, "the disconnect");
    const pub = await connect(tb);
    await pub.publishAsync("x/1", "queued", { qos: 1 });

    // The same id on the mount-point listener starts a session of its own.
    const mounted = await rawConnect(tb.mountPort, 5);
    mounted.send(connectPacket("same", 5, persistent));
    const ack = await mounted.next("connack");
    assert.equal(ack.reasonCode, 0);
    assert.equal(ack.sessionPresent, false);
    mounted.send({ cmd: "pingreq" });
    await mounted.next("pingresp");
    assert.deepEqual(mounted.packets.filter((p) => p.cmd === "publish"), []);

    // The plain session is still there, with its message, and the mounted client was not
    // taken over by its return.
    const back = await rawConnect(tb.port, 5);
    back.send(connectPacket("same", 5, persistent));
    const ack2 = await back.next("connack");
    assert.equal(ack2.sessionPresent, true);
    const m = await back.next("publish");
    assert.equal(m.topic, "x/1");
    assert.equal(String(m.payload), "queued");
    mounted.send({ cmd: "pingreq" });
    await mounted.next("pingresp");
    assert.equal(mounted.socket.destroyed, false);
    assert.equal(tb.broker.sessions.size, 3); // "same" twice and the publisher
    // The admin API tells them apart.
    const api = (path: string, q = "") =>
      adminRead(tb.broker, path.split("/").slice(1), new URLSearchParams(q));
    const listed = (api("/api/clients").body as { clients: { id: string; mount_point: string }[] })
      .clients.filter((c) => c.id === "same").map((c) => c.mount_point).sort();
    assert.deepEqual(listed, ["", MOUNT]);
    const subs = (q: string) =>
      (api("/api/clients/same/subscriptions", q).body as { count: number }).count;
    assert.equal(subs(""), 1);
    assert.equal(subs(`mount_point=${MOUNT}`), 0);
    for (const c of [mounted, back]) c.close();
    await endAll(pub);
  } finally {
    await tb.stop();
  }
});

test("sessions of the same client id on two mount points are both kept across a restart", async () => {
  const loc = mkdtempSync(join(dir, "store-"));
  const persistent = { clean: false, properties: { sessionExpiryInterval: 600 } };
  let tb = await startEdged({ persistence: true, persistence_location: loc });
  try {
    for (const port of [tb.port, tb.mountPort]) {
      const rc = await rawOpen(port, 5, { clientId: "twin", ...persistent });
      rc.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t/#", qos: 1 }] });
      await rc.next("suback");
      rc.close();
    }
    await until(() => tb.broker.connections.size === 0, 3000, "the disconnects");
    await tb.stop();
    tb = await startEdged({ persistence: true, persistence_location: loc });
    assert.equal(tb.broker.sessions.size, 2);
    const pub = await connect(tb);
    await pub.publishAsync("t/plain", "1", { qos: 1 });
    await pub.publishAsync("tenant/t/mounted", "2", { qos: 1 });
    for (const [port, topic] of [[tb.port, "t/plain"], [tb.mountPort, "t/mounted"]] as const) {
      const rc = await rawConnect(port, 5);
      rc.send(connectPacket("twin", 5, persistent));
      assert.equal((await rc.next("connack")).sessionPresent, true);
      assert.equal((await rc.next("publish")).topic, topic);
      rc.close();
    }
    await endAll(pub);
  } finally {
    await tb.stop();
  }
});

test("global_max_clients bounds the sessions, offline ones included: a new one is refused (v5 0x89, v3 no CONNACK), resuming is not", async () => {
  const tb = await startEdged({ global_max_clients: 2 });
  try {
    const persistent = { clean: false, properties: { sessionExpiryInterval: 600 } };
    const away = await rawOpen(tb.port, 5, { clientId: "away", ...persistent });
    away.close();
    await until(() => !tb.broker.sessions.get("away")?.connection, 3000, "the disconnect");
    const here = await rawOpen(tb.port, 4, { clientId: "here" });
    for (const version of [5, 4]) {
      const extra = await rawConnect(tb.port, version);
      extra.send(connectPacket(`extra${version}`, version));
      if (version === 5) assert.equal((await extra.next("connack")).reasonCode, 0x89);
      await extra.closed;
      if (version === 4) assert.deepEqual(extra.packets.map((p) => p.cmd), []);
    }
    assert.equal(tb.broker.sessions.size, 2);
    // The offline session can still come back.
    const back = await rawConnect(tb.port, 5);
    back.send(connectPacket("away", 5, persistent));
    const ack = await back.next("connack");
    assert.equal(ack.reasonCode, 0);
    assert.equal(ack.sessionPresent, true);
    for (const c of [here, back]) c.close();
  } finally {
    await tb.stop();
  }
});
