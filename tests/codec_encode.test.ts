// The packet encoder checked against mqtt-packet, an independent MQTT codec: every packet type at
// every protocol version is encoded by us, parsed by mqtt-packet and compared field for field;
// where the two encoders must produce the same bytes, the bytes are compared too.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqttPacket from "mqtt-packet";
import {
  encode,
  encodeInto,
  PINGREQ,
  PINGRESP,
  type PreparedPublish,
  preparePublish,
  utf8Length,
  writePrepared,
} from "../src/codec/encoder.ts";
import type {
  AckPacket,
  Packet,
  Properties,
  ProtocolVersion,
  PublishPacket,
} from "../src/codec/types.ts";

const VERSIONS: ProtocolVersion[] = [3, 4, 5];
const te = new TextEncoder();
const bytes = (s: string) => te.encode(s);
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

// ---------------------------------------------------------------------------------------------
// Sample packets

/** Properties of MQTT 5 that mqtt-packet represents as booleans. */
const BOOL_PROPS = new Set([
  "payloadFormatIndicator",
  "requestProblemInformation",
  "requestResponseInformation",
  "retainAvailable",
  "wildcardSubscriptionAvailable",
  "subscriptionIdentifiersAvailable",
  "sharedSubscriptionAvailable",
]);

const userProps: [string, string][] = [["region", "eu-west"], ["ünïcødé", "✓ 😀"], ["k", ""]];

