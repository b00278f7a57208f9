/**
 * The envelope a message travels in between nodes, and batches of them: what is encoded comes
 * back, a batch splits into its envelopes in order, and a batch cut short is refused.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  decodeEnvelope,
  encodeBatch,
  encodeEnvelope,
  envelopeNode,
  isBatch,
  splitBatch,
} from "../src/cluster/envelope.ts";
import type { Message } from "../src/broker/message.ts";

function message(i: number): Message {
  return {
    topic: `a/${i}`,
    payload: new TextEncoder().encode(`payload ${i}`),
    qos: 0,
    retain: false,
    expiresAt: i % 2 ? 1_900_000_000_000 : 0,
    origin: i % 3 ? `client-${i}` : "",
    properties: i % 4 === 0
      ? { contentType: "text/plain", userProperties: [["k", "v"]] }
      : undefined,
  };
}

test("cluster envelope: a batch holds its envelopes in order, each decodes to its message", () => {
  const parts = Array.from(
    { length: 5 },
    (_, i) => encodeEnvelope(message(i), 0xdeadbeef, i, true),
  );
  for (const p of parts) {
    assert.equal(isBatch(p), false, "an envelope is not a batch");
    assert.equal(envelopeNode(p), 0xdeadbeef);
  }
  const batch = encodeBatch(parts, parts.reduce((n, p) => n + p.length, 0));
  assert.equal(isBatch(batch), true);
  const back = splitBatch(batch).map((e) => decodeEnvelope(e, null));
  assert.deepEqual(back.map((e) => e.seq), [0, 1, 2, 3, 4]);
  for (const [i, e] of back.entries()) {
    const m = message(i);
    assert.equal(e.node, 0xdeadbeef);
    assert.equal(e.msg.topic, m.topic);
    assert.deepEqual([...e.msg.payload], [...m.payload]);
    assert.equal(e.msg.expiresAt, m.expiresAt);
    assert.equal(e.msg.origin, m.origin);
    assert.deepEqual(e.msg.properties, m.properties);
  }
});

test("cluster envelope: a batch cut short is refused, not read past its end", () => {
  const parts = [encodeEnvelope(message(1), 7, 1, true), encodeEnvelope(message(2), 7, 2, true)];
  const batch = encodeBatch(parts, parts[0].length + parts[1].length);
  for (const cut of [batch.length - 1, batch.length - parts[1].length, 3]) {
    assert.throws(() => splitBatch(batch.subarray(0, cut)), /truncated/);
  }
  assert.equal(envelopeNode(new Uint8Array(3)), 0, "too short to name a node");
});
