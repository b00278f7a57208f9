// Denial of service by subscriptions: what one client can make the broker hold with SUBSCRIBE
// (retained replays, subscription bytes) is bounded, and what it held is released and reused
// once it leaves. Counts and limits only; memory and CPU figures are in bench/.
import { test } from "node:test";
import assert from "node:assert/strict";
import { sleep, startBroker, type TestBroker, until } from "./helpers/broker.ts";
import { type AnyPacket, connectPacket, rawConnect } from "./helpers/raw.ts";
import { type Connection, SLOW_READER_BYTES } from "../src/broker/connection.ts";
import type { Session } from "../src/broker/session.ts";
import { collidingLevels } from "../bench/hashflood_keys.ts";

/** Store `count` retained QoS 0 messages of `size` bytes on topics r/0, r/1, … */
function retain(tb: TestBroker, count: number, size: number): void {
  for (let i = 0; i < count; i++) {
    tb.broker.publish({
      topic: `r/${i}`,
      payload: new Uint8Array(size).fill(i),
      qos: 0,
      retain: true,
      expiresAt: 0,
      origin: "",
    });
  }
}

/** A raw client logged in as `id`. */
async function rawSession(tb: TestBroker, id: string, version = 4) {
  const rc = await rawConnect(tb.port, version);
  rc.send(connectPacket(id, version));
  const ack = await rc.next("connack");
  assert.equal(version === 5 ? ack.reasonCode : ack.returnCode, 0);
  return rc;
}

test("retained replay to a client that never reads stays within the slow-reader bound and the queue limits [MQTT-3.8.4-3]", async () => {
  const tb = await startBroker({ max_queued_messages: 3, max_queued_bytes: 0 });
  try {
    const size = 512 * 1024;
    retain(tb, 12, size);
    const rc = await rawSession(tb, "never-reads");
    rc.socket.pause();
    // One small SUBSCRIBE listing "#" 30 times: formerly 30 × 12 × 512 KB = 184 MB written at once.
    rc.send({
      cmd: "subscribe",
      messageId: 1,
      subscriptions: Array.from({ length: 30 }, () => ({ topic: "#", qos: 0 })),
    });
    let s: Session | undefined;
    await until(
      () => (s = tb.broker.sessions.get("never-reads"))?.subscriptions.size === 1,
      5000,
      "SUBSCRIBE",
    );
    await sleep(200); // let writes and drains settle (the bounds below hold at every moment)
    const conn = s!.connection as Connection;
    const held = conn.socket.bufferedAmount;
    assert.ok(held <= SLOW_READER_BYTES + size + 64, `socket holds ${held} bytes`);
    assert.ok(s!.queue.length <= 3, `queue ${s!.queue.length}`);
    assert.equal(tb.broker.router.count, 1, "the 30 listings are one subscription");
    // Some of the 12 could be neither sent nor queued: dropped and counted, as Mosquitto does.
    assert.ok(tb.broker.stats.publishDropped > 0);
    // Once the client is gone, the broker holds nothing for it.
    rc.close();
    await until(
      () => tb.broker.sessions.size === 0 && tb.broker.connections.size === 0,
      5000,
      "close",
    );
    assert.equal(s!.queue.length, 0);
    assert.equal(s!.queuedBytes, 0);
    assert.equal(s!.subscriptions.size, 0);
    assert.equal(tb.broker.router.count, 0);
    assert.equal(tb.broker.retained.size, 12, "the retained messages themselves stay");
  } finally {
    await tb.stop();
  }
});

test("a filter listed many times in one SUBSCRIBE replays each retained message once [MQTT-3.8.4-3]", async () => {
  for (const version of [4, 5]) {
    const tb = await startBroker();
    try {
      retain(tb, 3, 10);
      const rc = await rawSession(tb, `dup${version}`, version);
      rc.send({
        cmd: "subscribe",
        messageId: 1,
        subscriptions: [
          ...Array.from({ length: 10 }, () => ({ topic: "r/#", qos: 1 })),
          ...Array.from({ length: 10 }, () => ({ topic: "r/+", qos: 0 })),
        ],
      });
      const ack = await rc.next("suback");
      assert.equal(ack.granted.length, 20);
      // A live message after the replays marks their end.
      rc.send({ cmd: "subscribe", messageId: 2, subscriptions: [{ topic: "end", qos: 0 }] });
      await rc.next("suback");
      tb.broker.publish({
        topic: "end",
        payload: new Uint8Array([1]),
        qos: 0,
        retain: false,
        expiresAt: 0,
        origin: "",
      });
      await until(() => rc.packets.some((p: AnyPacket) => p.topic === "end"), 5000, "end");
      const seen = rc.packets.filter((p: AnyPacket) => p.cmd === "publish" && p.topic !== "end")
        .map((p: AnyPacket) => p.topic);
      // Each retained message once per distinct filter ("r/#" and "r/+"), not once per listing.
      assert.deepEqual(seen.sort(), ["r/0", "r/0", "r/1", "r/1", "r/2", "r/2"], `v${version}`);
      assert.equal(tb.broker.router.count, 3);
      rc.close();
    } finally {
      await tb.stop();
    }
  }
});

