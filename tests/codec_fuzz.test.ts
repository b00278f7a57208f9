// Seeded fuzz of the decoder: real packets mutated (bit flips, truncation, length-byte changes,
// splices, random bytes). The decoder must never throw, must answer with packets or an error
// whose reason code is known, must give the same answer however the bytes are cut, and must
// keep working after a successful read.
import { test } from "node:test";
import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { Buffer } from "node:buffer";
import { Decoder } from "../src/codec/decoder.ts";
import type { DecodeResult, Packet, ProtocolVersion } from "../src/codec/types.ts";

function mulberry32(seed: number): () => number {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const KNOWN_REASONS = new Set([0x81, 0x82, 0x83, 0x84, 0x90, 0x95]);
const CMDS = new Set([
  "connect",
  "connack",
  "publish",
  "puback",
  "pubrec",
  "pubrel",
  "pubcomp",
  "subscribe",
  "suback",
  "unsubscribe",
  "unsuback",
  "pingreq",
  "pingresp",
  "disconnect",
  "auth",
]);

function corpus(v: ProtocolVersion): Buffer[] {
  const g = (p: any) => mqttPacket.generate(p, { protocolVersion: v });
  const v5 = v === 5;
  const props = (p: any) => (v5 ? p : undefined);
  const list: any[] = [
    {
      cmd: "connect",
      protocolId: v === 3 ? "MQIsdp" : "MQTT",
      protocolVersion: v,
      clientId: "fuzz-ü",
      clean: true,
      keepalive: 10,
      will: {
        topic: "w/t",
        payload: Buffer.from("bye"),
        qos: 1,
        retain: true,
        properties: props({ willDelayInterval: 3, contentType: "c" }),
      },
      username: "user",
      password: Buffer.from("pw"),
      properties: props({
        sessionExpiryInterval: 9,
        receiveMaximum: 5,
        userProperties: { a: "b" },
      }),
    },
    {
      cmd: "connack",
      returnCode: 0,
      reasonCode: 0,
      sessionPresent: true,
      properties: props({ assignedClientIdentifier: "x", maximumQoS: 1, serverKeepAlive: 5 }),
    },
    { cmd: "publish", topic: "a/b/c", payload: Buffer.from("hello world"), qos: 0 },
    {
      cmd: "publish",
      topic: "温度/ü",
      payload: Buffer.alloc(200, 7),
      qos: 1,
      messageId: 10,
      properties: props({
        subscriptionIdentifier: [1, 300],
        topicAlias: 4,
        correlationData: Buffer.from([1, 2]),
        responseTopic: "r",
        userProperties: { k: ["v1", "v2"] },
      }),
    },
    { cmd: "publish", topic: "q2", payload: Buffer.from("x"), qos: 2, messageId: 11, retain: true },
    { cmd: "puback", messageId: 10, reasonCode: v5 ? 0x10 : undefined },
    { cmd: "pubrec", messageId: 11 },
    { cmd: "pubrel", messageId: 11, properties: props({ reasonString: "r" }), reasonCode: 0 },
    { cmd: "pubcomp", messageId: 11 },
    {
      cmd: "subscribe",
      messageId: 12,
      subscriptions: [
        { topic: "a/#", qos: 1, nl: v5, rap: v5, rh: v5 ? 2 : 0 },
        { topic: "+/x", qos: 2 },
      ],
      properties: props({ subscriptionIdentifier: 5 }),
    },
    { cmd: "suback", messageId: 12, granted: [1, 2, 128] },
    { cmd: "unsubscribe", messageId: 13, unsubscriptions: ["a/#", "+/x"] },
    { cmd: "unsuback", messageId: 13, granted: v5 ? [0, 0x11] : undefined },
    { cmd: "pingreq" },
    { cmd: "pingresp" },
    {
      cmd: "disconnect",
      reasonCode: v5 ? 0x04 : undefined,
      properties: props({ reasonString: "d" }),
    },
  ];
  if (v5) list.push({ cmd: "auth", reasonCode: 0x18, properties: { authenticationMethod: "m" } });
  return list.map((p) => g(p));
}

const CORPUS: Record<number, Buffer[]> = { 3: corpus(3), 4: corpus(4), 5: corpus(5) };

/** One mutated input built from the corpus. */
function mutate(rnd: () => number, v: ProtocolVersion): Uint8Array {
  const pick = () => CORPUS[v][Math.floor(rnd() * CORPUS[v].length)];
  const n = 1 + Math.floor(rnd() * 4);
  const parts: Buffer[] = [];
  for (let i = 0; i < n; i++) parts.push(pick());
  const b = new Uint8Array(Buffer.concat(parts));
  const at = () => Math.floor(rnd() * b.length);
  switch (Math.floor(rnd() * 7)) {
    case 0: // bit flips
      for (let i = 1 + Math.floor(rnd() * 3); i > 0; i--) b[at()] ^= 1 << Math.floor(rnd() * 8);
      return b;
    case 1: // truncation
      return b.subarray(0, at());
    case 2: { // remaining-length byte of the first packet
      b[1] = Math.floor(rnd() * 256);
      return b;
    }
    case 3: { // splice two inputs at random points
      const other = Buffer.concat([pick(), pick()]);
      const cut = Math.floor(rnd() * other.length);
      return new Uint8Array(Buffer.concat([b.subarray(0, at()), other.subarray(cut)]));
    }
    case 4: // random byte overwrites
      for (let i = 1 + Math.floor(rnd() * 4); i > 0; i--) b[at()] = Math.floor(rnd() * 256);
      return b;
    case 5: { // random bytes
      const r = new Uint8Array(Math.floor(rnd() * 40));
      for (let i = 0; i < r.length; i++) r[i] = Math.floor(rnd() * 256);
      return r;
    }
    default: { // duplicate or drop a range
      const i = at(), j = Math.min(b.length, i + Math.floor(rnd() * 8));
      return rnd() < 0.5
        ? new Uint8Array(Buffer.concat([b.subarray(0, j), b.subarray(i)]))
        : new Uint8Array(Buffer.concat([b.subarray(0, i), b.subarray(j)]));
    }
  }
}

function checkPacket(p: Packet): void {
  assert.ok(CMDS.has(p.cmd), `cmd ${p.cmd}`);
  if (p.cmd === "publish") {
    assert.ok(p.qos >= 0 && p.qos <= 2);
    assert.ok(!/[+#\0]/.test(p.topic), "topic name without wildcards or NUL");
    assert.ok(p.payload instanceof Uint8Array);
    if (p.qos > 0) assert.ok((p.messageId ?? 0) > 0);
  }
  if (p.cmd === "subscribe") assert.ok(p.subscriptions.length > 0);
  if (p.cmd === "unsubscribe") assert.ok(p.unsubscriptions.length > 0);
}

interface Outcome {
  packets: string;
  error?: string;
  buffered: number;
}

/** Feeds `chunks`, checking every result; returns a comparable outcome. */
function run(d: Decoder, chunks: Uint8Array[]): Outcome {
  const packets: Packet[] = [];
  let last: DecodeResult = { packets: [] };
  for (const c of chunks) {
    last = d.push(c);
    assert.ok(Array.isArray(last.packets));
    for (const p of last.packets) checkPacket(p);
    packets.push(...last.packets);
    if (last.error) break;
  }
  if (last.error) {
    assert.ok(KNOWN_REASONS.has(last.error.reasonCode), `reason ${last.error.reasonCode}`);
    assert.equal(typeof last.error.message, "string");
    assert.ok(last.error.message.length > 0);
  }
  const json = JSON.stringify(packets, (_k, v) => v instanceof Uint8Array ? [...v].join(",") : v);
  return {
    packets: json,
    error: last.error && `${last.error.reasonCode} ${last.error.message}`,
    buffered: last.error ? 0 : d.buffered,
  };
}

for (const v of [3, 4, 5] as ProtocolVersion[]) {
  test(`fuzz v${v}: mutated packets never throw, errors are known, cuts do not matter`, () => {
    const rnd = mulberry32(0xc0dec + v);
    const cases = 4000;
    let errors = 0;
    let decoded = 0;
    for (let i = 0; i < cases; i++) {
      const input = mutate(rnd, v);
      const maxPacketSize = rnd() < 0.1 ? 1 + Math.floor(rnd() * 300) : undefined;
      const whole = run(new Decoder({ protocolVersion: v, maxPacketSize }), [input]);
      // The same bytes in 2-4 pieces give the same outcome.
      const cuts = [0, input.length];
      for (let k = Math.floor(rnd() * 3) + 1; k > 0; k--) {
        cuts.push(Math.floor(rnd() * input.length));
      }
      cuts.sort((a, b) => a - b);
      const pieces = cuts.slice(1).map((c, k) => input.subarray(cuts[k], c));
      const d = new Decoder({ protocolVersion: v, maxPacketSize });
      const cut = run(d, pieces);
      assert.deepEqual(cut, whole, `case ${i} (${Buffer.from(input).toString("hex")})`);
      if (whole.error) {
        errors++;
        // A dead decoder keeps answering with its error, without throwing.
        const again = d.push(new Uint8Array([0xc0, 0]));
        assert.deepEqual(again.packets, []);
        assert.equal(`${again.error?.reasonCode} ${again.error?.message}`, whole.error);
      } else {
        decoded++;
        const after = d.push(new Uint8Array([0xc0, 0]));
        if (cut.buffered === 0) {
          assert.equal(after.error, undefined);
          assert.deepEqual(after.packets, [{ cmd: "pingreq" }]);
        } else {
          assert.ok(Array.isArray(after.packets));
        }
      }
    }
    // The corpus mutations reach both outcomes.
    assert.ok(errors > cases / 10, `errors ${errors}`);
    assert.ok(decoded > cases / 10, `decoded ${decoded}`);
  });
}

test("fuzz: long runs of random bytes on one decoder never throw", () => {
  const rnd = mulberry32(7);
  for (let run = 0; run < 200; run++) {
    const d = new Decoder({ protocolVersion: (3 + (run % 3)) as ProtocolVersion });
    for (let k = 0; k < 20; k++) {
      const b = new Uint8Array(Math.floor(rnd() * 64));
      for (let i = 0; i < b.length; i++) b[i] = Math.floor(rnd() * 256);
      const r = d.push(b);
      if (r.error) {
        assert.ok(KNOWN_REASONS.has(r.error.reasonCode));
        break;
      }
    }
  }
});