function samples(v: ProtocolVersion): [string, Packet][] {
  const p5 = v === 5;
  const props = (x: Properties): Properties | undefined => (p5 ? x : undefined);
  const protocolId = v === 3 ? "MQIsdp" : "MQTT";
  const big = new Uint8Array(20_000).map((_, i) => i & 0xff);
  const out: [string, Packet][] = [
    ["connect minimal", {
      cmd: "connect",
      protocolId,
      protocolVersion: v,
      bridgeMode: false,
      clean: true,
      keepalive: 0,
      clientId: "",
    }],
    ["connect full", {
      cmd: "connect",
      protocolId,
      protocolVersion: v,
      bridgeMode: false,
      clean: false,
      keepalive: 65535,
      clientId: "client-é-😀",
      will: {
        topic: "will/tøpic",
        payload: bytes("gone"),
        qos: 2,
        retain: true,
        properties: props({
          payloadFormatIndicator: 1,
          messageExpiryInterval: 3600,
          contentType: "text/plain",
          responseTopic: "resp/x",
          correlationData: bytes("corr"),
          willDelayInterval: 30,
          userProperties: [["w", "1"]],
        }),
      },
      username: "user",
      password: new Uint8Array([0, 1, 2, 255]),
      properties: props({
        sessionExpiryInterval: 0xffffffff,
        authenticationMethod: "SCRAM-SHA-1",
        authenticationData: bytes("data"),
        requestProblemInformation: 0,
        requestResponseInformation: 1,
        receiveMaximum: 100,
        topicAliasMaximum: 10,
        maximumPacketSize: 1_000_000,
        userProperties: userProps,
      }),
    }],
    ["connect bridge", {
      cmd: "connect",
      protocolId,
      protocolVersion: v,
      bridgeMode: true,
      clean: true,
      keepalive: 60,
      clientId: "bridge-1",
      username: "u",
      password: bytes("p"),
    }],
    ["connect will qos 1 no retain", {
      cmd: "connect",
      protocolId,
      protocolVersion: v,
      bridgeMode: false,
      clean: true,
      keepalive: 10,
      clientId: "w",
      will: { topic: "w/t", payload: new Uint8Array(0), qos: 1, retain: false },
    }],
    ["connack accepted", { cmd: "connack", sessionPresent: false, reasonCode: 0 }],
    ["connack session present", { cmd: "connack", sessionPresent: true, reasonCode: 0 }],
    ["connack refused", { cmd: "connack", sessionPresent: false, reasonCode: p5 ? 0x86 : 4 }],
    ["publish qos0", {
      cmd: "publish",
      topic: "a/b",
      payload: bytes("hello"),
      qos: 0,
      retain: false,
      dup: false,
    }],
    ["publish qos1 retain", {
      cmd: "publish",
      topic: "sensors/ünï/temp",
      payload: bytes("21.5"),
      qos: 1,
      retain: true,
      dup: false,
      messageId: 1,
    }],
    ["publish qos2 dup", {
      cmd: "publish",
      topic: "x",
      payload: new Uint8Array(0),
      qos: 2,
      retain: false,
      dup: true,
      messageId: 65535,
    }],
    ["publish 20 KB payload", {
      cmd: "publish",
      topic: "big",
      payload: big,
      qos: 1,
      retain: false,
      dup: false,
      messageId: 300,
    }],
    ["publish 200 B payload", {
      cmd: "publish",
      topic: "mid",
      payload: big.subarray(0, 200),
      qos: 0,
      retain: false,
      dup: false,
    }],
    ["publish properties", {
      cmd: "publish",
      topic: "t/p",
      payload: bytes("{}"),
      qos: 1,
      retain: false,
      dup: false,
      messageId: 42,
      properties: props({
        payloadFormatIndicator: 1,
        messageExpiryInterval: 60,
        contentType: "application/json",
        responseTopic: "reply/to",
        correlationData: new Uint8Array([9, 8, 7]),
        subscriptionIdentifier: 268_435_455,
        topicAlias: 3,
        userProperties: userProps,
      }),
    }],
    ["publish several subscription identifiers", {
      cmd: "publish",
      topic: "t/s",
      payload: bytes("x"),
      qos: 0,
      retain: false,
      dup: false,
      properties: props({ subscriptionIdentifier: [1, 200, 20_000] }),
    }],
    ["subscribe one", {
      cmd: "subscribe",
      messageId: 10,
      subscriptions: [{ topic: "a/+/c", qos: 1 }],
    }],
    ["subscribe several with options", {
      cmd: "subscribe",
      messageId: 11,
      subscriptions: [
        p5 ? { topic: "a/#", qos: 2, nl: true, rap: true, rh: 2 } : { topic: "a/#", qos: 2 },
        p5 ? { topic: "ü/+", qos: 0, nl: false, rap: false, rh: 1 } : { topic: "ü/+", qos: 0 },
        p5 ? { topic: "$share/g/x", qos: 1, nl: false, rap: true, rh: 0 } : { topic: "z", qos: 1 },
      ],
      properties: props({ subscriptionIdentifier: 77, userProperties: [["a", "b"]] }),
    }],
    ["suback", {
      cmd: "suback",
      messageId: 11,
      granted: p5 ? [0, 1, 2, 0x80, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2] : [0, 1, 2, 0x80],
    }],
    ["suback properties", {
      cmd: "suback",
      messageId: 12,
      granted: [1],
      properties: props({ reasonString: "ok", userProperties: [["x", "y"]] }),
    }],
    ["unsubscribe", { cmd: "unsubscribe", messageId: 13, unsubscriptions: ["a/b", "c/#", "ü"] }],
    ["unsubscribe properties", {
      cmd: "unsubscribe",
      messageId: 14,
      unsubscriptions: ["a"],
      properties: props({ userProperties: [["u", "v"]] }),
    }],
    ["unsuback", {
      cmd: "unsuback",
      messageId: 13,
      granted: p5 ? [0, 0x11, 0x87] : undefined,
    }],
    ["unsuback properties", {
      cmd: "unsuback",
      messageId: 15,
      granted: p5 ? [0x80] : undefined,
      properties: props({ reasonString: "nope" }),
    }],
    ["pingreq", { cmd: "pingreq" }],
    ["pingresp", { cmd: "pingresp" }],
    ["disconnect", { cmd: "disconnect" }],
  ];
  for (const cmd of ["puback", "pubrec", "pubrel", "pubcomp"] as const) {
    out.push([cmd, { cmd, messageId: 1234 }]);
    if (p5) {
      out.push([`${cmd} reason code`, {
        cmd,
        messageId: 2,
        reasonCode: cmd === "puback" || cmd === "pubrec" ? 0x10 : 0x92,
      }]);
      out.push([`${cmd} properties`, {
        cmd,
        messageId: 3,
        reasonCode: cmd === "puback" || cmd === "pubrec" ? 0x97 : 0,
        properties: { reasonString: "why", userProperties: [["a", "1"], ["a", "2"]] },
      }]);
    }
  }
  if (p5) {
    out.push(["connack properties", {
      cmd: "connack",
      sessionPresent: false,
      reasonCode: 0,
      properties: {
        sessionExpiryInterval: 120,
        receiveMaximum: 20,
        maximumQoS: 1,
        retainAvailable: 0,
        maximumPacketSize: 65536,
        assignedClientIdentifier: "auto-123",
        topicAliasMaximum: 5,
        reasonString: "welcome",
        wildcardSubscriptionAvailable: 1,
        subscriptionIdentifiersAvailable: 0,
        sharedSubscriptionAvailable: 1,
        serverKeepAlive: 30,
        responseInformation: "resp",
        serverReference: "other:1883",
        authenticationMethod: "m",
        authenticationData: bytes("d"),
        userProperties: userProps,
      },
    }]);
    out.push(["disconnect reason code", { cmd: "disconnect", reasonCode: 0x8e }]);
    out.push(["disconnect properties", {
      cmd: "disconnect",
      reasonCode: 0x9c,
      properties: { sessionExpiryInterval: 0, reasonString: "moved", serverReference: "b" },
    }]);
    out.push(["auth continue", {
      cmd: "auth",
      reasonCode: 0x18,
      properties: { authenticationMethod: "SCRAM", authenticationData: bytes("challenge") },
    }]);
    out.push(["auth re-authenticate reason only", { cmd: "auth", reasonCode: 0x19 }]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Conversion to mqtt-packet's representation

function mpProps(p: Properties | undefined): Record<string, unknown> | undefined {
  if (!p) return undefined;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(p)) {
    if (v === undefined) continue;
    if (k === "userProperties") {
      const user: Record<string, string | string[]> = {};
      for (const [name, value] of v as [string, string][]) {
        const prev = user[name];
        user[name] = prev === undefined
          ? value
          : Array.isArray(prev)
          ? [...prev, value]
          : [prev, value];
      }
      out[k] = user;
    } else if (BOOL_PROPS.has(k)) out[k] = v !== 0;
    else if (v instanceof Uint8Array) out[k] = Buffer.from(v);
    else out[k] = v;
  }
  return Object.keys(out).length ? out : undefined;
}

/** Our packet in mqtt-packet's shape (what its parser should yield and its generator takes). */
function toMqtt(p: Packet, v: ProtocolVersion): Record<string, unknown> {
  const o: Record<string, unknown> = { cmd: p.cmd };
  const set = (k: string, val: unknown) => {
    if (val !== undefined) o[k] = val;
  };
  switch (p.cmd) {
    case "connect":
      o.protocolId = p.protocolId;
      o.protocolVersion = v;
      if (p.bridgeMode) o.bridgeMode = true;
      o.clean = p.clean;
      o.keepalive = p.keepalive;
      o.clientId = p.clientId;
      if (p.will) {
        const w: Record<string, unknown> = {
          topic: p.will.topic,
          payload: Buffer.from(p.will.payload),
          qos: p.will.qos,
          retain: p.will.retain,
        };
        if (v === 5 && mpProps(p.will.properties)) w.properties = mpProps(p.will.properties);
        o.will = w;
      }
      set("username", p.username);
      if (p.password) o.password = Buffer.from(p.password);
      break;
    case "connack":
      o.sessionPresent = p.sessionPresent;
      o[v === 5 ? "reasonCode" : "returnCode"] = p.reasonCode;
      break;
    case "publish":
      o.topic = p.topic;
      o.payload = Buffer.from(p.payload);
      o.qos = p.qos;
      o.retain = p.retain;
      o.dup = p.dup;
      if (p.qos > 0) o.messageId = p.messageId;
      break;
    case "puback":
    case "pubrec":
    case "pubrel":
    case "pubcomp":
      o.messageId = p.messageId;
      if (v === 5) o.reasonCode = p.reasonCode ?? 0;
      break;
    case "subscribe":
      o.messageId = p.messageId;
      o.subscriptions = p.subscriptions.map((s) =>
        v === 5
          ? { topic: s.topic, qos: s.qos, nl: !!s.nl, rap: !!s.rap, rh: s.rh ?? 0 }
          : { topic: s.topic, qos: s.qos }
      );
      break;
    case "suback":
      o.messageId = p.messageId;
      o.granted = p.granted;
      break;
    case "unsubscribe":
      o.messageId = p.messageId;
      o.unsubscriptions = p.unsubscriptions;
      break;
    case "unsuback":
      o.messageId = p.messageId;
      if (v === 5) o.granted = p.granted;
      break;
    case "disconnect":
    case "auth":
      if (v === 5) o.reasonCode = p.reasonCode ?? 0;
      break;
  }
  if (v === 5 && "properties" in p) set("properties", mpProps(p.properties));
  return o;
}

/** Parses with mqtt-packet; returns the packets with its bookkeeping fields removed. */
function mqttParse(buf: Uint8Array, v: ProtocolVersion): Record<string, unknown>[] {
  const parser = mqttPacket.parser({ protocolVersion: v });
  const packets: Record<string, unknown>[] = [];
  const errors: Error[] = [];
  parser.on("packet", (p: any) => packets.push(p));
  parser.on("error", (e: Error) => errors.push(e));
  parser.parse(Buffer.from(buf));
  if (errors.length) throw errors[0];
  return packets.map((raw) => {
    const p: Record<string, unknown> = { ...raw };
    delete p.length;
    if (p.cmd !== "publish") {
      for (const k of ["retain", "qos", "dup", "topic", "payload"]) delete p[k];
    }
    const props = p.properties as Record<string, unknown> | undefined;
    if (props) {
      p.properties = { ...props };
      if (props.userProperties) {
        (p.properties as any).userProperties = { ...(props.userProperties as object) };
      }
    }
    const will = p.will as Record<string, any> | undefined;
    if (will?.properties?.userProperties) {
      will.properties = {
        ...will.properties,
        userProperties: { ...will.properties.userProperties },
      };
    }
    return p;
  });
}

/** Sorts keys recursively so that deepStrictEqual ignores key order (not array order). */
function canon(x: unknown): unknown {
  if (Buffer.isBuffer(x) || x instanceof Uint8Array) return Buffer.from(x as Uint8Array);
  if (Array.isArray(x)) return x.map(canon);
  if (x && typeof x === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(x).sort()) out[k] = canon((x as Record<string, unknown>)[k]);
    return out;
  }
  return x;
}

// ---------------------------------------------------------------------------------------------
// Field-for-field against mqtt-packet's parser

for (const v of VERSIONS) {
  test(`every packet type at v${v}: mqtt-packet parses our bytes to the same fields`, () => {
    const list = samples(v);
    const seen = new Set(list.map(([, p]) => p.cmd));
    const expectedTypes = v === 5 ? 15 : 14; // AUTH exists only in MQTT 5
    assert.equal(seen.size, expectedTypes);
    for (const [name, packet] of list) {
      const buf = encode(packet, v);
      // A parser built for one packet type flags a stray trailing byte as a second packet.
      const parsed = mqttParse(buf, v);
      assert.equal(parsed.length, 1, `${name}: one packet`);
      assert.deepStrictEqual(canon(parsed[0]), canon(toMqtt(packet, v)), `v${v} ${name}`);
    }
  });
}

test("a stream of every packet at every version parses back in order", () => {
  for (const v of VERSIONS) {
    // mqtt-packet's parser decides whether a v5 DISCONNECT/AUTH has a reason code and property
    // length by the bytes left in its whole buffer, not in the packet, so it misreads our valid
    // short forms when another packet follows; those go last, one per stream.
    const short = (p: Packet) =>
      v === 5 && (p.cmd === "disconnect" || p.cmd === "auth") && encode(p, v)[1] < 2;
    const all = samples(v);
    for (const tail of all.filter(([, p]) => short(p))) {
      const list = [...all.filter(([, p]) => !short(p)), tail];
      streamCheck(list, v);
    }
    streamCheck(all.filter(([, p]) => !short(p)), v);
  }
});

function streamCheck(list: [string, Packet][], v: ProtocolVersion) {
  const chunks = list.map(([, p]) => encode(p, v));
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let pos = 0;
  for (const c of chunks) {
    all.set(c, pos);
    pos += c.length;
  }
  const parsed = mqttParse(all, v);
  assert.deepStrictEqual(parsed.map(canon), list.map(([, p]) => canon(toMqtt(p, v))));
}

// ---------------------------------------------------------------------------------------------
// Byte-for-byte against mqttPacket.generate where both must agree

/**
 * Where the bytes may differ, and why:
 * - v5 DISCONNECT/AUTH without properties: mqtt-packet always writes the reason code and an
 *   empty property length; we use the short forms of §3.14.2.1 / §3.15.2.1 (checked below).
 * - v5 PUBACK/PUBREC/PUBREL/PUBCOMP with a non-zero reason code and no properties: mqtt-packet
 *   adds an empty property length (4 bytes of body); we omit it as §3.4.2.2.1 allows and as
 *   Mosquitto does (3 bytes of body).
 * - v3.1 CONNECT with an empty client id: mqtt-packet refuses it (3.1 wants 1 to 23 characters);
 *   we encode what we are given, the broker and clients decide what to send.
 * - v5 CONNECT in bridge mode: mqtt-packet writes protocol level 3 and no properties (it does
 *   not support bridge mode with MQTT 5); we write 0x85 and the properties.
 * Everything else must be identical.
 */
function mustAgree(p: Packet, v: ProtocolVersion): boolean {
  if (v === 5 && (p.cmd === "disconnect" || p.cmd === "auth") && !p.properties) return false;
  if (v === 3 && p.cmd === "connect" && p.clientId === "") return false;
  if (v === 5 && ["puback", "pubrec", "pubrel", "pubcomp"].includes(p.cmd)) {
    const a = p as AckPacket;
    if (!a.properties && a.reasonCode) return false;
  }
  if (v === 5 && p.cmd === "connect" && p.bridgeMode) return false;
  return true;
}

for (const v of VERSIONS) {
  test(`v${v}: bytes equal mqttPacket.generate (PUBLISH, acks, SUBACK, CONNECT, …)`, () => {
    let compared = 0;
    for (const [name, packet] of samples(v)) {
      if (!mustAgree(packet, v)) continue;
      const theirs = mqttPacket.generate(toMqtt(packet, v) as any, { protocolVersion: v });
      assert.equal(hex(encode(packet, v)), hex(theirs), `v${v} ${name}`);
      compared++;
    }
    assert.ok(compared >= 25);
  });
}

test("v5 DISCONNECT and AUTH: short forms where mqtt-packet writes the long ones [MQTT-3.14.2-1 v5]", () => {
  // Ours: reason 0 and no properties -> Remaining Length 0 (§3.14.2.1, §3.15.2.1).
  assert.equal(hex(encode({ cmd: "disconnect" }, 5)), "e000");
  assert.equal(hex(encode({ cmd: "disconnect", reasonCode: 0 }, 5)), "e000");
  assert.equal(hex(encode({ cmd: "auth", reasonCode: 0 }, 5)), "f000");
  // Reason code only: the property length may be omitted (§3.14.2.2.1).
  assert.equal(hex(encode({ cmd: "disconnect", reasonCode: 0x8e }, 5)), "e0018e");
  assert.equal(hex(encode({ cmd: "auth", reasonCode: 0x19 }, 5)), "f00119");
  // mqtt-packet's long forms of the same packets, for the record.
  assert.equal(
    hex(mqttPacket.generate({ cmd: "disconnect", reasonCode: 0 } as any, { protocolVersion: 5 })),
    "e0020000",
  );
  // mqtt-packet's parser reads both our forms.
  assert.deepStrictEqual(mqttParse(encode({ cmd: "disconnect" }, 5), 5)[0].reasonCode, 0);
  assert.deepStrictEqual(
    mqttParse(encode({ cmd: "disconnect", reasonCode: 0x8e }, 5), 5)[0].reasonCode,
    0x8e,
  );
});

// ---------------------------------------------------------------------------------------------
// Rules of the wire format

test("v5 acks: short form when reason is 0 and there are no properties [MQTT-3.4.2-1 v5]", () => {
  assert.equal(hex(encode({ cmd: "puback", messageId: 258 }, 5)), "40020102");
  assert.equal(hex(encode({ cmd: "pubrec", messageId: 258, reasonCode: 0 }, 5)), "50020102");
  // Reason code without properties: no property length (§3.4.2.2.1); mqtt-packet writes one.
  assert.equal(hex(encode({ cmd: "pubcomp", messageId: 1, reasonCode: 0x92 }, 5)), "7003000192");
  const theirs = mqttPacket.generate(
    { cmd: "pubcomp", messageId: 1, reasonCode: 0x92 } as any,
    { protocolVersion: 5 },
  );
  assert.equal(hex(theirs), "700400019200");
  assert.equal(
    mqttParse(encode({ cmd: "pubcomp", messageId: 1, reasonCode: 0x92 }, 5), 5)[0].reasonCode,
    0x92,
  );
  assert.equal(
    hex(encode({ cmd: "puback", messageId: 1, reasonCode: 0, properties: {} }, 5)),
    "40020001",
    "empty properties object counts as none",
  );
  assert.equal(
    hex(encode({ cmd: "puback", messageId: 1, properties: { reasonString: "r" } }, 5)),
    "4008" + "0001" + "00" + "04" + "1f000172",
  );
});

test("fixed header flags: PUBREL, SUBSCRIBE, UNSUBSCRIBE carry 0010 [MQTT-3.6.1-1] [MQTT-3.8.1-1] [MQTT-3.10.1-1]", () => {
  for (const v of VERSIONS) {
    assert.equal(encode({ cmd: "pubrel", messageId: 1 }, v)[0], 0x62);
    assert.equal(
      encode({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "a", qos: 0 }] }, v)[0],
      0x82,
    );
    assert.equal(encode({ cmd: "unsubscribe", messageId: 1, unsubscriptions: ["a"] }, v)[0], 0xa2);
    assert.equal(encode({ cmd: "puback", messageId: 1 }, v)[0], 0x40);
    assert.equal(encode({ cmd: "pubrec", messageId: 1 }, v)[0], 0x50);
    assert.equal(encode({ cmd: "pubcomp", messageId: 1 }, v)[0], 0x70);
  }
});

