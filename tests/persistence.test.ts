/** Persistence: what the broker acknowledged survives a restart. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { assembleBroker } from "../src/assemble.ts";
import { sessionKey } from "../src/broker/session.ts";
import { StoreError } from "../src/store/sqlite.ts";
import { silentLogger } from "../src/sys/log.ts";
import {
  collect,
  connect,
  connectCollect,
  endAll,
  sleep,
  type TestBroker,
  testConfig,
} from "./helpers/broker.ts";
import { connectPacket, rawConnect } from "./helpers/raw.ts";
import type { Config } from "../src/config/schema.ts";

/** A broker on a fresh data directory; `restart()` stops it and starts a new one on the same data. */
async function durableBroker(over: Partial<Config> = {}) {
  const dir = mkdtempSync(join(tmpdir(), "midge-persist-"));
  const cfg = testConfig({ persistence: true, persistence_location: dir, ...over });
  let broker = assembleBroker(cfg, silentLogger).broker;
  let [l] = await broker.start();
  const tb: TestBroker & { dir: string; restart(): Promise<void>; cleanup(): Promise<void> } = {
    broker,
    port: l.port,
    url: `mqtt://127.0.0.1:${l.port}`,
    dir,
    stop: () => broker.stop(),
    async restart() {
      await broker.stop();
      broker = assembleBroker(cfg, silentLogger).broker;
      [l] = await broker.start();
      tb.broker = broker;
      tb.port = l.port;
      tb.url = `mqtt://127.0.0.1:${l.port}`;
    },
    async cleanup() {
      await broker.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return tb;
}

test("retained messages survive a restart", async () => {
  const tb = await durableBroker();
  try {
    const pub = await connect(tb, { protocolVersion: 5 });
    await pub.publishAsync("keep/a", "A", {
      qos: 1,
      retain: true,
      properties: { contentType: "text/plain" },
    });
    await pub.publishAsync("keep/b", "B", { qos: 1, retain: true });
    await pub.publishAsync("keep/b", "", { qos: 1, retain: true });
    await endAll(pub);
    await tb.restart();
    const sub = await connect(tb, { protocolVersion: 5 });
    const got = collect(sub);
    await sub.subscribeAsync("keep/#", { qos: 1 });
    const [m] = await got.next(1);
    await sleep(100);
    assert.deepEqual(got.messages.map((x) => x.payload), ["A"]);
    assert.equal(m.packet.retain, true);
    assert.equal(m.packet.properties?.contentType, "text/plain");
    await endAll(sub);
  } finally {
    await tb.cleanup();
  }
});

test("a persistent session's subscriptions and queued QoS 1/2 messages survive a restart", async () => {
  const tb = await durableBroker();
  try {
    let sub = await connect(tb, { clientId: "durable", clean: false });
    await sub.subscribeAsync("work/#", { qos: 2 });
    await endAll(sub);
    await sleep(50);
    const pub = await connect(tb);
    for (let i = 0; i < 5; i++) {
      await pub.publishAsync("work/x", `job${i}`, { qos: (i % 2 + 1) as 1 | 2 });
    }
    await endAll(pub);
    await tb.restart();
    const r = await connectCollect(tb, { clientId: "durable", clean: false });
    sub = r.client;
    assert.equal(r.connack.sessionPresent, true);
    await r.got.next(5);
    // (MQTT.js hands QoS 2 messages over at PUBREL, so compare as a set.)
    assert.deepEqual(r.got.messages.map((m) => m.payload).sort(), [
      "job0",
      "job1",
      "job2",
      "job3",
      "job4",
    ]);
    // The subscription itself was restored: new messages arrive too.
    const pub2 = await connect(tb);
    await pub2.publishAsync("work/y", "after", { qos: 1 });
    const all = await r.got.next(6);
    assert.equal(all[5].payload, "after");
    await endAll(sub, pub2);
  } finally {
    await tb.cleanup();
  }
});

test("an unacknowledged QoS 1 message is resent with DUP and its packet id after a restart [MQTT-4.4.0-1]", async () => {
  const tb = await durableBroker();
  try {
    const first = await rawConnect(tb.port, 4);
    first.send(connectPacket("inflight", 4, { clean: false }));
    await first.next("connack");
    first.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "if", qos: 1 }] });
    await first.next("suback");
    const pub = await connect(tb);
    await pub.publishAsync("if", "unacked", { qos: 1 });
    const p1 = await first.next("publish");
    await endAll(pub);
    first.close();
    await tb.restart();
    const rc = await rawConnect(tb.port, 4);
    rc.send(connectPacket("inflight", 4, { clean: false }));
    assert.equal((await rc.next("connack")).sessionPresent, true);
    const p2 = await rc.next("publish");
    assert.equal(p2.dup, true);
    assert.equal(p2.messageId, p1.messageId);
    assert.equal(p2.payload.toString(), "unacked");
    rc.send({ cmd: "puback", messageId: p2.messageId });
    await sleep(50);
    rc.close();
  } finally {
    await tb.cleanup();
  }
});

