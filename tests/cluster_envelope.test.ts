/**
 * The envelope a message travels in between nodes, and batches of them: what is encoded comes
 * back, a batch splits into its envelopes in order (built whole or in a reused buffer), and a
 * batch cut short is refused.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  BatchWriter,
  DecodeCache,
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

test("cluster envelope: a batch written in a reused buffer is the batch of the same envelopes; a lone one is the envelope itself", () => {
  const w = new BatchWriter();
  const msgs = Array.from({ length: 7 }, (_, i) => message(i % 3 === 0 ? 0 : i));
  const parts = msgs.map((m, i) => encodeEnvelope(m, 9, i, true));
  msgs.forEach((m, i) => w.add(m, 9, i));
  assert.equal(w.count, 7);
  assert.deepEqual(
    [...w.take()],
    [...encodeBatch(parts, parts.reduce((n, p) => n + p.length, 0))],
  );
  assert.equal(w.count, 0);
  w.add(msgs[1], 9, 1);
  assert.deepEqual([...w.take()], [...parts[1]], "one message: its envelope");
  // take(true): all but the last go, the last starts the next batch.
  w.add(msgs[2], 9, 2);
  w.add(msgs[3], 9, 3);
  w.add(msgs[4], 9, 4);
  const first = splitBatch(w.take(true)).map((e) => decodeEnvelope(e, null).seq);
  assert.deepEqual(first, [2, 3]);
  assert.equal(w.count, 1);
  assert.deepEqual([...w.take()], [...parts[4]]);
  // A large message grows the buffer; what follows is still right.
  const big = { ...message(5), payload: new Uint8Array(300_000).fill(7) };
  w.add(big, 9, 5);
  w.add(msgs[6], 9, 6);
  const two = splitBatch(w.take()).map((e) => decodeEnvelope(e, null));
  assert.equal(two[0].msg.payload.length, 300_000);
  assert.equal(two[1].seq, 6);
});

test("cluster envelope: decoding with a cache gives the same messages when topics and origins repeat or change", () => {
  const cache = new DecodeCache();
  for (const i of [1, 1, 2, 2, 2, 3, 1, 0, 0]) {
    const m = message(i);
    const e = decodeEnvelope(encodeEnvelope(m, 3, i, true), null, cache);
    assert.equal(e.msg.topic, m.topic);
    assert.equal(e.msg.origin, m.origin);
  }
});
