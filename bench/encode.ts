// PUBLISH encoding throughput: our encoder, the prepared fan-out path, and mqtt-packet.
//
//   bun bench/encode.ts            deno run -A bench/encode.ts
//   MIDGE_BENCH_N=200000 bun bench/encode.ts      (fewer packets per case; default 1,000,000)
//
// Cases: 16-byte and 1 KB payloads, MQTT 3.1.1 and MQTT 5 with a couple of properties
// (Message Expiry Interval and one User Property). Each case encodes N PUBLISH packets:
//   encode        encode(packet) per packet, a fresh Uint8Array each (what a one-off send costs)
//   encodeInto    encodeInto(packet) into a reused outgoing buffer (no allocation per packet)
//   fan-out 16    preparePublish once per message, writePrepared to 16 receivers with their own
//                 packet ids, into a reused outgoing buffer (N packets = N/16 messages)
//   mqtt-packet   mqttPacket.generate(packet) (a Buffer per packet)
// Then a WASM experiment (why the encoder is TypeScript): a tiny AssemblyScript PUBLISH encoder
// (source below, 300 bytes compiled with the project's asc flags) against encodeInto.
// Rates are packets per CPU-second of the process (user + system, so a shared machine skews
// them less than wall time would): median of 5 runs, the best run in parentheses.
// Performance is shown here, never by timed assertions in tests.
import process from "node:process";
import { Buffer } from "node:buffer";
import mqttPacket from "mqtt-packet";
import { encode, encodeInto, preparePublish, writePrepared } from "../src/codec/encoder.ts";
import type { ProtocolVersion, PublishPacket } from "../src/codec/types.ts";

const N = Number(process.env.MIDGE_BENCH_N ?? 1_000_000);
const FAN = 16;
const runtime = "Bun" in globalThis
  ? `bun ${(globalThis as any).Bun.version}`
  : "Deno" in globalThis
  ? `deno ${(globalThis as any).Deno.version.deno}`
  : `node ${process.version}`;

interface Case {
  name: string;
  version: ProtocolVersion;
  packet: PublishPacket;
  mqtt: Record<string, unknown>;
}

function makeCase(size: number, version: ProtocolVersion): Case {
  const payload = new Uint8Array(size).map((_, i) => 48 + (i % 10));
  const properties = version === 5
    ? {
      messageExpiryInterval: 3600,
      userProperties: [["origin", "sensor-7"]] as [string, string][],
    }
    : undefined;
  const packet: PublishPacket = {
    cmd: "publish",
    topic: "site/building-4/floor-2/room-17/temperature",
    payload,
    qos: 1,
    retain: false,
    dup: false,
    messageId: 1,
    properties,
  };
  const mqtt: Record<string, unknown> = {
    cmd: "publish",
    topic: packet.topic,
    payload: Buffer.from(payload),
    qos: 1,
    retain: false,
    dup: false,
    messageId: 1,
  };
  if (properties) {
    mqtt.properties = { messageExpiryInterval: 3600, userProperties: { origin: "sensor-7" } };
  }
  const name = `${size === 16 ? "16 B" : "1 KB"} v${version === 5 ? "5 +props" : "3.1.1"}`;
  return { name, version, packet, mqtt };
}

let sink = 0;

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Runs `fn(n)` (which must encode n packets) 5 times; [median, best] packets per CPU-second. */
function measure(fn: (n: number) => void, n: number): [number, number] {
  fn(Math.min(n, 50_000)); // warm-up, lets the JIT settle
  const rates: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = cpuMs();
    fn(n);
    rates.push(n / (Math.max(cpuMs() - t0, 0.001) / 1000));
  }
  rates.sort((a, b) => a - b);
  return [rates[2], rates[4]];
}

function runEncode(c: Case) {
  return (n: number) => {
    const p = c.packet;
    for (let i = 0; i < n; i++) {
      p.messageId = (i & 0xffff) || 1;
      sink += encode(p, c.version).length;
    }
  };
}

function runEncodeInto(c: Case) {
  const out = new Uint8Array(64 * 1024);
  return (n: number) => {
    const p = c.packet;
    let pos = 0;
    for (let i = 0; i < n; i++) {
      if (pos + 1200 > out.length) {
        sink += pos;
        pos = 0;
      }
      p.messageId = (i & 0xffff) || 1;
      pos = encodeInto(p, c.version, out, pos);
    }
    sink += pos;
  };
}