test("v3/v3.1.1 UNSUBACK has no payload; v5 UNSUBACK has properties and reason codes", () => {
  assert.equal(hex(encode({ cmd: "unsuback", messageId: 5, granted: [0] }, 4)), "b0020005");
  assert.equal(hex(encode({ cmd: "unsuback", messageId: 5 }, 3)), "b0020005");
  assert.equal(
    hex(encode({ cmd: "unsuback", messageId: 5, granted: [0, 0x11] }, 5)),
    "b00500050000" + "11",
  );
});

test("v3.1.1 SUBACK carries granted QoS or 0x80 [MQTT-3.9.3-2]", () => {
  assert.equal(
    hex(encode({ cmd: "suback", messageId: 9, granted: [0, 1, 2, 0x80] }, 4)),
    "90060009" + "00010280",
  );
  assert.equal(
    hex(encode({ cmd: "suback", messageId: 9, granted: [0x87] }, 5)),
    "9004000900" + "87",
  );
});

test("v3.1 CONNECT uses protocol name MQIsdp and level 3; v3.1.1 MQTT level 4 [MQTT-3.1.2-1]", () => {
  const base = { cmd: "connect", bridgeMode: false, clean: true, keepalive: 5, clientId: "c" };
  const v3 = encode({ ...base, protocolId: "MQIsdp", protocolVersion: 3 } as Packet, 3);
  assert.equal(hex(v3.subarray(2, 11)), "00064d514973647003");
  const v4 = encode({ ...base, protocolId: "MQTT", protocolVersion: 4 } as Packet, 4);
  assert.equal(hex(v4.subarray(2, 9)), "00044d51545404");
  // An empty protocolId falls back to the version's own name.
  const v3d = encode({ ...base, protocolId: "", protocolVersion: 3 } as Packet, 3);
  assert.equal(hex(v3d), hex(v3));
  // A bridge sets bit 7 of the level.
  const br = encode(
    { ...base, bridgeMode: true, protocolId: "MQTT", protocolVersion: 4 } as Packet,
    4,
  );
  assert.equal(br[8], 0x84);
});

