// Decoder fragmentation tests: the same stream, cut anywhere, decodes to the same packets.
import { test } from "node:test";
import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { Buffer } from "node:buffer";
import { Decoder } from "../src/codec/decoder.ts";
import type { Packet, ProtocolVersion } from "../src/codec/types.ts";

function mulberry32(seed: number): () => number {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const gen = (p: any, v: ProtocolVersion) => mqttPacket.generate(p, { protocolVersion: v });
const bytes = (n: number, seed: number) =>
  Buffer.from(Array.from({ length: n }, (_, i) => (i * seed + 7) & 255));

/** ~20 mixed packets: a v5 CONNECT first (the decoder starts at v4 and must switch), then v5. */
function v5Stream(): Buffer {
  const v = 5;
  return Buffer.concat([
    gen({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: 5,
      clientId: "frag-ü",
      clean: true,
      keepalive: 30,
      will: { topic: "w", payload: bytes(10, 3), qos: 1, retain: false },
      username: "u",
      password: Buffer.from("p"),
      properties: { sessionExpiryInterval: 60, userProperties: { k: "v" } },
    }, v),
    gen({ cmd: "connack", reasonCode: 0, sessionPresent: false }, v),
    gen({ cmd: "publish", topic: "a/b", payload: bytes(5, 1), qos: 0 }, v),
    gen({ cmd: "publish", topic: "温度/x", payload: bytes(300, 5), qos: 1, messageId: 1 }, v),
    gen({
      cmd: "publish",
      topic: "c",
      payload: Buffer.alloc(0),
      qos: 2,
      messageId: 2,
      retain: true,
      properties: { subscriptionIdentifier: [3, 200], contentType: "t", topicAlias: 2 },
    }, v),
    gen({ cmd: "puback", messageId: 1 }, v),
    gen({ cmd: "pubrec", messageId: 2, reasonCode: 0x10 }, v),
    gen({ cmd: "pubrel", messageId: 2, reasonCode: 0x92, properties: { reasonString: "r" } }, v),
    gen({ cmd: "pubcomp", messageId: 2 }, v),
    gen({
      cmd: "subscribe",
      messageId: 3,
      subscriptions: [
        { topic: "a/#", qos: 1, nl: true, rap: false, rh: 1 },
        { topic: "+/b", qos: 2, nl: false, rap: true, rh: 0 },
      ],
      properties: { subscriptionIdentifier: 7 },
    }, v),
    gen({ cmd: "suback", messageId: 3, granted: [1, 2] }, v),
    gen({ cmd: "unsubscribe", messageId: 4, unsubscriptions: ["a/#", "+/b"] }, v),
    gen({ cmd: "unsuback", messageId: 4, granted: [0, 0x11] }, v),
    gen({ cmd: "pingreq" }, v),
    gen({ cmd: "pingresp" }, v),
    gen({ cmd: "publish", topic: "big", payload: bytes(1000, 11), qos: 1, messageId: 5 }, v),
    gen({ cmd: "auth", reasonCode: 0x18, properties: { authenticationMethod: "m" } }, v),
    gen({ cmd: "publish", topic: "x", payload: bytes(1, 1), qos: 0, dup: false }, v),
    gen({ cmd: "pingreq" }, v),
    gen({ cmd: "disconnect", reasonCode: 0, properties: { reasonString: "bye" } }, v),
  ]);
}

/** A 3.1 stream: MQIsdp CONNECT, then QoS 1/2 flows and subscriptions. */
function v3Stream(): Buffer {
  const v = 3;
  return Buffer.concat([
    gen(
      { cmd: "connect", protocolId: "MQIsdp", protocolVersion: 3, clientId: "old", keepalive: 5 },
      v,
    ),
    gen({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "t/#", qos: 2 }] }, v),
    gen({ cmd: "publish", topic: "t/1", payload: bytes(200, 3), qos: 2, messageId: 2 }, v),
    gen({ cmd: "pubrel", messageId: 2 }, v),
    gen({ cmd: "pingreq" }, v),
    gen({ cmd: "unsubscribe", messageId: 3, unsubscriptions: ["t/#"] }, v),
    gen({ cmd: "disconnect" }, v),
  ]);
}

/** A cheap, exact fingerprint of a packet list (payload bytes included). */
function fp(packets: Packet[]): string {
  return JSON.stringify(
    packets,
    (_k, v) => v instanceof Uint8Array ? "b:" + Buffer.from(v).toString("base64") : v,
  );
}

function decodeChunks(chunks: Uint8Array[]): Packet[] {
  const d = new Decoder();
  const out: Packet[] = [];
  for (const c of chunks) {
    const r = d.push(c);
    assert.equal(r.error, undefined, r.error?.message ?? "");
    out.push(...r.packets);
  }
  assert.equal(d.buffered, 0);
  return out;
}

function randomChunks(buf: Uint8Array, rnd: () => number, max: number): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < buf.length;) {
    const n = Math.min(buf.length - i, 1 + Math.floor(rnd() * max));
    chunks.push(buf.subarray(i, i + n));
    i += n;
  }
  return chunks;
}

for (const [name, make, count] of [["v5", v5Stream, 20], ["3.1", v3Stream, 7]] as const) {
  test(`${name} stream: one buffer decodes ${count} packets`, () => {
    const all = decodeChunks([make()]);
    assert.equal(all.length, count);
  });

  test(`${name} stream: every single split point gives the same packets`, () => {
    const buf = make();
    const want = fp(decodeChunks([buf]));
    for (let i = 0; i <= buf.length; i++) {
      const got = fp(decodeChunks([buf.subarray(0, i), buf.subarray(i)]));
      if (got !== want) assert.equal(got, want, `split at ${i}`);
    }
  });

  test(`${name} stream: byte by byte and random small chunks give the same packets`, () => {
    const buf = make();
    const want = fp(decodeChunks([buf]));
    assert.equal(fp(decodeChunks(randomChunks(buf, () => 0, 1))), want);
    for (let seed = 1; seed <= 40; seed++) {
      const chunks = randomChunks(buf, mulberry32(seed), seed < 20 ? 8 : 64);
      assert.equal(fp(decodeChunks(chunks)), want, `seed ${seed}`);
    }
  });
}