test("the total bytes of one client's topic filters are bounded: SUBACK v5 0x97, v3.1.1 0x80 (max_subscription_bytes_per_client)", async () => {
  const tb = await startBroker({ max_subscription_bytes_per_client: 1000 });
  try {
    for (const version of [4, 5]) {
      const id = `bytes${version}`;
      const rc = await rawSession(tb, id, version);
      const f = (c: string) => `${c}/${"x".repeat(398)}`; // 400 bytes
      const sub = async (messageId: number, topics: string[]) => {
        rc.send({
          cmd: "subscribe",
          messageId,
          subscriptions: topics.map((topic) => ({ topic, qos: 1 })),
        });
        return (await rc.next("suback")).granted;
      };
      const refused = version === 5 ? 0x97 : 0x80;
      assert.deepEqual(await sub(1, [f("a"), f("b"), f("c")]), [1, 1, refused]);
      const s = tb.broker.sessions.get(id)!;
      assert.equal(s.subscriptionBytes, 800);
      // Subscribing again to a filter it holds replaces it and takes no more room [MQTT-3.8.4-3].
      assert.deepEqual(await sub(2, [f("a")]), [1]);
      assert.equal(s.subscriptionBytes, 800);
      // Room made by UNSUBSCRIBE can be used again.
      rc.send({ cmd: "unsubscribe", messageId: 3, unsubscriptions: [f("b")] });
      await rc.next("unsuback");
      assert.equal(s.subscriptionBytes, 400);
      assert.deepEqual(await sub(4, [f("c"), "short"]), [1, 1]);
      assert.equal(s.subscriptionBytes, 805);
      assert.equal(s.subscriptions.size, 3);
      rc.close();
    }
  } finally {
    await tb.stop();
  }
});

test("by default one client cannot hold 60 KB filters by the thousand (max_subscription_bytes_per_client 1 MiB)", async () => {
  const tb = await startBroker();
  try {
    assert.equal(tb.broker.config.max_subscription_bytes_per_client, 1048576);
    const rc = await rawSession(tb, "big-filters", 5);
    const granted: number[] = [];
    for (let i = 0; i < 24; i++) {
      rc.send({
        cmd: "subscribe",
        messageId: i + 1,
        subscriptions: [{ topic: `${i}/`.padEnd(60_000, "y"), qos: 0 }],
      });
      granted.push(...(await rc.next("suback")).granted);
    }
    // 17 × 60,000 bytes fit in 1 MiB; the rest are refused with Quota exceeded.
    assert.deepEqual(granted, [...Array(17).fill(0), ...Array(7).fill(0x97)]);
    const s = tb.broker.sessions.get("big-filters")!;
    assert.equal(s.subscriptionBytes, 17 * 60_000);
    assert.equal(tb.broker.router.count, 17);
    rc.close();
  } finally {
    await tb.stop();
  }
});

test("a subscription storm leaves nothing behind: the next storms reuse the memory the first one held", async () => {
  const tb = await startBroker({ max_packet_size: 4_000_000 });
  try {
    const after: (typeof tb.broker.router.held)[] = [];
    for (let round = 0; round < 4; round++) {
      const rc = await rawSession(tb, `storm${round}`, 5);
      // 50,000 filters in 10 SUBSCRIBEs, of lengths that change from round to round; 10,000 are
      // granted (max_subscriptions_per_client) and the rest refused with Quota exceeded.
      let granted = 0;
      for (let p = 0; p < 10; p++) {
        rc.send({
          cmd: "subscribe",
          messageId: p + 1,
          subscriptions: Array.from({ length: 5000 }, (_, i) => ({
            topic: `storm/${"l".repeat((i * 7 + round * 29) % 40)}/${p}/${i}/+/${
              "t".repeat(round * 5)
            }`,
            qos: 1,
          })),
        });
        const ack = await rc.next("suback", 20_000);
        granted += ack.granted.filter((g: number) => g === 1).length;
      }
      assert.equal(granted, 10_000);
      assert.equal(tb.broker.router.count, 10_000);
      rc.close();
      await until(() => tb.broker.sessions.size === 0, 10_000, "the session to end");
      assert.equal(tb.broker.router.count, 0);
      after.push(tb.broker.router.held);
    }
    // The trie is back to its root, and the WASM heap, its memory and the id slots stay where the
    // first storm left them.
    for (const h of after) assert.equal(h.nodes, 1);
    for (let r = 1; r < after.length; r++) assert.deepEqual(after[r], after[0], `round ${r}`);
  } finally {
    await tb.stop();
  }
});

test("subscriptions on level names that collide under an unkeyed hash make no long probe chains in the broker", async () => {
  const tb = await startBroker();
  try {
    const names = collidingLevels(5000);
    const clients = [];
    for (let c = 0; c < 3; c++) {
      const rc = await rawSession(tb, `flood${c}`, 4);
      rc.send({
        cmd: "subscribe",
        messageId: 1,
        subscriptions: names.map((n) => ({ topic: `f/${n}`, qos: 0 })),
      });
      const ack = await rc.next("suback", 20_000);
      assert.equal(ack.granted.filter((g: number) => g === 0).length, 5000);
      clients.push(rc);
    }
    assert.equal(tb.broker.router.count, 15_000);
    // The former hash put all 5,000 names in one chain; keyed, the longest probe stays short.
    assert.ok(
      tb.broker.router.longestProbe < 200,
      `longest probe ${tb.broker.router.longestProbe}`,
    );
    // A bystander is answered, and a message on one of the names reaches all three.
    const other = await rawSession(tb, "bystander", 4);
    other.send({ cmd: "pingreq" });
    await other.next("pingresp");
    tb.broker.publish({
      topic: `f/${names[1234]}`,
      payload: new Uint8Array([7]),
      qos: 0,
      retain: false,
      expiresAt: 0,
      origin: "",
    });
    for (const rc of clients) assert.equal((await rc.next("publish")).topic, `f/${names[1234]}`);
    for (const rc of [...clients, other]) rc.close();
  } finally {
    await tb.stop();
  }
});