test("incoming QoS 2 state survives a restart: a resent PUBLISH is not delivered twice [MQTT-4.3.3-10 v5]", async () => {
  const tb = await durableBroker();
  try {
    const sub = await connect(tb, { clientId: "q2sub", clean: false });
    await sub.subscribeAsync("q2", { qos: 2 });
    await endAll(sub);
    const rc = await rawConnect(tb.port, 4);
    rc.send(connectPacket("q2pub", 4, { clean: false }));
    await rc.next("connack");
    rc.send({ cmd: "publish", topic: "q2", payload: "once", qos: 2, messageId: 5 });
    await rc.next("pubrec");
    rc.close();
    await tb.restart();
    const rc2 = await rawConnect(tb.port, 4);
    rc2.send(connectPacket("q2pub", 4, { clean: false }));
    await rc2.next("connack");
    rc2.send({ cmd: "publish", topic: "q2", payload: "once", qos: 2, messageId: 5, dup: true });
    await rc2.next("pubrec");
    rc2.send({ cmd: "pubrel", messageId: 5 });
    await rc2.next("pubcomp");
    const r = await connectCollect(tb, { clientId: "q2sub", clean: false });
    await r.got.next(1);
    await sleep(200);
    assert.deepEqual(r.got.messages.map((m) => m.payload), ["once"]);
    rc2.close();
    await endAll(r.client);
  } finally {
    await tb.cleanup();
  }
});

test("session expiry keeps counting across a restart", async () => {
  const tb = await durableBroker();
  try {
    const c = await connect(tb, {
      protocolVersion: 5,
      clientId: "short",
      clean: false,
      properties: { sessionExpiryInterval: 1 },
    });
    await c.subscribeAsync("s/t", { qos: 1 });
    await endAll(c);
    await sleep(50);
    await tb.restart();
    assert.equal(tb.broker.sessions.has("short"), true, "restored");
    await sleep(1300);
    assert.equal(tb.broker.sessions.has("short"), false, "expired on time after the restart");
    await tb.restart();
    assert.equal(tb.broker.sessions.has("short"), false, "and gone from the store");
  } finally {
    await tb.cleanup();
  }
});