test("v5 CONNACK always has a property length (§3.2.2.3)", () => {
  assert.equal(
    hex(encode({ cmd: "connack", sessionPresent: false, reasonCode: 0 }, 5)),
    "2003000000",
  );
  assert.equal(hex(encode({ cmd: "connack", sessionPresent: true, reasonCode: 0 }, 4)), "20020100");
});

test("v5 PUBLISH: several Subscription Identifiers, each its own property [MQTT-3.3.4-3 v5]", () => {
  const p: PublishPacket = {
    cmd: "publish",
    topic: "t",
    payload: new Uint8Array(0),
    qos: 0,
    retain: false,
    dup: false,
    properties: { subscriptionIdentifier: [1, 128, 268_435_455] },
  };
  // topic "t" = 0001 74; properties (length 0a) = 0b 01, 0b 8001, 0b ffffff7f
  assert.equal(hex(encode(p, 5)), "300e" + "000174" + "0a" + "0b01" + "0b8001" + "0bffffff7f");
  assert.deepStrictEqual(mqttParse(encode(p, 5), 5)[0].properties, {
    subscriptionIdentifier: [1, 128, 268_435_455],
  });
});

test("user properties are written in the order given, repeats kept [MQTT-3.3.2-18 v5]", () => {
  const pairs: [string, string][] = [["b", "1"], ["a", "2"], ["b", "3"]];
  const buf = encode({
    cmd: "puback",
    messageId: 1,
    reasonCode: 0,
    properties: { userProperties: pairs },
  }, 5);
  const body = hex(buf.subarray(6));
  const pair = (k: string, val: string) => "26" + "0001" + hex(bytes(k)) + "0001" + hex(bytes(val));
  assert.equal(body, pair("b", "1") + pair("a", "2") + pair("b", "3"));
});

