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