test("a corrupt database stops start-up with a message naming the file", async () => {
  const dir = mkdtempSync(join(tmpdir(), "midge-corrupt-"));
  try {
    writeFileSync(join(dir, "midge.db"), "this is not an SQLite database, just text ".repeat(200));
    const broker = assembleBroker(
      testConfig({ persistence: true, persistence_location: dir }),
      silentLogger,
    ).broker;
    await assert.rejects(() => broker.start(), (e: Error) => {
      assert.match(e.message, /midge\.db/);
      assert.match(e.message, /cannot open the persistence database/);
      return true;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a malformed row stops start-up with one line naming the file, the table and the row", async () => {
  const dir = mkdtempSync(join(tmpdir(), "midge-badrow-"));
  const file = join(dir, "midge.db");
  const cfg = testConfig({ persistence: true, persistence_location: dir });
  try {
    const first = assembleBroker(cfg, silentLogger).broker;
    await first.start();
    await first.stop();
    /** Start on the database after `sql`; the StoreError's message. */
    const startAfter = async (sql: string): Promise<string> => {
      const db = new DatabaseSync(file);
      db.exec(sql);
      db.close();
      const broker = assembleBroker(cfg, silentLogger).broker;
      let message = "";
      await assert.rejects(() => broker.start(), (e: Error) => {
        assert.ok(e instanceof StoreError, `a StoreError, not ${e.name}: ${e.message}`);
        message = e.message;
        return true;
      });
      await broker.stop();
      assert.ok(!message.includes("\n"), `one line: ${message}`);
      assert.ok(message.startsWith(file + ": "), message);
      return message;
    };
    let m = await startAfter(
      `INSERT INTO retained VALUES ('r/t', x'6869', 1, '{"userProperties":', 0, 'c')`,
    );
    assert.match(m, /table retained \(topic "r\/t"\)/);
    assert.match(m, /JSON/i);
    m = await startAfter(
      `DELETE FROM retained; INSERT INTO sessions VALUES ('ghost', 5, 300, 0, '[1,2]', 0, NULL)`,
    );
    assert.match(m, /table sessions \(client_id "ghost"\): will/);
    m = await startAfter(
      `DELETE FROM sessions; INSERT INTO messages VALUES (7, 't', x'00', 3, 0, NULL, 0, 'c')`,
    );
    assert.match(m, /table messages \(id 7\): qos 3/);
    // Once the rows are gone the broker starts.
    const db = new DatabaseSync(file);
    db.exec("DELETE FROM messages");
    db.close();
    const ok = assembleBroker(cfg, silentLogger).broker;
    await ok.start();
    await ok.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a session's subscriptions keep the listener's mount_point across a restart", async () => {
  const base = testConfig();
  const tb = await durableBroker({ listeners: [{ ...base.listeners[0], mount_point: "tenant/" }] });
  try {
    let sub = await connect(tb, { clientId: "mounted", clean: false });
    await sub.subscribeAsync("t/#", { qos: 1 });
    await endAll(sub);
    await tb.restart();
    const r = await connectCollect(tb, { clientId: "mounted", clean: false });
    sub = r.client;
    const pub = await connect(tb);
    await pub.publishAsync("t/x", "inside", { qos: 1 });
    const [m] = await r.got.next(1);
    assert.equal(m.topic, "t/x");
    assert.equal(
      // Sessions are kept per mount point (see sessionKey).
      tb.broker.sessions.get(sessionKey("tenant/", "mounted"))?.subscriptions.get("t/#")
        ?.topicFilter,
      "tenant/t/#",
    );
    await endAll(sub, pub);
  } finally {
    await tb.cleanup();
  }
});

test("a store that cannot commit (disk full): errors are counted and nothing is acknowledged as stored", async () => {
  const tb = await durableBroker();
  try {
    const store = tb.broker.store as import("../src/store/sqlite.ts").SqliteStore;
    const v5 = await connect(tb, { protocolVersion: 5 });
    await v5.publishAsync("fill/0", "x", { qos: 1, retain: true });
    store.limitPages(1); // the database is already larger: every further write fails
    const errorsBefore = store.stats.errors;
    // v5: the PUBACK carries 0x80 Unspecified error instead of success.
    await assert.rejects(
      v5.publishAsync("fill/1", "y".repeat(10000), { qos: 1, retain: true }),
      (e: { code?: number }) => e.code === 0x80,
    );
    assert.ok(store.stats.errors > errorsBefore, "commit errors counted");
    // v3.1.1 has no reason code: the connection is closed without a PUBACK (the client resends).
    const v3 = await connect(tb, { protocolVersion: 4 });
    const closed = new Promise<void>((r) => v3.once("close", () => r()));
    let acked = false;
    v3.publish("fill/2", "z".repeat(10000), { qos: 1, retain: true }, (err) => {
      if (!err) acked = true;
    });
    await closed;
    assert.equal(acked, false);
    await endAll(v5, v3);
  } finally {
    await tb.cleanup().catch(() => {});
  }
});
