/**
 * The pipelined JetStream publisher (src/cluster/js_publish.ts) against a real nats-server:
 * many stores in flight each resolve once stored, a repeated message id is stored once, and an
 * error acknowledgement, a subject no stream captures (no responder) and a missing answer each
 * reject, so that the fabric retries; a store passed over by a later acknowledgement rejects at
 * once.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import { type NatsCluster, startNatsCluster } from "./helpers/nats.ts";
import { JetStreamPublisher, PASSED_OVER_MS } from "../src/cluster/js_publish.ts";

let nats: NatsCluster;
let nc: NatsConnection;
before(async () => {
  nats = await startNatsCluster(1);
  nc = await connect({ servers: nats.urls() });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "jp", subjects: ["jp.>"], max_msg_size: 1024 });
});
after(async () => {
  await nc?.close();
  await nats?.stop();
});

test("JetStream publisher: 2000 stores in flight at once all resolve, each stored once", async () => {
  const p = new JetStreamPublisher(nc);
  try {
    const data = new Uint8Array(64);
    await Promise.all(
      Array.from({ length: 2000 }, (_, i) => p.publish(`jp.a.${i % 7}`, data, `a-${i}`)),
    );
    // The same ids again: de-duplicated by the stream, still acknowledged.
    await Promise.all(Array.from({ length: 10 }, (_, i) => p.publish("jp.a.0", data, `a-${i}`)));
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info("jp");
    assert.equal(info.state.messages, 2000);
    assert.equal(p.pending, 0);
  } finally {
    p.stop();
  }
});

test("JetStream publisher: an error acknowledgement, no stream for the subject and no answer in time reject", async () => {
  const p = new JetStreamPublisher(nc, 300);
  const silent = nc.subscribe("quiet.>", { callback: () => {} });
  try {
    await nc.flush();
    await assert.rejects(p.publish("jp.big", new Uint8Array(4096), "big-1"), /size|maximum/i);
    await assert.rejects(
      p.publish("nostream.x", new Uint8Array(8), "n-1"),
      /no JetStream responder/,
    );
    // Someone listens but never answers: the store times out.
    await assert.rejects(p.publish("quiet.x", new Uint8Array(8), "q-1"), /timeout/);
    assert.equal(p.pending, 0);
  } finally {
    silent.unsubscribe();
    p.stop();
  }
});

test("JetStream publisher: stop() fails the stores still waiting", async () => {
  const p = new JetStreamPublisher(nc, 60_000);
  const silent = nc.subscribe("quiet2.>", { callback: () => {} });
  try {
    await nc.flush();
    const waiting = p.publish("quiet2.x", new Uint8Array(8), "s-1");
    await nc.flush();
    p.stop();
    await assert.rejects(waiting, /stopped/);
  } finally {
    silent.unsubscribe();
  }
});

test("JetStream publisher: a store left unanswered rejects at once when one sent later is acknowledged (its stream leader died), not at its time-out", async () => {
  const p = new JetStreamPublisher(nc, 60_000);
  // A stream's stand-in that answers only stores whose first byte is 1, in order as JetStream
  // does; the others are lost as if their leader had been killed.
  const fake = nc.subscribe("fake.>", {
    callback: (_e, m) => {
      if (m.data[0] === 1) m.respond(new TextEncoder().encode('{"stream":"f","seq":1}'));
    },
  });
  try {
    await nc.flush();
    const lost = p.publish("fake.x", new Uint8Array([0]), "l-1");
    const outcome = lost.then(() => "stored", (e: Error) => e.message);
    await new Promise((r) => setTimeout(r, PASSED_OVER_MS + 200));
    await p.publish("fake.x", new Uint8Array([1]), "l-2");
    const first = await Promise.race([
      outcome,
      new Promise((r) => setTimeout(() => r("still waiting"), 10_000)),
    ]);
    assert.match(String(first), /later store was acknowledged/);
    assert.equal(p.pending, 0);
  } finally {
    fake.unsubscribe();
    p.stop();
  }
});