test("properties below v5 are not written", () => {
  const p: PublishPacket = {
    cmd: "publish",
    topic: "t",
    payload: bytes("x"),
    qos: 0,
    retain: false,
    dup: false,
    properties: { contentType: "c", userProperties: [["a", "b"]] },
  };
  assert.equal(hex(encode(p, 4)), "3004000174" + "78");
  assert.equal(hex(encode({ cmd: "puback", messageId: 1, reasonCode: 0x80 }, 4)), "40020001");
  assert.equal(hex(encode({ cmd: "disconnect", reasonCode: 0x80 }, 4)), "e000");
});

test("Remaining Length uses 1 to 4 bytes at the boundaries (§1.5.5)", () => {
  const pub = (n: number): PublishPacket => ({
    cmd: "publish",
    topic: "t",
    payload: new Uint8Array(n),
    qos: 0,
    retain: false,
    dup: false,
  });
  // Remaining Length = 3 (topic) + payload.
  for (
    const [rem, head] of [[127, "7f"], [128, "8001"], [16383, "ff7f"], [16384, "808001"]] as const
  ) {
    const b = encode(pub(rem - 3), 4);
    assert.equal(hex(b.subarray(1, 1 + head.length / 2)), head);
    assert.equal(b.length, 1 + head.length / 2 + rem);
  }
  const huge = encode(pub(2_097_152 - 3), 4);
  assert.equal(hex(huge.subarray(1, 5)), "80808001");
});

