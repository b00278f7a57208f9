// Decode benchmark: Midge's WASM Decoder against mqtt-packet's parser on the same buffers.
// Run: bun bench/decode.ts   or   deno run -A bench/decode.ts   (build the WASM first:
// node scripts/build-wasm.mjs). Prints packets/s and MB/s per scenario and decoder.
import mqttPacket from "mqtt-packet";
import { Buffer } from "node:buffer";
import process from "node:process";
import { Decoder } from "../src/codec/decoder.ts";
import type { ProtocolVersion } from "../src/codec/types.ts";

interface Scenario {
  name: string;
  version: ProtocolVersion;
  /** The stream, already cut into socket-sized reads. */
  reads: Uint8Array[];
  packets: number;
  bytes: number;
}

const READ = 64 * 1024;

function scenario(
  name: string,
  version: ProtocolVersion,
  packets: Buffer[],
  reps: number,
): Scenario {
  const one = Buffer.concat(packets);
  const all = Buffer.alloc(one.length * reps);
  for (let i = 0; i < reps; i++) one.copy(all, i * one.length);
  const reads: Uint8Array[] = [];
  for (let i = 0; i < all.length; i += READ) reads.push(all.subarray(i, i + READ));
  return { name, version, reads, packets: packets.length * reps, bytes: all.length };
}

const gen = (p: any, v: ProtocolVersion) => mqttPacket.generate(p, { protocolVersion: v });

function small(): Scenario {
  // 1M QoS 0 PUBLISH, 20-byte topics, 10-byte payloads, a few distinct topics.
  const pk: Buffer[] = [];
  for (let i = 0; i < 10; i++) {
    pk.push(
      gen({ cmd: "publish", topic: `sensors/room${i}/temp`, payload: "21.5°C #" + i, qos: 0 }, 4),
    );
  }
  return scenario("1M small QoS 0 PUBLISH (v4, 64 KB reads)", 4, pk, 100_000);
}

function distinct(): Scenario {
  // 1M QoS 0 PUBLISH whose topics are all different (no topic-string cache hits), built by hand.
  const enc = new TextEncoder();
  const n = 1_000_000;
  const parts: Uint8Array[] = [];
  let size = 0;
  for (let i = 0; i < n; i++) {
    const topic = enc.encode(`sensors/dev${i}/temp`);
    const body = 2 + topic.length + 8;
    const p = new Uint8Array(2 + body);
    p.set([0x30, body, 0, topic.length]);
    p.set(topic, 4);
    p.set(enc.encode("21.5 C #"), 4 + topic.length);
    parts.push(p);
    size += p.length;
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  const reads: Uint8Array[] = [];
  for (let i = 0; i < all.length; i += READ) reads.push(all.subarray(i, i + READ));
  return {
    name: "1M QoS 0 PUBLISH, every topic distinct (v4)",
    version: 4,
    reads,
    packets: n,
    bytes: size,
  };
}

function mixed(): Scenario {
  const v = 5;
  const pk: Buffer[] = [
    gen({ cmd: "publish", topic: "a/b/c", payload: Buffer.alloc(32, 1), qos: 0 }, v),
    gen({
      cmd: "publish",
      topic: "devices/42/state",
      payload: Buffer.alloc(100, 2),
      qos: 1,
      messageId: 7,
      properties: {
        contentType: "application/json",
        messageExpiryInterval: 60,
        userProperties: { trace: "abc123" },
      },
    }, v),
    gen({ cmd: "puback", messageId: 7 }, v),
    gen({ cmd: "publish", topic: "q/2", payload: Buffer.alloc(64, 3), qos: 2, messageId: 8 }, v),
    gen({ cmd: "pubrel", messageId: 8 }, v),
    gen({
      cmd: "subscribe",
      messageId: 9,
      subscriptions: [{ topic: "x/#", qos: 1, nl: false, rap: false, rh: 0 }, {
        topic: "y/+/z",
        qos: 2,
        nl: true,
        rap: true,
        rh: 1,
      }],
    }, v),
    gen({ cmd: "unsubscribe", messageId: 10, unsubscriptions: ["x/#"] }, v),
    gen({ cmd: "pingreq" }, v),
  ];
  return scenario("mixed v5 stream (8 packet kinds, properties)", 5, pk, 50_000);
}

function kilobyte(): Scenario {
  const pk = [
    gen({
      cmd: "publish",
      topic: "bulk/data",
      payload: Buffer.alloc(1024, 7),
      qos: 1,
      messageId: 1,
    }, 4),
  ];
  return scenario("1 KB payload QoS 1 PUBLISH (v4)", 4, pk, 100_000);
}

function runOurs(s: Scenario): number {
  const d = new Decoder({ protocolVersion: s.version });
  let n = 0;
  for (const r of s.reads) {
    const res = d.push(r);
    if (res.error) throw new Error(res.error.message);
    n += res.packets.length;
  }
  return n;
}

function runTheirs(s: Scenario): number {
  const parser = mqttPacket.parser({ protocolVersion: s.version });
  let n = 0;
  parser.on("packet", () => n++);
  parser.on("error", (e: Error) => {
    throw e;
  });
  for (const r of s.reads) parser.parse(r as Buffer);
  return n;
}

/** CPU time of the process in ms (the machine is shared; wall time would count other jobs). */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Median and best CPU milliseconds over `rounds` runs. */
function measure(s: Scenario, fn: (s: Scenario) => number, rounds: number): [number, number] {
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = cpuMs();
    const n = fn(s);
    times.push(cpuMs() - t0);
    if (n !== s.packets) throw new Error(`decoded ${n} of ${s.packets}`);
  }
  times.sort((a, b) => a - b);
  return [times[Math.floor(rounds / 2)], times[0]];
}

const runtime = typeof (globalThis as any).Bun !== "undefined"
  ? `bun ${(globalThis as any).Bun.version}`
  : typeof (globalThis as any).Deno !== "undefined"
  ? `deno ${(globalThis as any).Deno.version.deno}`
  : `node ${(globalThis as any).process?.version}`;
const ROUNDS = 7;
console.log(`decode benchmark on ${runtime}: CPU time, median of ${ROUNDS} rounds (best)`);
const fmt = (x: number) => x >= 1e6 ? (x / 1e6).toFixed(2) + " M" : (x / 1e3).toFixed(0) + " k";
for (const make of [small, distinct, mixed, kilobyte]) {
  const s = make();
  console.log(`\n${s.name}: ${s.packets} packets, ${(s.bytes / 1e6).toFixed(1)} MB`);
  for (const [name, fn] of [["midge (wasm)", runOurs], ["mqtt-packet", runTheirs]] as const) {
    const [med, best] = measure(s, fn, ROUNDS);
    const rate = (ms: number) => fmt(s.packets / (ms / 1000));
    const mbs = (ms: number) => (s.bytes / 1e6 / (ms / 1000)).toFixed(0);
    console.log(
      `  ${name.padEnd(13)} ${rate(med)} packets/s (${rate(best)})  ${mbs(med)} MB/s (${
        mbs(best)
      })`,
    );
  }
}
