/**
 * Delivery edges: a shared subscription gives each message to a member that may read it, and a
 * resumed session resends no more than the client's Receive Maximum at once.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { collect, connect, endAll, startBroker, type TestBroker, until } from "./helpers/broker.ts";
import { type AnyPacket, connectPacket, type RawClient, rawConnect } from "./helpers/raw.ts";

const dir = mkdtempSync(join(tmpdir(), "midge-delivery-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("a shared subscription passes over a member the acl_file does not let read the topic (MQTT 5.0 §4.8.2)", async () => {
  const acl = join(dir, "acl");
  writeFileSync(
    acl,
    "user reader\ntopic read jobs/#\n\nuser partial\ntopic read jobs/public/#\n\nuser boss\ntopic write jobs/#\n",
  );
  const tb = await startBroker({ acl_file: acl, allow_anonymous: true });
  try {
    const reader = await connect(tb, { protocolVersion: 5, username: "reader" });
    const partial = await connect(tb, { protocolVersion: 5, username: "partial" });
    const gotReader = collect(reader);
    const gotPartial = collect(partial);
    // Both may subscribe: "partial" can read part of what the filter matches.
    await reader.subscribeAsync("$share/g/jobs/#", { qos: 1 });
    await partial.subscribeAsync("$share/g/jobs/#", { qos: 1 });
    const boss = await connect(tb, { protocolVersion: 5, username: "boss" });
    for (let i = 0; i < 6; i++) await boss.publishAsync("jobs/secret", `s${i}`, { qos: 1 });
    // Every secret job reaches the one member that may read it; none is lost to round-robin.
    const got = await gotReader.next(6);
    assert.deepEqual(got.map((m) => m.payload), ["s0", "s1", "s2", "s3", "s4", "s5"]);
    assert.equal(gotPartial.messages.length, 0);
    // Topics both may read are still shared between them.
    for (let i = 0; i < 4; i++) await boss.publishAsync("jobs/public/x", `p${i}`, { qos: 1 });
    await until(
      () => gotReader.messages.length + gotPartial.messages.length === 10,
      3000,
      "the public jobs",
    );
    assert.equal(gotPartial.messages.length, 2);
    await endAll(reader, partial, boss);
  } finally {
    await tb.stop();
  }
});

/** The PUBLISH packets `rc` has received so far. */
const publishes = (rc: RawClient) => rc.packets.filter((p: AnyPacket) => p.cmd === "publish");

/** Everything the broker has sent before this point has arrived: a PINGREQ's answer follows it. */
async function drained(rc: RawClient): Promise<void> {
  rc.send({ cmd: "pingreq" });
  await rc.next("pingresp");
}

test("on resume, unacknowledged PUBLISH are resent only up to the new Receive Maximum; the rest as slots free [MQTT-3.3.4-9 v5]", async () => {
  const tb: TestBroker = await startBroker();
  try {
    const first = await rawConnect(tb.port, 5);
    first.send(
      connectPacket("slow", 5, { clean: false, properties: { sessionExpiryInterval: 60 } }),
    );
    await first.next("connack");
    first.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "r/#", qos: 1 }] });
    await first.next("suback");
    const pub = await connect(tb);
    for (let i = 0; i < 5; i++) await pub.publishAsync(`r/${i}`, `m${i}`, { qos: 1 });
    await until(() => publishes(first).length === 5, 3000, "five unacknowledged messages");
    const ids = publishes(first).map((p: AnyPacket) => p.messageId);
    first.close();
    await until(() => !tb.broker.sessions.get("slow")?.connection, 3000, "the disconnect");

    const again = await rawConnect(tb.port, 5);
    again.send(connectPacket("slow", 5, {
      clean: false,
      properties: { sessionExpiryInterval: 60, receiveMaximum: 2 },
    }));
    const ack = await again.next("connack");
    assert.equal(ack.sessionPresent, true);
    await drained(again);
    let got = publishes(again);
    assert.equal(got.length, 2, "no more than Receive Maximum at once");
    assert.deepEqual(got.map((p: AnyPacket) => [p.messageId, p.dup, String(p.payload)]), [
      [ids[0], true, "m0"],
      [ids[1], true, "m1"],
    ]);
    // Each acknowledgement lets exactly one more through, with its original packet id
    // [MQTT-4.4.0-1].
    for (let k = 0; k < 3; k++) {
      again.send({ cmd: "puback", messageId: got[k].messageId });
      await drained(again);
      got = publishes(again);
      assert.equal(got.length, 3 + k);
      assert.deepEqual([got[2 + k].messageId, got[2 + k].dup], [ids[2 + k], true]);
    }
    // A new message waits behind the resent ones and goes out once the window allows.
    await pub.publishAsync("r/new", "new", { qos: 1 });
    await drained(again);
    assert.equal(publishes(again).length, 5);
    again.send({ cmd: "puback", messageId: got[3].messageId });
    await again.next("publish");
    got = publishes(again);
    assert.equal(String(got[5].payload), "new");
    assert.equal(got[5].dup, false);
    assert.deepEqual(got.map((p: AnyPacket) => String(p.payload)), [
      "m0",
      "m1",
      "m2",
      "m3",
      "m4",
      "new",
    ]);
    again.close();
    await endAll(pub);
  } finally {
    await tb.stop();
  }
});

test("a message held back on resume that the client acknowledges anyway is not sent again", async () => {
  const tb = await startBroker();
  try {
    const first = await rawConnect(tb.port, 5);
    first.send(
      connectPacket("early", 5, { clean: false, properties: { sessionExpiryInterval: 60 } }),
    );
    await first.next("connack");
    first.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "e/#", qos: 1 }] });
    await first.next("suback");
    const pub = await connect(tb);
    for (let i = 0; i < 3; i++) await pub.publishAsync(`e/${i}`, `m${i}`, { qos: 1 });
    await until(() => publishes(first).length === 3, 3000, "three unacknowledged messages");
    const ids = publishes(first).map((p: AnyPacket) => p.messageId);
    first.close();
    await until(() => !tb.broker.sessions.get("early")?.connection, 3000, "the disconnect");

    const again = await rawConnect(tb.port, 5);
    again.send(connectPacket("early", 5, {
      clean: false,
      properties: { sessionExpiryInterval: 60, receiveMaximum: 1 },
    }));
    await again.next("connack");
    // The client had the third message already: it acknowledges it before it is resent.
    again.send({ cmd: "puback", messageId: ids[2] });
    await drained(again);
    assert.deepEqual(publishes(again).map((p: AnyPacket) => p.messageId), [ids[0]]);
    again.send({ cmd: "puback", messageId: ids[0] });
    await drained(again);
    again.send({ cmd: "puback", messageId: ids[1] });
    await drained(again);
    assert.deepEqual(publishes(again).map((p: AnyPacket) => p.messageId), [ids[0], ids[1]]);
    assert.equal(tb.broker.sessions.get("early")!.inflight.size, 0);
    again.close();
    await endAll(pub);
  } finally {
    await tb.stop();
  }
});
