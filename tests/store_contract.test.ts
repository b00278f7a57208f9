/**
 * The contract every `Store` (src/store/types.ts) and every `RetainedStore`
 * (src/broker/retained.ts) keeps, one suite run against each implementation. To add one (the
 * cluster's KvRetained is one), add a factory to STORES or RETAINED_STORES.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Message } from "../src/broker/message.ts";
import { MemoryRetained, type RetainedStore } from "../src/broker/retained.ts";
import { StoredRetained } from "../src/broker/stored_retained.ts";
import type { Store } from "../src/store/types.ts";
import { SqliteStore } from "../src/store/sqlite.ts";
import { MemoryStore } from "../src/store/memory.ts";
import { ClusterNode } from "../src/cluster/node.ts";
import { KvRetained } from "../src/cluster/retained.ts";
import { CLUSTER_KEYS, defaults } from "../src/config/schema.ts";
import { silentLogger } from "../src/sys/log.ts";
import { type NatsCluster, startNatsCluster } from "./helpers/nats.ts";

/** A store under test: `reopen` gives the store that reads back what was written. */
interface StoreUnderTest {
  store: Store;
  reopen(): Store;
  cleanup(): void;
}

const STORES: Record<string, () => StoreUnderTest> = {
  sqlite: () => {
    const dir = mkdtempSync(join(tmpdir(), "midge-contract-"));
    const file = join(dir, "midge.db");
    let store: Store = new SqliteStore(file, "normal");
    return {
      store,
      reopen() {
        store.close();
        store = new SqliteStore(file, "normal");
        return store;
      },
      cleanup() {
        store.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
  memory: () => {
    const store = new MemoryStore();
    return { store, reopen: () => store, cleanup() {} };
  },
};

/** A retained store under test, started; `stop` ends it. */
const RETAINED_STORES: Record<string, () => Promise<RetainedStore>> = {
  memory: () => Promise.resolve(new MemoryRetained()),
  "memory, written through to a store": () =>
    Promise.resolve(new StoredRetained(new MemoryRetained(), () => new MemoryStore())),
  // The cluster's: a JetStream KV bucket behind a local index, on a real nats-server.
  "cluster KV": async () => {
    nats ??= startNatsCluster(1);
    const urls = (await nats).urls();
    const cfg = {
      ...defaults(CLUSTER_KEYS),
      node_id: `contract${++kvNodes}`,
      servers: urls,
      name: `c${kvNodes}`,
      replicas: 1,
    };
    const node = new ClusterNode(cfg, silentLogger);
    await node.start();
    const r = new KvRetained(node);
    await r.start();
    const stop = r.stop.bind(r);
    r.stop = () => {
      stop();
      void node.stop();
    };
    return r;
  },
};

/** The nats-server of the "cluster KV" retained store, started by its first test. */
let nats: Promise<NatsCluster> | undefined;
let kvNodes = 0;
after(async () => {
  if (nats) await (await nats).stop();
});

const text = new TextEncoder();

function msg(topic: string, payload: string, over: Partial<Message> = {}): Message {
  return {
    topic,
    payload: text.encode(payload),
    qos: 1,
    retain: true,
    expiresAt: 0,
    origin: "",
    ...over,
  };
}

const committed = (s: Store) => new Promise<boolean>((r) => s.afterCommit(r));

for (const [name, make] of Object.entries(STORES)) {
  test(`store contract (${name}): retained messages are set, replaced and deleted`, async () => {
    const t = make();
    try {
      t.store.setRetained(msg("a/1", "one"));
      t.store.setRetained(msg("a/2", "two"));
      t.store.setRetained(msg("a/1", "uno", { properties: { contentType: "text/plain" } }));
      t.store.deleteRetained("a/2");
      t.store.deleteRetained("never/there");
      assert.equal(await committed(t.store), true);
      const snap = t.reopen().load();
      assert.deepEqual(snap.retained.map((m) => [m.topic, new TextDecoder().decode(m.payload)]), [
        ["a/1", "uno"],
      ]);
      assert.equal(snap.retained[0].properties?.contentType, "text/plain");
    } finally {
      t.cleanup();
    }
  });

  test(`store contract (${name}): a session with its will, subscriptions, messages and QoS 2 ids reads back; deleting it removes them all`, async () => {
    const t = make();
    try {
      const s = t.store;
      const will = { topic: "w/t", payload: text.encode("bye"), qos: 1 as const, retain: false };
      s.saveSession({
        clientId: "c1",
        version: 5,
        expiryInterval: 3600,
        disconnectedAt: 1234,
        will,
        willDelay: 10,
        username: "alice",
      });
      s.saveSession({
        clientId: "c2",
        version: 4,
        expiryInterval: 60,
        disconnectedAt: 0,
        will: null,
        willDelay: 0,
      });
      const sub = { filter: "x/#", qos: 1 as const, nl: false, rap: true, rh: 0, subId: 7 };
      s.saveSubscription("c1", sub);
      s.saveSubscription("c1", { ...sub, filter: "y", qos: 0 });
      s.saveSubscription("c1", { ...sub, qos: 2 }); // replaces x/#
      s.deleteSubscription("c1", "y");
      const m = msg("x/1", "body", { retain: false });
      const q1 = s.addClientMessage("c1", { msg: m, qos: 1, retain: false, state: 0, packetId: 0 });
      const q2 = s.addClientMessage("c1", {
        msg: msg("x/2", "two"),
        qos: 2,
        retain: false,
        subIds: [7],
        state: 0,
        packetId: 0,
      });
      const q3 = s.addClientMessage("c1", { msg: m, qos: 1, retain: false, state: 0, packetId: 0 });
      assert.ok(q1 < q2 && q2 < q3, "sequence numbers keep the queue's order");
      s.updateClientMessage("c1", q2, 2, 42);
      s.deleteClientMessage("c1", q3, m);
      s.addIncomingQos2("c1", 5);
      s.addIncomingQos2("c1", 6);
      s.deleteIncomingQos2("c1", 5);
      s.addClientMessage("c2", { msg: m, qos: 1, retain: false, state: 0, packetId: 0 });
      assert.equal(await committed(s), true);

      const snap = t.reopen().load();
      const c1 = snap.sessions.find((x) => x.session.clientId === "c1")!;
      assert.equal(c1.session.version, 5);
      assert.equal(c1.session.expiryInterval, 3600);
      assert.equal(c1.session.disconnectedAt, 1234);
      assert.equal(c1.session.willDelay, 10);
      assert.equal(c1.session.username, "alice");
      assert.equal(c1.session.will?.topic, "w/t");
      assert.deepEqual([...c1.session.will!.payload], [...text.encode("bye")]);
      assert.deepEqual(c1.subscriptions.map((x) => [x.filter, x.qos, x.subId]), [["x/#", 2, 7]]);
      assert.deepEqual(
        c1.messages.map((x) => [x.seq, x.msg.topic, x.qos, x.state, x.packetId, x.subIds]),
        [[q1, "x/1", 1, 0, 0, undefined], [q2, "x/2", 2, 2, 42, [7]]],
      );
      assert.deepEqual(c1.incomingQos2, [6]);

      // A store is read back once after it is opened, before it is written to (as at start-up).
      const again = t.reopen();
      again.load();
      again.deleteSession("c1");
      assert.equal(await committed(again), true);
      const after = t.reopen().load();
      assert.deepEqual(after.sessions.map((x) => x.session.clientId), ["c2"]);
      assert.equal(after.sessions[0].messages.length, 1, "c2's message, sharing c1's body, stays");
      assert.equal(after.sessions[0].messages[0].msg.topic, "x/1");
    } finally {
      t.cleanup();
    }
  });

  test(`store contract (${name}): afterCommit answers true, in the order asked, after the writes before it`, async () => {
    const t = make();
    try {
      const order: number[] = [];
      t.store.setRetained(msg("o/1", "1"));
      t.store.afterCommit((ok) => order.push(ok ? 1 : -1));
      t.store.setRetained(msg("o/2", "2"));
      t.store.afterCommit((ok) => order.push(ok ? 2 : -2));
      await committed(t.store);
      assert.deepEqual(order, [1, 2]);
      assert.equal(t.store.load().retained.length, 2);
    } finally {
      t.cleanup();
    }
  });
}

for (const [name, make] of Object.entries(RETAINED_STORES)) {
  test(`retained store contract (${name}): one message per topic, replaced, cleared by an empty payload [MQTT-3.3.1-5][MQTT-3.3.1-10 v3.1.1][MQTT-3.3.1-6 v5]`, async () => {
    const r = await make();
    try {
      r.set(msg("t/a", "1"));
      r.set(msg("t/b", "22"));
      r.set(msg("t/a", "333"));
      await r.sync?.();
      assert.equal(r.size, 2);
      assert.deepEqual(r.match("t/a", Date.now()).map((m) => m.payload.length), [3]);
      r.set(msg("t/b", ""));
      await r.sync?.();
      assert.equal(r.size, 1);
      assert.deepEqual(r.match("t/b", Date.now()), []);
      assert.ok(r.bytes > 0);
    } finally {
      r.stop?.();
    }
  });

  test(`retained store contract (${name}): a filter matches with + and #, never $ topics from a wildcard, and not what expired [MQTT-4.7.2-1][MQTT-3.3.2-5 v5]`, async () => {
    const r = await make();
    try {
      const now = Date.now();
      r.set(msg("s/1/temp", "a"));
      r.set(msg("s/2/temp", "b"));
      r.set(msg("s/2/hum", "c"));
      r.set(msg("$SYS/x", "d"));
      r.set(msg("s/3/temp", "e", { expiresAt: now + 1000 }));
      await r.sync?.();
      const topics = (f: string, at = now) => r.match(f, at).map((m) => m.topic).sort();
      assert.deepEqual(topics("s/+/temp"), ["s/1/temp", "s/2/temp", "s/3/temp"]);
      assert.deepEqual(topics("s/2/#"), ["s/2/hum", "s/2/temp"]);
      assert.deepEqual(topics("#").includes("$SYS/x"), false);
      assert.deepEqual(topics("$SYS/#"), ["$SYS/x"]);
      assert.deepEqual(topics("s/+/temp", now + 2000), ["s/1/temp", "s/2/temp"]);
    } finally {
      r.stop?.();
    }
  });
}

test("retained messages written through to the persistent store: what is set is stored, an empty payload deletes it, $SYS is not stored, restored messages are not written again", async () => {
  const store = new MemoryStore();
  const r = new StoredRetained(new MemoryRetained(), () => store);
  r.set(msg("k/1", "one"));
  r.set(msg("k/2", "two"));
  r.set(msg("k/1", ""));
  r.set(msg("$SYS/broker/uptime", "5"));
  r.restored?.(msg("k/3", "from disk"));
  assert.equal(await committed(store), true);
  assert.deepEqual(store.load().retained.map((m) => m.topic), ["k/2"]);
  assert.deepEqual(r.match("#", Date.now()).map((m) => m.topic).sort(), ["k/2", "k/3"]);
  assert.equal(r.match("$SYS/#", Date.now()).length, 1);
});