function runFanOut(c: Case) {
  const out = new Uint8Array(64 * 1024);
  return (n: number) => {
    const messages = Math.ceil(n / FAN);
    let pos = 0;
    let id = 1;
    for (let m = 0; m < messages; m++) {
      const prep = preparePublish(c.packet, c.version);
      for (let s = 0; s < FAN; s++) {
        if (pos + prep.bytes.length > out.length) {
          sink += pos;
          pos = 0;
        }
        pos = writePrepared(prep, id, out, pos);
        id = id === 65535 ? 1 : id + 1;
      }
    }
    sink += pos;
  };
}

function runMqttPacket(c: Case) {
  const opts = { protocolVersion: c.version };
  return (n: number) => {
    const p = c.mqtt;
    for (let i = 0; i < n; i++) {
      p.messageId = (i & 0xffff) || 1;
      sink += mqttPacket.generate(p as any, opts).length;
    }
  };
}

const cases = [makeCase(16, 4), makeCase(1024, 4), makeCase(16, 5), makeCase(1024, 5)];
const m = (x: number) => (x / 1e6).toFixed(2);
const fmt = ([med, best]: [number, number]) => `${m(med)} (${m(best)})`.padStart(14);

console.log(`PUBLISH encode, ${N.toLocaleString("en")} packets per case, ${runtime}`);
console.log("M packets per CPU-second, median (best) of 5 runs");
console.log(
  "case".padEnd(16) + "encode".padStart(14) + "encodeInto".padStart(15) +
    `fan-out ${FAN}`.padStart(15) + "mqtt-packet".padStart(15) + "  encode/mqtt-packet",
);
for (const c of cases) {
  // The fan-out and mqtt-packet paths must produce what encode() does.
  const want = encode({ ...c.packet, messageId: 7 }, c.version);
  const prep = preparePublish(c.packet, c.version);
  const got = new Uint8Array(prep.bytes.length);
  writePrepared(prep, 7, got, 0);
  const theirs = mqttPacket.generate({ ...c.mqtt, messageId: 7 } as any, {
    protocolVersion: c.version,
  });
  if (Buffer.compare(Buffer.from(want), Buffer.from(got)) !== 0) throw new Error("fan-out differs");
  if (Buffer.compare(Buffer.from(want), theirs) !== 0) throw new Error("mqtt-packet differs");

  const a = measure(runEncode(c), N);
  const b = measure(runEncodeInto(c), N);
  const f = measure(runFanOut(c), N);
  const mp = measure(runMqttPacket(c), Math.max(1, Math.floor(N / 4)));
  console.log(
    c.name.padEnd(16) + fmt(a) + " " + fmt(b) + " " + fmt(f) + " " + fmt(mp) +
      `  ${(a[0] / mp[0]).toFixed(1)}×`,
  );
}

// ---------------------------------------------------------------------------------------------
// WASM experiment. The module below is this AssemblyScript, compiled with
// `asc pub.ts --runtime stub -O3 --noAssert --enable simd,bulk-memory --initialMemory 32`:
//
//   const IN: usize = 1024; const OUT: usize = 1 << 20;
//   export function inPtr(): usize { return IN; }
//   export function outPtr(): usize { return OUT; }
//   export function encodePublish(topicLen: u32, payloadLen: u32, qos: u32, retain: u32,
//                                 id: u32): u32 {
//     let rem: u32 = 2 + topicLen + (qos > 0 ? 2 : 0) + payloadLen;
//     let p: usize = OUT;
//     store<u8>(p++, 0x30 | (qos << 1) | retain);
//     while (rem >= 128) { store<u8>(p++, (rem & 0x7f) | 0x80); rem >>= 7; }
//     store<u8>(p++, rem);
//     store<u8>(p++, topicLen >> 8); store<u8>(p++, topicLen & 0xff);
//     memory.copy(p, IN, topicLen); p += topicLen;
//     if (qos > 0) { store<u8>(p++, id >> 8); store<u8>(p++, id & 0xff); }
//     memory.copy(p, IN + topicLen, payloadLen); p += payloadLen;
//     return <u32>(p - OUT);
//   }
//
// It encodes only a v3.1.1 PUBLISH (no properties, no validation): the least a WASM encoder
// would do. The JS side must still put the topic and payload into WASM memory and take the
// packet out, which is where the time goes.