test("strings: UTF-8 byte lengths, surrogate pairs, lone surrogates as U+FFFD [MQTT-1.5.4-1 v5]", () => {
  const x30 = "x".repeat(30);
  for (
    const s of [
      ...["", "abc", "é", "€", "😀", "a😀b€é", "\ud800", "x\udc00y", "\u0000"],
      ...[x30, x30 + "é", "é" + x30, x30 + "\ud800", "\udbff" + x30, "😀".repeat(20)],
      ...[x30 + "😀" + x30 + "€", x30 + "\u07ff\u0800\uffff"],
    ]
  ) {
    assert.equal(utf8Length(s), te.encode(s).length, JSON.stringify(s));
    const b = encode({ cmd: "unsubscribe", messageId: 1, unsubscriptions: [s] }, 4);
    assert.equal(hex(b.subarray(6)), hex(te.encode(s)));
    assert.equal((b[4] << 8) | b[5], te.encode(s).length);
  }
  // A long non-ASCII string goes through TextEncoder.encodeInto.
  const long = "ä".repeat(1000) + "x".repeat(100) + "😀";
  const b = encode({ cmd: "unsubscribe", messageId: 1, unsubscriptions: [long] }, 4);
  assert.deepStrictEqual(b.subarray(7), te.encode(long));
});

// ---------------------------------------------------------------------------------------------
// Values that cannot be encoded