test("a large packet fed in many small reads is accumulated, then decoded once", () => {
  const payload = bytes(300_000, 13); // remaining length takes 3 bytes
  const big = gen({ cmd: "publish", topic: "big/one", payload, qos: 1, messageId: 9 }, 4);
  const after = gen({ cmd: "pingreq" }, 4);
  const stream = Buffer.concat([after, big, after]);
  const d = new Decoder();
  const got: Packet[] = [];
  let maxBuffered = 0;
  for (let i = 0; i < stream.length; i += 1460) {
    const r = d.push(stream.subarray(i, i + 1460));
    assert.equal(r.error, undefined);
    got.push(...r.packets);
    maxBuffered = Math.max(maxBuffered, d.buffered);
  }
  assert.deepEqual(got.map((p) => p.cmd), ["pingreq", "publish", "pingreq"]);
  const p = got[1] as any;
  assert.equal(p.topic, "big/one");
  assert.equal(Buffer.compare(Buffer.from(p.payload), payload), 0);
  assert.ok(maxBuffered > 290_000);
  assert.equal(d.buffered, 0);
});

test("memory held for a partial packet follows the bytes received, not the announced length", () => {
  const d = new Decoder();
  // A PUBLISH header announcing ~200 MB, then 10 body bytes.
  const r = d.push(new Uint8Array([0x30, 0xff, 0xff, 0xff, 0x5f, 0, 1, 0x74, 1, 2, 3, 4, 5, 6, 7]));
  assert.deepEqual(r, { packets: [] });
  assert.equal(d.buffered, 15);
  assert.deepEqual(d.push(new Uint8Array(1000)), { packets: [] });
  assert.equal(d.buffered, 1015);
});

test("a split inside the remaining-length bytes and inside a tiny header", () => {
  const big = gen({ cmd: "publish", topic: "t", payload: bytes(20_000, 3), qos: 0 }, 4);
  for (let i = 0; i <= 5; i++) {
    for (let j = i; j <= 6; j++) {
      const got = decodeChunks([big.subarray(0, i), big.subarray(i, j), big.subarray(j)]);
      assert.equal(got.length, 1);
      assert.equal((got[0] as any).payload.length, 20_000);
    }
  }
});

test("more packets in one read than the packet table holds are all decoded in order", () => {
  const n = 10_000;
  const parts: Buffer[] = [];
  for (let i = 1; i <= n; i++) parts.push(gen({ cmd: "puback", messageId: i }, 4));
  const got = decodeChunks([Buffer.concat(parts)]);
  assert.equal(got.length, n);
  for (let i = 0; i < n; i++) assert.equal((got[i] as any).messageId, i + 1);
});

test("an empty read changes nothing", () => {
  const d = new Decoder();
  assert.deepEqual(d.push(new Uint8Array(0)), { packets: [] });
  assert.deepEqual(d.push(new Uint8Array([0xc0])), { packets: [] });
  assert.deepEqual(d.push(new Uint8Array(0)), { packets: [] });
  assert.deepEqual(d.push(new Uint8Array([0])), { packets: [{ cmd: "pingreq" }] });
});

test("decoders are independent: interleaved reads on two connections", () => {
  const a = new Decoder();
  const b = new Decoder({ protocolVersion: 5 });
  const pa = gen({ cmd: "publish", topic: "a", payload: bytes(100, 1), qos: 1, messageId: 1 }, 4);
  const pb = gen({
    cmd: "publish",
    topic: "b",
    payload: bytes(100, 2),
    qos: 1,
    messageId: 2,
    properties: { contentType: "x" },
  }, 5);
  assert.deepEqual(a.push(pa.subarray(0, 50)).packets, []);
  assert.deepEqual(b.push(pb.subarray(0, 20)).packets, []);
  const ra = a.push(pa.subarray(50));
  const rb = b.push(pb.subarray(20));
  assert.equal((ra.packets[0] as any).topic, "a");
  assert.equal((rb.packets[0] as any).topic, "b");
  assert.deepEqual((rb.packets[0] as any).properties, { contentType: "x" });
  assert.deepEqual((ra.packets[0] as any).payload, new Uint8Array(bytes(100, 1)));
});

test("payloads of mixed sizes in one read each get exactly their own bytes", () => {
  const rnd = mulberry32(5);
  const want: Buffer[] = [];
  const parts: Buffer[] = [];
  for (let i = 0; i < 600; i++) {
    const n = rnd() < 0.1 ? Math.floor(rnd() * 40_000) : Math.floor(rnd() * 3000);
    const payload = bytes(n, i + 1);
    want.push(payload);
    parts.push(
      gen({ cmd: "publish", topic: `t/${i % 7}`, payload, qos: i % 2, messageId: i + 1 }, 4),
    );
  }
  const stream = Buffer.concat(parts);
  for (const chunks of [[stream], randomChunks(stream, mulberry32(6), 70_000)]) {
    const got = decodeChunks(chunks);
    assert.equal(got.length, want.length);
    for (let i = 0; i < want.length; i++) {
      const p = got[i] as any;
      assert.equal(Buffer.compare(Buffer.from(p.payload), want[i]), 0, `payload ${i}`);
    }
  }
});