const PUB_WASM =
  "AGFzbQEAAAABDgJgAAF/YAV/f39/fwF/AwQDAAABBQMBACAHKwQFaW5QdHIAAQZvdXRQdHIAAA1lbmNvZGVQdWJsaXNoAAIGbWVtb3J5AgAK2QEDBwBBgIDAAAsFAEGACAvIAQECfyAAQQJqQQJBACACG2ogAWohBkGBgMAAIQVBgIDAACACQQF0QTByIANyOgAAA0AgBkGAAU8EQCAFIgNBAWohBSADIAZB/wBxQYABcjoAACAGQQd2IQYMAQsLIAUgBjoAACAFIABBCHY6AAEgBUECaiIDIAA6AAAgA0EBaiIDQYAIIAD8CgAAIAAgA2ohBSACBEAgBSAEQQh2OgAAIAUiAkECaiEFIAIgBDoAAQsgBSAAQYAIaiAB/AoAACABIAVqQYCAQGoL";

function runWasmExperiment() {
  const code = Uint8Array.from(atob(PUB_WASM), (ch) => ch.charCodeAt(0));
  const x = new WebAssembly.Instance(new WebAssembly.Module(code), {}).exports as any;
  const u8 = new Uint8Array((x.memory as WebAssembly.Memory).buffer);
  const IN: number = x.inPtr();
  const OUT: number = x.outPtr();
  const te = new TextEncoder();
  const out = new Uint8Array(64 * 1024);
  console.log("\nWASM experiment: v3.1.1 PUBLISH QoS 1, M packets per CPU-second");
  console.log(
    "payload".padEnd(9) + "TS encodeInto".padStart(15) + "WASM copy-in+out".padStart(18) +
      "WASM copy-in".padStart(15) + "WASM call only".padStart(16),
  );
  for (const size of [16, 1024]) {
    const c = makeCase(size, 4);
    const topic = c.packet.topic;
    const payload = c.packet.payload;
    // Same bytes as ours.
    const tl = te.encodeInto(topic, u8.subarray(IN)).written;
    u8.set(payload, IN + tl);
    const len = x.encodePublish(tl, size, 1, 0, 7);
    const want = encode({ ...c.packet, messageId: 7 }, 4);
    if (Buffer.compare(Buffer.from(want), Buffer.from(u8.subarray(OUT, OUT + len))) !== 0) {
      throw new Error("WASM experiment differs");
    }
    const ts = measure(runEncodeInto(c), N);
    // Full job: topic and payload in, packet out into the connection's buffer.
    const full = measure((n) => {
      let pos = 0;
      for (let i = 0; i < n; i++) {
        if (pos + 1200 > out.length) {
          sink += pos;
          pos = 0;
        }
        const t = te.encodeInto(topic, u8.subarray(IN)).written;
        u8.set(payload, IN + t);
        const k = x.encodePublish(t, size, 1, 0, (i & 0xffff) || 1);
        out.set(u8.subarray(OUT, OUT + k), pos);
        pos += k;
      }
      sink += pos;
    }, N);
    // As if the socket could write straight from WASM memory: topic (ASCII loop) and payload in.
    const inOnly = measure((n) => {
      for (let i = 0; i < n; i++) {
        let p = IN;
        for (let j = 0; j < topic.length; j++) u8[p++] = topic.charCodeAt(j);
        u8.set(payload, p);
        sink += x.encodePublish(topic.length, size, 1, 0, (i & 0xffff) || 1);
      }
    }, N);
    // Lower bound: everything already inside WASM memory.
    const callOnly = measure((n) => {
      for (let i = 0; i < n; i++) sink += x.encodePublish(tl, size, 1, 0, (i & 0xffff) || 1);
    }, N);
    console.log(
      (size === 16 ? "16 B" : "1 KB").padEnd(9) + fmt(ts).padStart(15) +
        fmt(full).padStart(18) + fmt(inOnly).padStart(15) + fmt(callOnly).padStart(16),
    );
  }
}
runWasmExperiment();
if (sink === 42) console.log(""); // keep the results alive