test("a string over 65535 bytes (MQTT 5.0 §1.5.4) is refused with a clear error", () => {
  const max = "x".repeat(65535);
  assert.equal(
    encode({ cmd: "unsubscribe", messageId: 1, unsubscriptions: [max] }, 4).length,
    1 + 3 + 2 + 65537,
  );
  assert.throws(
    () => encode({ cmd: "unsubscribe", messageId: 1, unsubscriptions: [max + "x"] }, 4),
    /topic filter: 65536 UTF-8 bytes exceeds the limit of 65535/,
  );
  // 21846 three-byte characters = 65538 bytes although only 21846 UTF-16 units.
  assert.throws(
    () =>
      encode({
        cmd: "publish",
        topic: "€".repeat(21846),
        payload: new Uint8Array(0),
        qos: 0,
        retain: false,
        dup: false,
      }, 4),
    /topic name: 65538 UTF-8 bytes/,
  );
  assert.throws(
    () =>
      encode({
        cmd: "auth",
        reasonCode: 0,
        properties: { authenticationData: new Uint8Array(65536) },
      }, 5),
    /authenticationData: 65536 bytes exceeds/,
  );
});

test("a packet over 268435455 bytes is refused with a clear error (§1.5.5)", () => {
  // A real 256 MB payload is too much for a unit test: a Uint8Array-like that only has a length
  // is enough, since the size is checked before any byte is written.
  const payload = { length: 268_435_455, __proto__: Uint8Array.prototype } as unknown as Uint8Array;
  const p: PublishPacket = {
    cmd: "publish",
    topic: "t",
    payload,
    qos: 0,
    retain: false,
    dup: false,
  };
  assert.throws(() => encode(p, 4), /exceeds the maximum packet size/);
  assert.throws(() => preparePublish(p, 4), /exceeds the maximum packet size/);
});

test("invalid values are refused: packet ids, QoS, property ranges, AUTH below v5", () => {
  const pub = { cmd: "publish", topic: "t", payload: new Uint8Array(0), retain: false, dup: false };
  assert.throws(
    () => encode({ ...pub, qos: 1 } as Packet, 4),
    /invalid packet identifier undefined/,
  );
  assert.throws(
    () => encode({ ...pub, qos: 1, messageId: 0 } as Packet, 4),
    /invalid packet identifier 0/,
  );
  assert.throws(() => encode({ ...pub, qos: 3 } as unknown as Packet, 4), /invalid QoS 3/);
  assert.throws(
    () => encode({ cmd: "puback", messageId: 70000 }, 4),
    /invalid packet identifier 70000/,
  );
  assert.throws(() => encode({ cmd: "puback", messageId: 0 }, 4), /invalid packet identifier 0/);
  assert.throws(() => encode({ cmd: "auth", reasonCode: 0 }, 4), /AUTH: it exists only in MQTT 5/);
  assert.throws(
    () => encode({ cmd: "disconnect", properties: { sessionExpiryInterval: 2 ** 32 } }, 5),
    /sessionExpiryInterval/,
  );
  assert.throws(
    () => encode({ cmd: "disconnect", properties: { receiveMaximum: 65536 } }, 5),
    /receiveMaximum/,
  );
  assert.throws(
    () =>
      encode({ ...pub, qos: 0, properties: { subscriptionIdentifier: 268_435_456 } } as Packet, 5),
    /subscriptionIdentifier/,
  );
  assert.throws(() => encode({ ...pub, qos: 0, payload: "s" } as unknown as Packet, 4), /payload/);
  assert.throws(() => encode({ cmd: "pingreq" }, 6 as ProtocolVersion), /protocol version 6/);
  assert.throws(
    () => encode({ cmd: "disconnect", properties: { reasonStrin: "x" } as Properties }, 5),
    /property reasonStrin: not an MQTT 5 property/,
  );
});

// ---------------------------------------------------------------------------------------------
// encodeInto, prepared PUBLISH, helpers

/** Prepared PUBLISH bytes with packet id `id`, in a buffer of their own. */
function withId(prep: PreparedPublish, id: number): Uint8Array {
  const out = new Uint8Array(prep.bytes.length);
  writePrepared(prep, id, out, 0);
  return out;
}

test("encodeInto writes the same bytes at an offset and returns the end", () => {
  for (const v of VERSIONS) {
    for (const [name, p] of samples(v)) {
      const want = encode(p, v);
      const out = new Uint8Array(want.length + 10).fill(0xee);
      const end = encodeInto(p, v, out, 7);
      assert.equal(end, 7 + want.length, name);
      assert.deepStrictEqual(out.subarray(7, end), want, name);
      assert.equal(out[6], 0xee);
    }
  }
  assert.throws(() => encodeInto({ cmd: "pingreq" }, 4, new Uint8Array(3), 2), RangeError);
});

