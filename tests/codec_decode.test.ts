// Decoder tests: differential against mqtt-packet for every packet type at protocol levels 3, 4
// and 5, and one test per validation rule, named with its conformance id.
import { test } from "node:test";
import assert from "node:assert/strict";
import mqttPacket from "mqtt-packet";
import { Buffer } from "node:buffer";
import { Decoder } from "../src/codec/decoder.ts";
import type { DecodeResult, Packet, ProtocolVersion } from "../src/codec/types.ts";

// ---------------------------------------------------------------------------------------------
// helpers

function mulberry32(seed: number): () => number {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");

function generate(p: any, v: ProtocolVersion): Buffer {
  return mqttPacket.generate(p, { protocolVersion: v });
}

/** mqtt-packet's parse of one buffer (throws on its error). */
function oracle(buf: Uint8Array, v: ProtocolVersion): any[] {
  const parser = mqttPacket.parser({ protocolVersion: v });
  const out: any[] = [];
  let err: Error | undefined;
  parser.on("packet", (p: any) => out.push(p));
  parser.on("error", (e: Error) => (err ??= e));
  parser.parse(Buffer.from(buf));
  if (err) throw err;
  return out;
}

function decode(buf: Uint8Array, v: ProtocolVersion): Packet[] {
  const r = new Decoder({ protocolVersion: v }).push(buf);
  assert.equal(r.error, undefined, r.error?.message ?? "");
  return r.packets;
}

/** User properties as mqtt-packet groups them: {key: value | value[]} in first-seen key order. */
function groupUserProps(pairs: [string, string][]): Record<string, string | string[]> {
  const o: Record<string, string | string[]> = {};
  for (const [k, v] of pairs) {
    const old = o[k];
    if (old === undefined) o[k] = v;
    else if (Array.isArray(old)) old.push(v);
    else o[k] = [old, v];
  }
  return o;
}

/** Canonical, comparable form of properties from either side. */
function canonProps(p: any, fromOracle: boolean): any {
  if (!p) return undefined;
  const out: any = {};
  for (const [k, v] of Object.entries(p)) {
    if (k === "userProperties") {
      out[k] = fromOracle ? { ...(v as object) } : groupUserProps(v as [string, string][]);
    } else if (typeof v === "boolean") out[k] = v ? 1 : 0;
    else if (v instanceof Uint8Array) out[k] = hex(v);
    else out[k] = v;
  }
  return out;
}

function clean(o: any): any {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}

/** Canonical form of a packet from mqtt-packet (`fromOracle`) or from our decoder. */
function canon(p: any, v: ProtocolVersion, fromOracle: boolean): any {
  const props = canonProps(p.properties, fromOracle);
  switch (p.cmd) {
    case "connect":
      return clean({
        cmd: p.cmd,
        protocolId: p.protocolId,
        protocolVersion: p.protocolVersion,
        bridgeMode: !!p.bridgeMode,
        clean: p.clean,
        keepalive: p.keepalive,
        clientId: p.clientId,
        will: p.will && clean({
          topic: p.will.topic,
          payload: hex(p.will.payload),
          qos: p.will.qos,
          retain: p.will.retain,
          properties: canonProps(p.will.properties, fromOracle),
        }),
        username: p.username,
        password: p.password && hex(p.password),
        properties: props,
      });
    case "connack":
      return clean({
        cmd: p.cmd,
        sessionPresent: p.sessionPresent,
        reasonCode: fromOracle && v < 5 ? p.returnCode : p.reasonCode,
        properties: props,
      });
    case "publish":
      return clean({
        cmd: p.cmd,
        topic: p.topic,
        payload: hex(p.payload),
        qos: p.qos,
        retain: p.retain,
        dup: p.dup,
        messageId: p.qos > 0 ? p.messageId : undefined,
        properties: props,
      });
    case "puback":
    case "pubrec":
    case "pubrel":
    case "pubcomp":
      return clean({
        cmd: p.cmd,
        messageId: p.messageId,
        reasonCode: v === 5 ? p.reasonCode : undefined,
        properties: props,
      });
    case "subscribe":
      return clean({
        cmd: p.cmd,
        messageId: p.messageId,
        subscriptions: p.subscriptions.map((s: any) => clean({ ...s })),
        properties: props,
      });
    case "suback":
      return clean({ cmd: p.cmd, messageId: p.messageId, granted: p.granted, properties: props });
    case "unsubscribe":
      return clean({
        cmd: p.cmd,
        messageId: p.messageId,
        unsubscriptions: p.unsubscriptions,
        properties: props,
      });
    case "unsuback":
      return clean({
        cmd: p.cmd,
        messageId: p.messageId,
        granted: v === 5 ? p.granted : undefined,
        properties: props,
      });
    case "disconnect":
    case "auth":
      return clean({
        cmd: p.cmd,
        reasonCode: v === 5 ? p.reasonCode : undefined,
        properties: props,
      });
    default:
      return { cmd: p.cmd };
  }
}

const buf = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
function oracleProps(p: any): any {
  if (!p) return undefined;
  const out: any = {};
  const bools = new Set([
    "payloadFormatIndicator",
    "requestProblemInformation",
    "requestResponseInformation",
    "retainAvailable",
    "wildcardSubscriptionAvailable",
    "subscriptionIdentifiersAvailable",
    "sharedSubscriptionAvailable",
  ]);
  for (const [k, v] of Object.entries(p)) {
    if (k === "userProperties") out[k] = groupUserProps(v as [string, string][]);
    else if (bools.has(k)) out[k] = v !== 0;
    else if (v instanceof Uint8Array) out[k] = buf(v);
    else out[k] = v;
  }
  return out;
}

/** Our packet in mqtt-packet's input shape, to generate it again. */
function toOracle(p: any, v: ProtocolVersion): any {
  const o: any = { ...p, properties: oracleProps(p.properties) };
  if (o.properties === undefined) delete o.properties;
  if (p.payload) o.payload = buf(p.payload);
  if (p.password) o.password = buf(p.password);
  if (p.will) {
    o.will = { ...p.will, payload: buf(p.will.payload) };
    if (p.will.properties) o.will.properties = oracleProps(p.will.properties);
  }
  if (p.cmd === "connack" && v < 5) o.returnCode = p.reasonCode;
  if (p.cmd === "connect" && !p.bridgeMode) delete o.bridgeMode;
  return o;
}

/** Generates `p` with mqtt-packet, decodes with both, compares, and re-generates our view. */
function differential(p: any, v: ProtocolVersion): void {
  const bytes = generate(p, v);
  const theirs = oracle(bytes, v);
  const ours = decode(bytes, v);
  assert.equal(ours.length, 1);
  assert.equal(theirs.length, 1);
  assert.deepEqual(canon(ours[0], v, false), canon(theirs[0], v, true), `${p.cmd} v${v}`);
  // Our view, generated again by mqtt-packet and parsed by it, gives the same fields.
  const again = oracle(generate(toOracle(ours[0], v), v), v);
  assert.deepEqual(canon(again[0], v, true), canon(theirs[0], v, true), `${p.cmd} v${v} again`);
}

// ---------------------------------------------------------------------------------------------
// v5 property catalogue (mqtt-packet input form) and random subsets of what each packet allows

const PROPS: Record<string, any> = {
  payloadFormatIndicator: true,
  messageExpiryInterval: 4321,
  contentType: "text/plain; charset=ü",
  responseTopic: "reply/to/ß",
  correlationData: Buffer.from([1, 2, 3, 0, 255]),
  subscriptionIdentifier: 268435455,
  sessionExpiryInterval: 0xffffffff,
  assignedClientIdentifier: "assigned-é",
  serverKeepAlive: 65535,
  authenticationMethod: "SCRAM-SHA-1",
  authenticationData: Buffer.from("auth-data"),
  requestProblemInformation: false,
  willDelayInterval: 77,
  requestResponseInformation: true,
  responseInformation: "response/info",
  serverReference: "other.example:1883",
  reasonString: "because ✓",
  receiveMaximum: 10,
  topicAliasMaximum: 20,
  topicAlias: 5,
  maximumQoS: 1,
  retainAvailable: false,
  userProperties: { a: "1", "ключ": ["x", "y", "z"], empty: "" },
  maximumPacketSize: 1 << 20,
  wildcardSubscriptionAvailable: true,
  subscriptionIdentifiersAvailable: false,
  sharedSubscriptionAvailable: true,
};

const ALLOWED: Record<string, string[]> = {
  connect: [
    "sessionExpiryInterval",
    "receiveMaximum",
    "maximumPacketSize",
    "topicAliasMaximum",
    "requestResponseInformation",
    "requestProblemInformation",
    "userProperties",
    "authenticationMethod",
    "authenticationData",
  ],
  will: [
    "willDelayInterval",
    "payloadFormatIndicator",
    "messageExpiryInterval",
    "contentType",
    "responseTopic",
    "correlationData",
    "userProperties",
  ],
  connack: [
    "sessionExpiryInterval",
    "receiveMaximum",
    "maximumQoS",
    "retainAvailable",
    "maximumPacketSize",
    "assignedClientIdentifier",
    "topicAliasMaximum",
    "reasonString",
    "userProperties",
    "wildcardSubscriptionAvailable",
    "subscriptionIdentifiersAvailable",
    "sharedSubscriptionAvailable",
    "serverKeepAlive",
    "responseInformation",
    "serverReference",
    "authenticationMethod",
    "authenticationData",
  ],
  publish: [
    "payloadFormatIndicator",
    "messageExpiryInterval",
    "topicAlias",
    "responseTopic",
    "correlationData",
    "userProperties",
    "subscriptionIdentifier",
    "contentType",
  ],
  ack: ["reasonString", "userProperties"],
  subscribe: ["subscriptionIdentifier", "userProperties"],
  unsubscribe: ["userProperties"],
  disconnect: ["sessionExpiryInterval", "reasonString", "userProperties", "serverReference"],
  auth: ["authenticationMethod", "authenticationData", "reasonString", "userProperties"],
};

/** Property sets for a packet kind: none, all, and `n` seeded random subsets. */
function propSets(kind: string, n: number, seed: number): (Record<string, any> | undefined)[] {
  const rnd = mulberry32(seed);
  const names = ALLOWED[kind];
  const all = Object.fromEntries(names.map((k) => [k, PROPS[k]]));
  const sets: (Record<string, any> | undefined)[] = [undefined, all];
  for (let i = 0; i < n; i++) {
    const s: Record<string, any> = {};
    for (const k of names) if (rnd() < 0.5) s[k] = PROPS[k];
    // §3.1.2.11.10: Authentication Data only comes with an Authentication Method.
    if (s.authenticationData && !s.authenticationMethod) delete s.authenticationData;
    sets.push(Object.keys(s).length ? s : undefined);
  }
  return sets;
}

const VERSIONS: ProtocolVersion[] = [3, 4, 5];
const bigPayload = Buffer.alloc(200_000, 0).map((_, i) => (i * 7) & 255) as Buffer;

// ---------------------------------------------------------------------------------------------
// differential tests

for (const v of VERSIONS) {
  const protocolId = v === 3 ? "MQIsdp" : "MQTT";

  test(`differential v${v}: CONNECT (will, credentials, clean, non-ASCII client id)`, () => {
    const base = { cmd: "connect", protocolId, protocolVersion: v, keepalive: 60 };
    const cases: any[] = [
      { ...base, clean: true, clientId: "c1" },
      { ...base, clean: false, clientId: "client-ü-温度", keepalive: 0 },
      { ...base, clean: true, clientId: "c2", username: "user", password: Buffer.from("pw") },
      { ...base, clean: true, clientId: "c3", username: "üser" },
    ];
    for (const qos of [0, 1, 2]) {
      for (const retain of [false, true]) {
        cases.push({
          ...base,
          clean: true,
          clientId: "w",
          will: { topic: "last/will/ö", payload: Buffer.from("gone"), qos, retain },
          username: "u",
          password: Buffer.from([0, 1, 2, 255]),
        });
      }
    }
    cases.push({
      ...base,
      clean: true,
      clientId: "big-will",
      will: { topic: "t", payload: Buffer.alloc(65535, 9), qos: 1, retain: false },
    });
    if (v === 5) {
      for (const props of propSets("connect", 12, 11)) {
        for (const wprops of propSets("will", 3, 12)) {
          const p: any = {
            ...base,
            clean: true,
            clientId: "props",
            will: { topic: "w/t", payload: Buffer.from("bye"), qos: 2, retain: true },
          };
          if (props) p.properties = props;
          if (wprops) p.will.properties = wprops;
          cases.push(p);
        }
      }
    }
    for (const c of cases) differential(c, v);
  });

  test(`differential v${v}: CONNACK`, () => {
    const cases: any[] = [];
    if (v < 5) {
      for (const returnCode of [0, 1, 2, 3, 4, 5]) {
        cases.push({ cmd: "connack", returnCode, sessionPresent: returnCode === 0 && v === 4 });
      }
    } else {
      for (const reasonCode of [0, 0x80, 0x84, 0x86, 0x87, 0x8c, 0x95, 0x9f]) {
        cases.push({ cmd: "connack", reasonCode, sessionPresent: false });
      }
      for (const props of propSets("connack", 20, 21)) {
        const p: any = { cmd: "connack", reasonCode: 0, sessionPresent: true };
        if (props) p.properties = props;
        cases.push(p);
      }
    }
    for (const c of cases) differential(c, v);
  });

  test(`differential v${v}: PUBLISH (QoS 0/1/2, retain, dup, empty and large payloads)`, () => {
    const cases: any[] = [];
    const topics = ["a", "sensors/room-1/temperature", "домой/温度/😀", "/leading/and/trailing/"];
    const payloads = [Buffer.alloc(0), Buffer.from("hello"), Buffer.from("ünïcödé"), bigPayload];
    let id = 1;
    for (const topic of topics) {
      for (const payload of payloads) {
        for (const qos of [0, 1, 2]) {
          for (const retain of [false, true]) {
            const p: any = { cmd: "publish", topic, payload, qos, retain, dup: qos > 0 && retain };
            if (qos) p.messageId = id++ * 251 % 65535 + 1;
            cases.push(p);
          }
        }
      }
    }
    cases.push({ cmd: "publish", topic: "x", payload: "", qos: 1, messageId: 65535 });
    if (v === 5) {
      for (const props of propSets("publish", 40, 31)) {
        const p: any = { cmd: "publish", topic: "p/q", payload: Buffer.from("v"), qos: 1 };
        p.messageId = 9;
        if (props) p.properties = props;
        cases.push(p);
      }
      cases.push({
        cmd: "publish",
        topic: "multi/sub/ids",
        payload: Buffer.from("x"),
        qos: 0,
        properties: { subscriptionIdentifier: [1, 127, 128, 16383, 16384, 268435455] },
      });
      cases.push({
        cmd: "publish",
        topic: "",
        payload: Buffer.from("aliased"),
        qos: 0,
        properties: { topicAlias: 3 },
      });
    }
    for (const c of cases) differential(c, v);
  });

  test(`differential v${v}: PUBACK, PUBREC, PUBREL, PUBCOMP`, () => {
    const cases: any[] = [];
    for (const cmd of ["puback", "pubrec", "pubrel", "pubcomp"]) {
      for (const messageId of [1, 42, 65535]) cases.push({ cmd, messageId });
      if (v === 5) {
        const codes = cmd === "puback" || cmd === "pubrec"
          ? [0, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]
          : [0, 0x92];
        for (const reasonCode of codes) cases.push({ cmd, messageId: 7, reasonCode });
        for (const props of propSets("ack", 6, 41)) {
          const p: any = { cmd, messageId: 8, reasonCode: codes[codes.length - 1] };
          if (props) p.properties = props;
          cases.push(p);
        }
      }
    }
    for (const c of cases) differential(c, v);
  });

  test(`differential v${v}: SUBSCRIBE (several filters${v === 5 ? ", options" : ""})`, () => {
    const cases: any[] = [];
    const filters = ["a/b", "sport/+/player1", "#", "домой/+/温度", "$share/g/x/#"];
    for (let n = 1; n <= filters.length; n++) {
      const subscriptions = filters.slice(0, n).map((topic, i) => {
        const s: any = { topic, qos: i % 3 };
        if (v === 5) {
          s.nl = i % 2 === 1 && !topic.startsWith("$share/");
          s.rap = i % 3 === 1;
          s.rh = i % 3;
        }
        return s;
      });
      cases.push({ cmd: "subscribe", messageId: n, subscriptions });
    }
    if (v === 5) {
      for (const props of propSets("subscribe", 6, 51)) {
        const p: any = {
          cmd: "subscribe",
          messageId: 77,
          subscriptions: [{ topic: "t/#", qos: 2, nl: true, rap: true, rh: 2 }],
        };
        if (props) p.properties = props;
        cases.push(p);
      }
    }
    for (const c of cases) differential(c, v);
  });

  test(`differential v${v}: SUBACK`, () => {
    const cases: any[] = [
      { cmd: "suback", messageId: 1, granted: [0] },
      { cmd: "suback", messageId: 2, granted: [0, 1, 2, 128] },
    ];
    if (v === 5) {
      cases.push({
        cmd: "suback",
        messageId: 3,
        granted: [0, 1, 2, 0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2],
      });
      for (const props of propSets("ack", 6, 61)) {
        const p: any = { cmd: "suback", messageId: 4, granted: [1, 2] };
        if (props) p.properties = props;
        cases.push(p);
      }
    }
    for (const c of cases) differential(c, v);
  });

  test(`differential v${v}: UNSUBSCRIBE and UNSUBACK`, () => {
    const cases: any[] = [
      { cmd: "unsubscribe", messageId: 5, unsubscriptions: ["a/b"] },
      { cmd: "unsubscribe", messageId: 6, unsubscriptions: ["a/+", "#", "ü/温度", "$share/g/t"] },
      { cmd: "unsuback", messageId: 7 },
    ];
    if (v === 5) {
      cases[2].granted = [0];
      cases.push({
        cmd: "unsuback",
        messageId: 8,
        granted: [0, 0x11, 0x80, 0x83, 0x87, 0x8f, 0x91],
      });
      for (const props of propSets("unsubscribe", 3, 71)) {
        const p: any = { cmd: "unsubscribe", messageId: 9, unsubscriptions: ["x"] };
        if (props) p.properties = props;
        cases.push(p);
      }
      for (const props of propSets("ack", 6, 72)) {
        const p: any = { cmd: "unsuback", messageId: 10, granted: [0, 0x11] };
        if (props) p.properties = props;
        cases.push(p);
      }
    }
    for (const c of cases) differential(c, v);
  });

  test(`differential v${v}: PINGREQ, PINGRESP, DISCONNECT${v === 5 ? ", AUTH" : ""}`, () => {
    const cases: any[] = [{ cmd: "pingreq" }, { cmd: "pingresp" }, { cmd: "disconnect" }];
    if (v === 5) {
      for (const reasonCode of [0, 0x04, 0x80, 0x81, 0x8e, 0x95, 0xa2]) {
        cases.push({ cmd: "disconnect", reasonCode });
      }
      for (const props of propSets("disconnect", 10, 81)) {
        const p: any = { cmd: "disconnect", reasonCode: 0x8b };
        if (props) p.properties = props;
        cases.push(p);
      }
      for (const reasonCode of [0, 0x18, 0x19]) {
        for (const props of propSets("auth", 6, 82 + reasonCode)) {
          const p: any = { cmd: "auth", reasonCode };
          if (props) p.properties = props;
          cases.push(p);
        }
      }
    }
    for (const c of cases) differential(c, v);
  });
}

test("CONNECT bridge bit (0x80 on the level) sets bridgeMode and keeps the version", () => {
  for (const v of VERSIONS) {
    const bytes = generate({
      cmd: "connect",
      protocolId: v === 3 ? "MQIsdp" : "MQTT",
      protocolVersion: v,
      clientId: "bridge",
      clean: true,
      keepalive: 10,
    }, v);
    const levelAt = bytes.indexOf(v === 3 ? "MQIsdp" : "MQTT") + (v === 3 ? 6 : 4);
    bytes[levelAt] |= 0x80;
    const [p] = decode(bytes, 4);
    assert.equal(p.cmd, "connect");
    if (p.cmd !== "connect") return;
    assert.equal(p.bridgeMode, true);
    assert.equal(p.protocolVersion, v);
    assert.equal(canon(p, v, false).bridgeMode, canon(oracle(bytes, v)[0], v, true).bridgeMode);
  }
});

test("user properties keep their wire order, duplicates included [MQTT-3.3.2-18 v5]", () => {
  // Built by hand: mqtt-packet groups equal keys, the wire may interleave them.
  const pairs: [string, string][] = [["a", "1"], ["b", "2"], ["a", "3"], ["ключ", "знач"]];
  const enc = new TextEncoder();
  const props: number[] = [];
  for (const [k, v] of pairs) {
    const kb = enc.encode(k), vb = enc.encode(v);
    props.push(
      0x26,
      kb.length >> 8,
      kb.length & 255,
      ...kb,
      vb.length >> 8,
      vb.length & 255,
      ...vb,
    );
  }
  const body = [0, 1, 0x74, props.length, ...props, 0x70];
  const [p] = decode(new Uint8Array([0x30, body.length, ...body]), 5);
  assert.deepEqual(p, {
    cmd: "publish",
    topic: "t",
    payload: new Uint8Array([0x70]),
    qos: 0,
    retain: false,
    dup: false,
    properties: { userProperties: pairs },
  });
});

test("a CONNECT switches the version for the packets after it in the same read", () => {
  const bytes = Buffer.concat([
    generate({ cmd: "connect", protocolId: "MQTT", protocolVersion: 5, clientId: "x" }, 5),
    generate({
      cmd: "publish",
      topic: "t",
      payload: Buffer.from("p"),
      qos: 1,
      messageId: 3,
      properties: { contentType: "c" },
    }, 5),
    generate({ cmd: "puback", messageId: 3, reasonCode: 0x10 }, 5),
  ]);
  const d = new Decoder();
  assert.equal(d.protocolVersion, 4);
  const r = d.push(bytes);
  assert.equal(r.error, undefined);
  assert.equal(d.protocolVersion, 5);
  assert.deepEqual(r.packets.map((p) => p.cmd), ["connect", "publish", "puback"]);
  assert.deepEqual((r.packets[1] as any).properties, { contentType: "c" });
  assert.equal((r.packets[2] as any).reasonCode, 0x10);
});

test("a client-side decoder set to v5 decodes CONNACK properties", () => {
  const d = new Decoder({ protocolVersion: 5 });
  const r = d.push(generate({
    cmd: "connack",
    reasonCode: 0,
    sessionPresent: true,
    properties: { assignedClientIdentifier: "auto-1", topicAliasMaximum: 10 },
  }, 5));
  assert.deepEqual(r.packets, [{
    cmd: "connack",
    sessionPresent: true,
    reasonCode: 0,
    properties: { assignedClientIdentifier: "auto-1", topicAliasMaximum: 10 },
  }]);
});

// ---------------------------------------------------------------------------------------------
// validation: one test per rule

/** A packet from its first byte and body (remaining length computed). */
function pkt(b0: number, ...parts: (number | number[] | string)[]): Uint8Array {
  const body: number[] = [];
  for (const p of parts) {
    if (typeof p === "number") body.push(p);
    else if (typeof p === "string") body.push(...new TextEncoder().encode(p));
    else body.push(...p);
  }
  const rl: number[] = [];
  let n = body.length;
  do {
    let b = n & 127;
    n >>= 7;
    if (n) b |= 128;
    rl.push(b);
  } while (n);
  return new Uint8Array([b0, ...rl, ...body]);
}
/** A two-byte-length string field. */
function s(x: string | number[]): number[] {
  const b = typeof x === "string" ? [...new TextEncoder().encode(x)] : x;
  return [b.length >> 8, b.length & 255, ...b];
}
/** CONNECT body with the given name, level, flags, then payload fields. */
function connect(level: number, flags: number, ...rest: (number | number[])[]): Uint8Array {
  const name = level === 3 ? "MQIsdp" : "MQTT";
  const props = level === 5 ? [0] : [];
  return pkt(0x10, s(name), level, flags, 0, 60, props, s("cid"), ...rest);
}

function fails(
  bytes: Uint8Array,
  version: ProtocolVersion,
  reasonCode: number,
  rule: string,
  opts: { maxPacketSize?: number } = {},
): DecodeResult {
  const r = new Decoder({ protocolVersion: version, ...opts }).push(bytes);
  assert.ok(r.error, `expected an error for ${rule}`);
  assert.equal(r.error.reasonCode, reasonCode, r.error.message);
  assert.ok(r.error.message.includes(rule), `message "${r.error.message}" names ${rule}`);
  return r;
}

function ok(bytes: Uint8Array, version: ProtocolVersion): Packet[] {
  const r = new Decoder({ protocolVersion: version }).push(bytes);
  assert.equal(r.error, undefined, r.error?.message ?? "");
  return r.packets;
}

test("[MQTT-1.5.5] remaining length longer than 4 bytes is malformed (0x81)", () => {
  fails(new Uint8Array([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), 4, 0x81, "§2.2.3");
  // Four bytes is the maximum and is accepted while the body is awaited.
  const r = new Decoder().push(new Uint8Array([0x30, 0xff, 0xff, 0xff, 0x7f]));
  assert.equal(r.error, undefined);
});

test("a field running past the remaining length is malformed (0x81)", () => {
  fails(pkt(0x30, [0, 10], "abc"), 4, 0x81, "past the end");
  fails(pkt(0x32, s("a/b"), 0), 4, 0x81, "past the end"); // packet id cut short
  fails(pkt(0x30, s("t"), [5, 0x26, 0, 1]), 5, 0x81, "past the end"); // property past the end
  fails(pkt(0x30, s("t"), [9, 1, 1]), 5, 0x81, "past the end"); // property length past the end
});

test("[MQTT-2.2.2-1 v3.1.1][MQTT-2.2.2-2 v3.1.1][MQTT-2.1.3-1 v5] reserved fixed header flags are malformed (0x81)", () => {
  for (const b0 of [0x11, 0x21, 0x41, 0x52, 0x78, 0x92, 0xb4, 0xc1, 0xd8, 0xe2]) {
    fails(new Uint8Array([b0, 0]), 4, 0x81, "[MQTT-2.2.2-1 v3.1.1]");
  }
  fails(new Uint8Array([0xf1, 0]), 5, 0x81, "[MQTT-2.2.2-1 v3.1.1]");
  // MQTT 3.1 set QoS/DUP on these; a 3.1 stream keeps working.
  assert.deepEqual(ok(new Uint8Array([0x62, 2, 0, 1, 0x6a, 2, 0, 2]), 3).length, 2);
});

test("[MQTT-3.6.1-1] PUBREL flags must be 0010", () => {
  fails(new Uint8Array([0x60, 2, 0, 1]), 4, 0x81, "[MQTT-3.6.1-1]");
  fails(new Uint8Array([0x60, 2, 0, 1]), 5, 0x81, "[MQTT-3.6.1-1]");
});

test("[MQTT-3.8.1-1] SUBSCRIBE flags must be 0010", () => {
  fails(pkt(0x80, 0, 1, s("a"), 0), 4, 0x81, "[MQTT-3.8.1-1]");
});

test("[MQTT-3.10.1-1] UNSUBSCRIBE flags must be 0010", () => {
  fails(pkt(0xa0, 0, 1, s("a")), 4, 0x81, "[MQTT-3.10.1-1]");
});

test("[MQTT-1.5.4-1 v5] ill-formed UTF-8 and surrogates are malformed (0x81)", () => {
  fails(pkt(0x30, s([0x61, 0xc3, 0x28])), 4, 0x81, "[MQTT-1.5.4-1 v5]"); // bad continuation
  fails(pkt(0x30, s([0xed, 0xa0, 0x80])), 4, 0x81, "[MQTT-1.5.4-1 v5]"); // U+D800
  fails(pkt(0x30, s([0xc0, 0xaf])), 4, 0x81, "[MQTT-1.5.4-1 v5]"); // overlong '/'
  fails(pkt(0x30, s([0xf4, 0x90, 0x80, 0x80])), 4, 0x81, "[MQTT-1.5.4-1 v5]"); // > U+10FFFF
  fails(pkt(0x30, s([0x61, 0xe2, 0x82])), 4, 0x81, "[MQTT-1.5.4-1 v5]"); // truncated sequence
  fails(connect(4, 0x82, s([0xff])), 4, 0x81, "[MQTT-1.5.4-1 v5]"); // user name
  // v5: inside a user property value.
  fails(
    pkt(0x30, s("t"), [9, 0x26, ...s("k"), ...s([0xed, 0xbf, 0xbf])]),
    5,
    0x81,
    "[MQTT-1.5.4-1 v5]",
  );
  // Valid 2-, 3- and 4-byte sequences pass.
  const [p] = ok(pkt(0x30, s("é/€/😀")), 4);
  assert.equal((p as any).topic, "é/€/😀");
});

test("[MQTT-1.5.4-2 v5] U+0000 in a string is malformed (0x81)", () => {
  fails(pkt(0x30, s([0x61, 0, 0x62])), 4, 0x81, "[MQTT-1.5.4-2 v5]");
  fails(pkt(0x30, s("abcdefghij\0klmnop")), 4, 0x81, "[MQTT-1.5.4-2 v5]"); // in the 8-byte path
  fails(pkt(0x10, s("MQTT"), 4, 2, 0, 60, s("c\0d")), 4, 0x81, "[MQTT-1.5.4-2 v5]");
});

test("[MQTT-3.3.2-2] wildcards in a PUBLISH topic: 0x81, v5 Topic Name invalid 0x90", () => {
  fails(pkt(0x30, s("a/+/b")), 4, 0x81, "[MQTT-3.3.2-2]");
  fails(pkt(0x30, s("a/b/c/d/e/f/#")), 3, 0x81, "[MQTT-3.3.2-2]");
  fails(pkt(0x30, s("a/+"), 0), 5, 0x90, "[MQTT-3.3.2-2]");
  fails(connect(4, 0x06, s("will/#"), s("m")), 4, 0x81, "[MQTT-3.3.2-2]");
});

test("[MQTT-3.3.1-4] PUBLISH QoS 3 is malformed (0x81)", () => {
  fails(pkt(0x36, s("t"), 0, 1), 4, 0x81, "[MQTT-3.3.1-4]");
  fails(pkt(0x36, s("t"), 0, 1, 0), 5, 0x81, "[MQTT-3.3.1-4]");
});

test("[MQTT-3.3.1-2] DUP on a QoS 0 PUBLISH is malformed (0x81)", () => {
  fails(pkt(0x38, s("t")), 4, 0x81, "[MQTT-3.3.1-2]");
  fails(pkt(0x38, s("t"), 0), 5, 0x81, "[MQTT-3.3.1-2]");
});

test("[MQTT-2.2.1-3 v5] packet identifier 0 is a protocol error (0x82); missing is malformed", () => {
  fails(pkt(0x32, s("t"), 0, 0), 4, 0x82, "[MQTT-2.2.1-3 v5]");
  fails(pkt(0x34, s("t"), 0, 0, 0), 5, 0x82, "[MQTT-2.2.1-3 v5]");
  fails(pkt(0x82, 0, 0, s("a"), 0), 4, 0x82, "[MQTT-2.2.1-3 v5]");
  fails(pkt(0xa2, 0, 0, s("a")), 4, 0x82, "[MQTT-2.2.1-3 v5]");
  fails(pkt(0x40, 0, 0), 4, 0x82, "[MQTT-2.2.1-3 v5]");
  fails(pkt(0x40, 0), 4, 0x81, "past the end");
});

test("[MQTT-3.1.2-3] CONNECT reserved flag set is malformed (0x81)", () => {
  fails(connect(4, 0x03), 4, 0x81, "[MQTT-3.1.2-3]");
  fails(connect(5, 0x03), 4, 0x81, "[MQTT-3.1.2-3]");
});

test("[MQTT-3.1.2-11 v3.1.1][MQTT-3.1.2-11 v5] will flag 0 means no will fields: will QoS set is malformed (0x81)", () => {
  fails(connect(4, 0x0a), 4, 0x81, "[MQTT-3.1.2-13 v3.1.1]");
  fails(connect(5, 0x12), 5, 0x81, "[MQTT-3.1.2-11 v5]"); // v5 numbering
});

test("[MQTT-3.1.2-13 v3.1.1][MQTT-3.1.2-11 v5] will QoS must be 0 when the will flag is 0", () => {
  fails(connect(4, 0x12), 4, 0x81, "[MQTT-3.1.2-13 v3.1.1]");
});

test("[MQTT-3.1.2-15 v3.1.1][MQTT-3.1.2-13 v5] will retain must be 0 when the will flag is 0", () => {
  fails(connect(4, 0x22), 4, 0x81, "[MQTT-3.1.2-15 v3.1.1]");
  fails(connect(5, 0x22), 5, 0x81, "[MQTT-3.1.2-13 v5]"); // v5 numbering
});

test("[MQTT-3.1.2-14 v3.1.1][MQTT-3.1.2-12 v5] will QoS 3 is malformed (0x81)", () => {
  fails(connect(4, 0x1e, s("w"), s("m")), 4, 0x81, "[MQTT-3.1.2-14 v3.1.1]");
  fails(connect(5, 0x1e, [0], s("w"), s("m")), 5, 0x81, "[MQTT-3.1.2-12 v5]");
});

test("[MQTT-3.1.2-22 v3.1.1] 3.1.1 password without user name is malformed; v5 allows it", () => {
  fails(connect(4, 0x42, s("pw")), 4, 0x81, "[MQTT-3.1.2-22 v3.1.1]");
  fails(connect(3, 0x42, s("pw")), 4, 0x81, "[MQTT-3.1.2-22 v3.1.1]");
  const [p] = ok(connect(5, 0x42, s("pw")), 4);
  assert.deepEqual((p as any).password, new TextEncoder().encode("pw"));
  assert.equal((p as any).username, undefined);
});

test("[MQTT-3.1.2-1][MQTT-3.1.2-2] unknown protocol name or level: 0x84 Unsupported Protocol Version", () => {
  fails(pkt(0x10, s("MQTX"), 4, 2, 0, 60, s("c")), 4, 0x84, "[MQTT-3.1.2-1]");
  fails(pkt(0x10, s("MQTT"), 6, 2, 0, 60, s("c")), 4, 0x84, "[MQTT-3.1.2-2]");
  fails(pkt(0x10, s("MQTT"), 3, 2, 0, 60, s("c")), 4, 0x84, "[MQTT-3.1.2-2]");
  fails(pkt(0x10, s("MQIsdp"), 4, 2, 0, 60, s("c")), 4, 0x84, "[MQTT-3.1.2-2]");
  fails(pkt(0x10, s("MQTT"), 0x86, 2, 0, 60, s("c")), 4, 0x84, "[MQTT-3.1.2-2]");
});

test("[MQTT-3.8.3-3 v3.1.1][MQTT-3.8.3-2 v5] SUBSCRIBE without topic filters is a protocol error (0x82)", () => {
  fails(pkt(0x82, 0, 1), 4, 0x82, "[MQTT-3.8.3-3 v3.1.1]");
  fails(pkt(0x82, 0, 1, 0), 5, 0x82, "[MQTT-3.8.3-2 v5]");
});

test("[MQTT-3.10.3-2] UNSUBSCRIBE without topic filters is a protocol error (0x82)", () => {
  fails(pkt(0xa2, 0, 1), 4, 0x82, "[MQTT-3.10.3-2]");
  fails(pkt(0xa2, 0, 1, 0), 5, 0x82, "[MQTT-3.10.3-2]");
});

test("[MQTT-3.8.3-4 v3.1.1] 3.1.1 subscription options: reserved bits or QoS 3 are malformed (0x81)", () => {
  fails(pkt(0x82, 0, 1, s("a"), 0x04), 4, 0x81, "[MQTT-3.8.3-4 v3.1.1]");
  fails(pkt(0x82, 0, 1, s("a"), 0x03), 4, 0x81, "[MQTT-3.8.3-4 v3.1.1]");
});

test("[MQTT-3.8.3-5 v5] v5 subscription options: reserved bits, QoS 3, retain handling 3 (0x81)", () => {
  fails(pkt(0x82, 0, 1, 0, s("a"), 0x40), 5, 0x81, "[MQTT-3.8.3-5 v5]");
  fails(pkt(0x82, 0, 1, 0, s("a"), 0x03), 5, 0x81, "[MQTT-3.8.3-5 v5]");
  fails(pkt(0x82, 0, 1, 0, s("a"), 0x30), 5, 0x81, "[MQTT-3.8.3-5 v5]");
});

test("[MQTT-3.8.3-4 v5] v5 No Local on a shared subscription is a protocol error (0x82)", () => {
  fails(pkt(0x82, 0, 1, 0, s("$share/g/a"), 0x04), 5, 0x82, "[MQTT-3.8.3-4 v5]");
  assert.equal(ok(pkt(0x82, 0, 1, 0, s("$shared/a"), 0x04), 5).length, 1);
});

test("[MQTT-4.7.3-1] empty topic filters and (before v5) empty topic names are malformed", () => {
  fails(pkt(0x82, 0, 1, s(""), 0), 4, 0x81, "[MQTT-4.7.3-1]");
  fails(pkt(0xa2, 0, 1, 0, s("")), 5, 0x81, "[MQTT-4.7.3-1]");
  fails(pkt(0x30, s(""), "payload"), 4, 0x81, "[MQTT-4.7.3-1]");
  fails(pkt(0x30, s(""), "payload"), 3, 0x81, "[MQTT-4.7.3-1]");
  fails(connect(4, 0x06, s(""), s("m")), 4, 0x81, "[MQTT-4.7.3-1]");
});

test("§3.3.2.1 v5 empty topic name needs a Topic Alias (0x82)", () => {
  fails(pkt(0x30, s(""), 0, "x"), 5, 0x82, "Topic Alias");
  const [p] = ok(pkt(0x30, s(""), [3, 0x23, 0, 4], "x"), 5);
  assert.equal((p as any).topic, "");
  assert.equal((p as any).properties.topicAlias, 4);
});

test("§2.2.2.2 unknown property identifier is malformed (0x81)", () => {
  fails(pkt(0x30, s("t"), [2, 0x04, 0]), 5, 0x81, "unknown property identifier 0x04");
  fails(pkt(0x30, s("t"), [2, 0x7f, 0]), 5, 0x81, "unknown property");
  fails(pkt(0x30, s("t"), [3, 0x80, 0x01, 0]), 5, 0x81, "unknown property"); // id 128
});

test("§2.2.2.2 a single-valued property repeated is a protocol error (0x82)", () => {
  fails(pkt(0x30, s("t"), [8, 0x03, ...s("a"), 0x03, ...s("b")]), 5, 0x82, "more than once");
  fails(pkt(0xe0, 0, [10, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2]), 5, 0x82, "more than once");
  // Subscription Identifier repeats only in PUBLISH.
  fails(pkt(0x82, 0, 1, [4, 0x0b, 1, 0x0b, 2], s("a"), 0), 5, 0x82, "more than once");
  const [p] = ok(pkt(0x30, s("t"), [4, 0x0b, 1, 0x0b, 2]), 5);
  assert.deepEqual((p as any).properties.subscriptionIdentifier, [1, 2]);
});

test("§2.2.2.2 a property not allowed in the packet type is malformed (0x81)", () => {
  fails(pkt(0x30, s("t"), [5, 0x11, 0, 0, 0, 1]), 5, 0x81, "not allowed in PUBLISH");
  fails(pkt(0x40, 0, 1, 0, [2, 0x23, 0, 1]), 5, 0x81, "not allowed in PUBACK");
  fails(connect(5, 0x06, [5, 0x11, 0, 0, 0, 1], s("w"), s("m")), 5, 0x81, "will properties");
  fails(pkt(0xe0, 0, [2, 0x24, 1]), 5, 0x81, "not allowed in DISCONNECT");
});

/** v5 CONNECT with the given property bytes. */
function connect5(props: number[], flags = 2, ...rest: number[][]): Uint8Array {
  return pkt(0x10, s("MQTT"), 5, flags, 0, 60, props.length, props, s("cid"), ...rest);
}

test("v5 property values the spec forbids are protocol errors (0x82)", () => {
  fails(connect5([0x21, 0, 0]), 4, 0x82, "Receive Maximum");
  fails(connect5([0x27, 0, 0, 0, 0]), 4, 0x82, "Maximum Packet Size");
  fails(connect5([0x17, 2]), 4, 0x82, "Request Problem Information");
  fails(connect5([0x19, 3]), 4, 0x82, "Request Response Information");
  fails(pkt(0x20, 0, 0, [2, 0x24, 2]), 5, 0x82, "Maximum QoS");
  fails(pkt(0x20, 0, 0, [2, 0x25, 2]), 5, 0x82, "Retain Available");
  fails(pkt(0x30, s("t"), [2, 0x0b, 0]), 5, 0x82, "Subscription Identifier");
  fails(pkt(0x30, s("t"), [5, 0x0b, 0x80, 0x80, 0x80, 0x80]), 5, 0x81, "§1.5.5");
});

test("[MQTT-3.2.2-1 v5] CONNACK reserved flags are malformed (0x81)", () => {
  fails(pkt(0x20, 2, 0), 4, 0x81, "[MQTT-3.2.2-1 v5]");
  fails(pkt(0x20, 0x80, 0, 0), 5, 0x81, "[MQTT-3.2.2-1 v5]");
});

test("v5 reason codes not defined for the packet type are malformed (0x81)", () => {
  fails(pkt(0x40, 0, 1, 0x92), 5, 0x81, "invalid reason code 0x92 in PUBACK");
  fails(pkt(0x62, 0, 1, 0x10), 5, 0x81, "invalid reason code 0x10 in PUBREL");
  fails(pkt(0x90, 0, 1, 0, 0x05), 5, 0x81, "SUBACK");
  fails(pkt(0x90, 0, 1, 0x03), 4, 0x81, "SUBACK");
  fails(pkt(0xb0, 0, 1, 0, 0x01), 5, 0x81, "UNSUBACK");
  fails(pkt(0xe0, 0x05), 5, 0x81, "DISCONNECT");
  fails(pkt(0xf0, 0x01, 0), 5, 0x81, "AUTH");
  fails(pkt(0x20, 0, 0x01, 0), 5, 0x81, "CONNACK");
});

test("maximum packet size: a larger packet fails with 0x95 as soon as its header arrives", () => {
  const d = new Decoder({ maxPacketSize: 1000 });
  // Fixed header of a PUBLISH announcing 1 MB; the body never comes.
  const r = d.push(new Uint8Array([0x30, 0x80, 0x80, 0x40]));
  assert.equal(r.error?.reasonCode, 0x95);
  assert.equal(d.buffered, 0);
  // Exactly the limit passes; one byte more fails.
  const at = pkt(0x30, s("t"), "x".repeat(1000 - 2 - 3 - 2));
  assert.equal(at.length, 1000 - 1);
  assert.equal(new Decoder({ maxPacketSize: 999 }).push(at).packets.length, 1);
  fails(at, 4, 0x95, "maximum packet size", { maxPacketSize: 998 });
});

test("bytes left over inside a packet are malformed (0x81)", () => {
  fails(new Uint8Array([0xc0, 1, 0]), 4, 0x81, "after the last field of PINGREQ");
  fails(new Uint8Array([0xd0, 1, 0]), 4, 0x81, "after the last field of PINGRESP");
  fails(pkt(0x40, 0, 1, 0), 4, 0x81, "after the last field of PUBACK");
  fails(pkt(0xb0, 0, 1, 0), 4, 0x81, "after the last field of UNSUBACK");
  fails(pkt(0xe0, 0), 4, 0x81, "after the last field of DISCONNECT");
  fails(connect(4, 2, [0]), 4, 0x81, "after the last field of CONNECT");
  fails(pkt(0x20, 0, 0, 0), 4, 0x81, "after the last field of CONNACK");
  fails(pkt(0x40, 0, 1, 0, [0], 1), 5, 0x81, "after the last field of PUBACK");
});

test("§2.2.1 packet type 0 and, before v5, type 15 are malformed (0x81)", () => {
  fails(new Uint8Array([0x00, 0]), 4, 0x81, "type 0");
  fails(new Uint8Array([0xf0, 0]), 4, 0x81, "type 15");
  assert.deepEqual(ok(new Uint8Array([0xf0, 0]), 5), [{ cmd: "auth", reasonCode: 0 }]);
});

test("packets before an error are returned; the decoder then keeps returning the error", () => {
  const d = new Decoder();
  const r = d.push(new Uint8Array([0xc0, 0, 0xd0, 0, 0x38, 3, 0, 1, 0x74, 0xc0, 0]));
  assert.deepEqual(r.packets, [{ cmd: "pingreq" }, { cmd: "pingresp" }]);
  assert.equal(r.error?.reasonCode, 0x81);
  const again = d.push(new Uint8Array([0xc0, 0]));
  assert.deepEqual(again.packets, []);
  assert.deepEqual(again.error, r.error);
});

test("PUBLISH topics: many distinct, colliding and repeated topics decode exactly", () => {
  // More topics than the shared topic cache has slots, so slots collide and get replaced.
  const rnd = mulberry32(99);
  const topics: string[] = [];
  for (let i = 0; i < 6000; i++) topics.push(`t/${i}/${Math.floor(rnd() * 1e6)}`);
  topics.push("same/len/a", "same/len/b", "x", "t/1", "温度/1");
  const order = [...topics, ...topics].sort(() => rnd() - 0.5);
  const bytes = Buffer.concat(
    order.map((topic) => generate({ cmd: "publish", topic, payload: "" }, 4)),
  );
  const got = decode(bytes, 4).map((p) => (p as any).topic);
  assert.deepEqual(got, order);
});

test("payloads and binary fields stay intact after later reads reuse the WASM memory", () => {
  const d = new Decoder({ protocolVersion: 5 });
  const first = d.push(Buffer.concat([
    generate({ cmd: "publish", topic: "a", payload: Buffer.alloc(10, 1) }, 5),
    generate({ cmd: "publish", topic: "b", payload: Buffer.alloc(20_000, 2) }, 5),
    generate({
      cmd: "publish",
      topic: "c",
      payload: Buffer.alloc(0),
      properties: { correlationData: Buffer.alloc(5, 3) },
    }, 5),
  ])).packets as any[];
  for (let i = 0; i < 5; i++) {
    d.push(generate({ cmd: "publish", topic: "z", payload: Buffer.alloc(30_000, 9) }, 5));
  }
  assert.deepEqual(first[0].payload, new Uint8Array(10).fill(1));
  assert.deepEqual(first[1].payload, new Uint8Array(20_000).fill(2));
  assert.deepEqual(first[2].payload, new Uint8Array(0));
  assert.deepEqual(first[2].properties.correlationData, new Uint8Array(5).fill(3));
});

test("after a failed v5 CONNECT the decoder reports version 5, after an unsupported one it does not", () => {
  const d = new Decoder();
  assert.equal(d.push(connect5([0x21, 0, 0])).error?.reasonCode, 0x82);
  assert.equal(d.protocolVersion, 5);
  const e = new Decoder();
  assert.equal(e.push(pkt(0x10, s("MQTT"), 7, 2, 0, 60, s("c"))).error?.reasonCode, 0x84);
  assert.equal(e.protocolVersion, 4);
});

/** `bytes` (one packet from mqtt-packet) with its Remaining Length in `extra` more bytes. */
function longLength(bytes: Uint8Array, extra: number): Uint8Array {
  let i = 1;
  while (bytes[i] & 128) i++;
  const rl = [...bytes.subarray(1, i + 1)];
  rl[rl.length - 1] |= 128;
  for (let k = 1; k < extra; k++) rl.push(128);
  rl.push(0);
  return new Uint8Array([bytes[0], ...rl, ...bytes.subarray(i + 1)]);
}

test("[MQTT-1.5.5-1 v5] a Remaining Length or variable byte integer longer than its value needs is malformed (0x81)", () => {
  fails(new Uint8Array([0xc0, 0x80, 0x00]), 4, 0x81, "[MQTT-1.5.5-1 v5]"); // PINGREQ
  fails(new Uint8Array([0xc0, 0x80, 0x00]), 5, 0x81, "[MQTT-1.5.5-1 v5]");
  const conn = generate(
    { cmd: "connect", protocolId: "MQTT", protocolVersion: 5, clean: true, clientId: "c" },
    5,
  );
  fails(longLength(conn, 1), 4, 0x81, "Remaining Length");
  fails(longLength(conn, 2), 4, 0x81, "Remaining Length");
  const pub = generate({ cmd: "publish", topic: "t", payload: Buffer.alloc(200), qos: 0 }, 4);
  fails(longLength(pub, 1), 4, 0x81, "[MQTT-1.5.5-1 v5]"); // 3 bytes for a 2-byte length
  // Inside a packet: a property length, and a Subscription Identifier of 1 in two bytes.
  fails(pkt(0x30, s("t"), [0x80, 0x00]), 5, 0x81, "variable byte integer");
  fails(pkt(0x82, 0, 1, [3, 0x0b, 0x81, 0x00], s("a"), 0), 5, 0x81, "[MQTT-1.5.5-1 v5]");
  // The shortest forms pass, including values that need several bytes.
  assert.equal(ok(pub, 4).length, 1);
  assert.equal(ok(new Uint8Array([0xc0, 0x00]), 4).length, 1);
  assert.equal(ok(pkt(0x82, 0, 1, [3, 0x0b, 0x80, 0x01], s("a"), 0), 5).length, 1);
});

test("§3.1.2.11.10 a v5 CONNECT with Authentication Data but no Authentication Method is a protocol error (0x82)", () => {
  const base = {
    cmd: "connect",
    protocolId: "MQTT",
    protocolVersion: 5,
    clean: true,
    clientId: "c",
  };
  const data = Buffer.from("secret");
  fails(
    generate({ ...base, properties: { authenticationData: data } }, 5),
    4,
    0x82,
    "§3.1.2.11.10",
  );
  const [p] = ok(
    generate(
      { ...base, properties: { authenticationMethod: "SCRAM", authenticationData: data } },
      5,
    ),
    4,
  );
  assert.equal((p as any).properties.authenticationMethod, "SCRAM");
});

test("[MQTT-3.1.0-1] decoding a client's packets: a first packet that is not CONNECT is refused on its first byte (0x82)", () => {
  for (const first of ["P", "PROXY TCP4 127.0.0.1 127.0.0.1 5000 1883\r\n", "GET / HTTP/1.1\r\n"]) {
    const d = new Decoder({ fromClient: true });
    const r = d.push(new TextEncoder().encode(first));
    assert.equal(r.error?.reasonCode, 0x82, JSON.stringify(first));
    assert.ok(r.error.message.includes("[MQTT-3.1.0-1]"), r.error.message);
    assert.equal(d.awaitingConnect, true, "the failing packet was the first");
  }
  const pingreq = generate({ cmd: "pingreq" }, 4);
  assert.equal(new Decoder({ fromClient: true }).push(pingreq).error?.reasonCode, 0x82);
  // A CONNECT split over reads, then anything: accepted.
  const conn = generate(
    { cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clean: true, clientId: "c" },
    4,
  );
  const d = new Decoder({ fromClient: true });
  assert.equal(d.push(conn.subarray(0, 1)).error, undefined);
  assert.equal(d.awaitingConnect, true);
  const r = d.push(Buffer.concat([conn.subarray(1), pingreq, pingreq]));
  assert.equal(r.error, undefined);
  assert.deepEqual(r.packets.map((p) => p.cmd), ["connect", "pingreq", "pingreq"]);
  assert.equal(d.awaitingConnect, false);
  assert.equal(d.push(pingreq).packets.length, 1);
  // The client side reads its server's packets with no CONNECT first.
  assert.equal(ok(generate({ cmd: "pingresp" }, 4), 4).length, 1);
});

test("[MQTT-3.3.4-6 v5] a PUBLISH from a client with a Subscription Identifier is a protocol error (0x82)", () => {
  const conn = generate(
    { cmd: "connect", protocolId: "MQTT", protocolVersion: 5, clean: true, clientId: "c" },
    5,
  );
  const pub = (properties?: any) =>
    generate({ cmd: "publish", topic: "t", payload: "x", qos: 0, properties }, 5);
  const d = new Decoder({ fromClient: true });
  const r = d.push(Buffer.concat([conn, pub({ subscriptionIdentifier: 7 })]));
  assert.deepEqual(r.packets.map((p) => p.cmd), ["connect"]);
  assert.equal(r.error?.reasonCode, 0x82);
  assert.ok(r.error.message.includes("[MQTT-3.3.4-6 v5]"), r.error.message);
  // Without one it passes; a client decoder takes the server's PUBLISH with one.
  assert.equal(
    new Decoder({ fromClient: true }).push(Buffer.concat([conn, pub()])).error,
    undefined,
  );
  const [p] = ok(pub({ subscriptionIdentifier: 7 }), 5);
  assert.equal((p as any).properties.subscriptionIdentifier, 7);
});