test("preparePublish + writePrepared equal encode() with that packet id (QoS 0/1/2, v3/v4/v5)", () => {
  for (const v of VERSIONS) {
    for (const qos of [0, 1, 2] as const) {
      for (const withProps of [false, true]) {
        const p: PublishPacket = {
          cmd: "publish",
          topic: "fan/out/ü",
          payload: bytes("payload ".repeat(20)),
          qos,
          retain: qos === 1,
          dup: false,
          properties: withProps
            ? {
              messageExpiryInterval: 10,
              contentType: "text/plain",
              subscriptionIdentifier: [4, 5],
              userProperties: userProps,
            }
            : undefined,
        };
        const prep = preparePublish(p, v);
        assert.equal(prep.idOffset === -1, qos === 0);
        const out = new Uint8Array(prep.bytes.length * 3 + 5);
        let pos = 5;
        const ids = [1, 0x1234, 65535];
        for (const id of ids) pos = writePrepared(prep, id, out, pos);
        assert.equal(pos, 5 + prep.bytes.length * 3);
        let at = 5;
        for (const id of ids) {
          const want = encode(qos > 0 ? { ...p, messageId: id } : p, v);
          assert.deepStrictEqual(
            out.subarray(at, at + want.length),
            want,
            `v${v} qos${qos} id ${id}`,
          );
          at += want.length;
        }
        // The prepared bytes themselves are not modified by writePrepared.
        assert.deepStrictEqual(
          withId(prep, 7),
          encode(qos > 0 ? { ...p, messageId: 7 } : p, v),
        );
        if (qos > 0) assert.throws(() => writePrepared(prep, 0, out, 0), /packet identifier 0/);
      }
    }
  }
});

test("PINGRESP and PINGREQ equal the general encoder", () => {
  for (const v of VERSIONS) {
    assert.deepStrictEqual(PINGRESP, encode({ cmd: "pingresp" }, v));
    assert.deepStrictEqual(PINGREQ, encode({ cmd: "pingreq" }, v));
  }
  assert.equal(hex(PINGRESP), "d000");
});

test("properties are written in the order of the object's keys, like mqtt-packet", () => {
  const a = encode({
    cmd: "disconnect",
    properties: { reasonString: "r", sessionExpiryInterval: 1 },
  }, 5);
  const b = encode({
    cmd: "disconnect",
    properties: { sessionExpiryInterval: 1, reasonString: "r" },
  }, 5);
  assert.equal(hex(a), "e00b" + "00" + "09" + "1f000172" + "1100000001");
  assert.equal(hex(b), "e00b" + "00" + "09" + "1100000001" + "1f000172");
  // Absent (undefined) properties are skipped.
  assert.equal(
    hex(encode({ cmd: "disconnect", reasonCode: 4, properties: { reasonString: undefined } }, 5)),
    "e00104",
  );
});

test("packets from encode() never share bytes, however many are made", () => {
  const made: [Uint8Array, string][] = [];
  for (let i = 1; i <= 3000; i++) {
    const p: Packet = i % 3 === 0 ? { cmd: "puback", messageId: i } : {
      cmd: "publish",
      topic: `t/${i}`,
      payload: new Uint8Array(i % 1500).fill(i & 0xff),
      qos: 1,
      retain: false,
      dup: false,
      messageId: i,
    };
    const b = encode(i % 3 === 1 ? { cmd: "pubrec", messageId: i } : p, 4);
    made.push([b, hex(b)]);
  }
  for (const [b, h] of made) assert.equal(hex(b), h);
});

test("preparePublish bytes own their buffer (they may be kept with a message for long)", () => {
  for (const size of [0, 10, 900, 3000, 10_000]) {
    const prep = preparePublish({
      cmd: "publish",
      topic: "keep",
      payload: new Uint8Array(size),
      qos: 1,
      retain: true,
      dup: false,
      messageId: 1,
    }, 4);
    assert.equal(prep.bytes.byteOffset, 0);
    assert.equal(prep.bytes.buffer.byteLength, prep.bytes.length);
  }
});

test("PUBLISH topics around the ASCII fast path: non-ASCII anywhere, 1 to 200 units", () => {
  const out = new Uint8Array(4096);
  for (const n of [1, 24, 25, 63, 64, 65, 200]) {
    for (const at of [-1, 0, n - 1]) {
      for (const ch of ["é", "€", "😀"]) {
        const chars = Array.from({ length: n }, (_, i) => String.fromCharCode(97 + (i % 26)));
        if (at >= 0) chars[at] = ch;
        const topic = chars.join("");
        for (const v of VERSIONS) {
          const p: PublishPacket = {
            cmd: "publish",
            topic,
            payload: bytes("x".repeat(n)),
            qos: 1,
            retain: false,
            dup: false,
            messageId: 9,
            properties: v === 5 ? { contentType: "c" } : undefined,
          };
          const mp = { ...toMqtt(p, v), payload: Buffer.from(p.payload) };
          const want = hex(mqttPacket.generate(mp as any, { protocolVersion: v }));
          const what = `v${v} n=${n} at=${at} ${ch}`;
          assert.equal(hex(encode(p, v)), want, what);
          const end = encodeInto(p, v, out, 3);
          assert.equal(hex(out.subarray(3, end)), want, what);
          assert.equal(hex(withId(preparePublish(p, v), 9)), want, what);
        }
      }
    }
  }
  // A buffer with room for the ASCII guess but not for the real length is refused.
  const p: PublishPacket = {
    cmd: "publish",
    topic: "ü",
    payload: new Uint8Array(0),
    qos: 0,
    retain: false,
    dup: false,
  };
  assert.equal(encode(p, 4).length, 6);
  assert.throws(() => encodeInto(p, 4, new Uint8Array(5), 0), RangeError);
});
