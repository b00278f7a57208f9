// Encoder -> decoder round trips: every packet type at every protocol version is encoded by
// src/codec/encoder.ts, decoded by src/codec/decoder.ts (the WASM decoder, which validates
// everything it reads) and must come back equal to what went in. Both are also checked against
// mqtt-packet separately (codec_encode.test.ts, codec_decode.test.ts); this file checks that our
// two halves agree with each other, including on the forms mqtt-packet does not produce.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Decoder } from "../src/codec/decoder.ts";
import { encode, PINGREQ, PINGRESP, preparePublish, writePrepared } from "../src/codec/encoder.ts";
import type {
  Packet,
  Properties,
  ProtocolVersion,
  PublishPacket,
  Subscription,
} from "../src/codec/types.ts";

const VERSIONS: ProtocolVersion[] = [3, 4, 5];
const te = new TextEncoder();
const bytes = (s: string) => te.encode(s);

function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Decodes `buf` with a fresh decoder at version `v`; fails the test on a decode error. */
function decodeAll(buf: Uint8Array, v: ProtocolVersion): Packet[] {
  const r = new Decoder({ protocolVersion: v }).push(buf);
  assert.equal(r.error, undefined, r.error?.message ?? "");
  return r.packets;
}

/**
 * What the decoder gives back for `p` sent at version `v`: the fields the wire carries at that
 * version and nothing else (no properties below v5; v5 acks and DISCONNECT always carry a reason
 * code, 0 when the short form omitted it; subscription options only in v5; no empty objects).
 */
function expected(p: Packet, v: ProtocolVersion): Packet {
  const o: any = structuredClone(p);
  const v5 = v === 5;
  // An empty list of user properties or subscription identifiers puts nothing on the wire.
  for (const props of [o.properties, o.will?.properties]) {
    for (const k of Object.keys(props ?? {})) {
      if (Array.isArray(props[k]) && props[k].length === 0) delete props[k];
    }
    // One Subscription Identifier is one property: the decoder gives it back as a number.
    const sid = props?.subscriptionIdentifier;
    if (Array.isArray(sid) && sid.length === 1) props.subscriptionIdentifier = sid[0];
  }
  if (o.will?.properties && Object.keys(o.will.properties).length === 0) delete o.will.properties;
  if (!v5 || (o.properties && Object.keys(o.properties).length === 0)) delete o.properties;
  switch (o.cmd) {
    case "connect":
      o.protocolVersion = v;
      if (o.will && (!v5 || !o.will.properties)) delete o.will.properties;
      break;
    case "publish":
      if (o.qos === 0) delete o.messageId;
      break;
    case "puback":
    case "pubrec":
    case "pubrel":
    case "pubcomp":
    case "disconnect":
      if (v5) o.reasonCode ??= 0;
      else delete o.reasonCode;
      break;
    case "subscribe":
      o.subscriptions = o.subscriptions.map((s: Subscription) =>
        v5
          ? { topic: s.topic, qos: s.qos, nl: !!s.nl, rap: !!s.rap, rh: s.rh ?? 0 }
          : { topic: s.topic, qos: s.qos }
      );
      break;
    case "unsuback":
      if (!v5) delete o.granted;
      break;
  }
  return o;
}

const userProps: [string, string][] = [["z", "1"], ["a", "2"], ["z", "3"], ["ключ", "值 😀"]];

/** Every packet type, several shapes each, valid at version `v` (the decoder validates). */
function samples(v: ProtocolVersion): Packet[] {
  const v5 = v === 5;
  const pr = (x: Properties): Properties | undefined => (v5 ? x : undefined);
  const protocolId = v === 3 ? "MQIsdp" : "MQTT";
  const connect = {
    cmd: "connect" as const,
    protocolId,
    protocolVersion: v,
    bridgeMode: false,
    clean: true,
    keepalive: 60,
    clientId: "rt-client",
  };
  const list: Packet[] = [
    connect,
    { ...connect, clean: false, keepalive: 0, clientId: "ü-😀", bridgeMode: true },
    {
      ...connect,
      will: {
        topic: "status/rt",
        payload: bytes("offline"),
        qos: 1,
        retain: true,
        properties: pr({
          willDelayInterval: 5,
          payloadFormatIndicator: 1,
          messageExpiryInterval: 100,
          contentType: "text/plain",
          responseTopic: "r",
          correlationData: new Uint8Array([1, 2, 3]),
          userProperties: userProps,
        }),
      },
      username: "name",
      password: new Uint8Array([0, 255, 128]),
      properties: pr({
        sessionExpiryInterval: 300,
        receiveMaximum: 50,
        maximumPacketSize: 4096,
        topicAliasMaximum: 8,
        requestResponseInformation: 1,
        requestProblemInformation: 0,
        authenticationMethod: "PLAIN",
        authenticationData: bytes("secret"),
        userProperties: userProps,
      }),
    },
    {
      ...connect,
      will: { topic: "w", payload: new Uint8Array(0), qos: 2, retain: false },
      username: "",
      password: new Uint8Array(0),
    },
    { cmd: "connack", sessionPresent: false, reasonCode: 0 },
    { cmd: "connack", sessionPresent: true, reasonCode: 0 },
    { cmd: "connack", sessionPresent: false, reasonCode: v5 ? 0x87 : 5 },
    { cmd: "publish", topic: "a", payload: new Uint8Array(0), qos: 0, retain: false, dup: false },
    {
      cmd: "publish",
      topic: "home/ünï/😀/temp",
      payload: bytes("22.5"),
      qos: 1,
      retain: true,
      dup: true,
      messageId: 1,
    },
    {
      cmd: "publish",
      topic: "big/" + "x".repeat(300),
      payload: new Uint8Array(70_000).map((_, i) => (i * 7) & 0xff),
      qos: 2,
      retain: false,
      dup: false,
      messageId: 65535,
      properties: pr({
        payloadFormatIndicator: 0,
        messageExpiryInterval: 0xffffffff,
        topicAlias: 65535,
        responseTopic: "reply/here",
        correlationData: new Uint8Array(300).fill(9),
        userProperties: userProps,
        subscriptionIdentifier: [1, 127, 128, 16_383, 16_384, 268_435_455],
        contentType: "application/octet-stream",
      }),
    },
    {
      cmd: "subscribe",
      messageId: 2,
      subscriptions: [
        { topic: "a/+/b", qos: 0 },
        { topic: "#", qos: 1, nl: true, rap: false, rh: 1 },
        { topic: "$share/grp/c/#", qos: 2, nl: false, rap: true, rh: 2 },
      ],
      properties: pr({ subscriptionIdentifier: 99, userProperties: [["s", "t"]] }),
    },
    { cmd: "suback", messageId: 2, granted: [0, 1, 2, 0x80] },
    { cmd: "unsubscribe", messageId: 3, unsubscriptions: ["a/+/b", "ü/#"] },
    {
      cmd: "unsubscribe",
      messageId: 4,
      unsubscriptions: ["x"],
      properties: pr({ userProperties: [["u", "1"]] }),
    },
    { cmd: "unsuback", messageId: 3, granted: v5 ? [0, 0x11] : undefined },
    { cmd: "pingreq" },
    { cmd: "pingresp" },
    { cmd: "disconnect" },
  ];
  for (const cmd of ["puback", "pubrec", "pubrel", "pubcomp"] as const) {
    list.push({ cmd, messageId: 7 });
    list.push({ cmd, messageId: 65535, reasonCode: 0 });
  }
  if (v5) {
    const ok = { puback: 0x10, pubrec: 0x80, pubrel: 0x92, pubcomp: 0x92 } as const;
    for (const cmd of ["puback", "pubrec", "pubrel", "pubcomp"] as const) {
      list.push({ cmd, messageId: 8, reasonCode: ok[cmd] });
      list.push({
        cmd,
        messageId: 9,
        reasonCode: 0,
        properties: { reasonString: "fine", userProperties: userProps },
      });
      list.push({ cmd, messageId: 10, reasonCode: ok[cmd], properties: { reasonString: "r" } });
    }
    list.push(
      {
        cmd: "connack",
        sessionPresent: true,
        reasonCode: 0,
        properties: {
          sessionExpiryInterval: 10,
          receiveMaximum: 65535,
          maximumQoS: 1,
          retainAvailable: 1,
          maximumPacketSize: 1 << 20,
          assignedClientIdentifier: "auto-1",
          topicAliasMaximum: 16,
          reasonString: "hello",
          userProperties: userProps,
          wildcardSubscriptionAvailable: 0,
          subscriptionIdentifiersAvailable: 1,
          sharedSubscriptionAvailable: 0,
          serverKeepAlive: 120,
          responseInformation: "ri",
          serverReference: "srv",
          authenticationMethod: "SCRAM",
          authenticationData: bytes("x"),
        },
      },
      {
        cmd: "suback",
        messageId: 5,
        granted: [0, 1, 2, 0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2],
        properties: { reasonString: "partly", userProperties: [["k", "v"]] },
      },
      {
        cmd: "unsuback",
        messageId: 6,
        granted: [0x80, 0x83, 0x87, 0x8f, 0x91],
        properties: { reasonString: "no" },
      },
      { cmd: "disconnect", reasonCode: 0 },
      { cmd: "disconnect", reasonCode: 0x04 },
      {
        cmd: "disconnect",
        reasonCode: 0x9d,
        properties: {
          sessionExpiryInterval: 0,
          reasonString: "moved",
          serverReference: "other",
          userProperties: [["d", "e"]],
        },
      },
      { cmd: "auth", reasonCode: 0 },
      { cmd: "auth", reasonCode: 0x19 },
      {
        cmd: "auth",
        reasonCode: 0x18,
        properties: {
          authenticationMethod: "SCRAM",
          authenticationData: new Uint8Array([1, 2]),
          reasonString: "go on",
          userProperties: [["a", "b"]],
        },
      },
    );
  }
  return list;
}

for (const v of VERSIONS) {
  test(`v${v}: every packet type, encoded then decoded, equals the original`, () => {
    const list = samples(v);
    assert.equal(new Set(list.map((p) => p.cmd)).size, v === 5 ? 15 : 14);
    for (const p of list) {
      const got = decodeAll(encode(p, v), v);
      assert.equal(got.length, 1, p.cmd);
      assert.deepStrictEqual(got[0], expected(p, v), `v${v} ${p.cmd} ${JSON.stringify(got[0])}`);
    }
  });

  test(`v${v}: all samples as one stream, and split at every 97th byte, decode in order`, () => {
    const list = samples(v).filter((p) => p.cmd !== "connect"); // a CONNECT resets the version
    const parts = list.map((p) => encode(p, v));
    const all = new Uint8Array(parts.reduce((n, b) => n + b.length, 0));
    let pos = 0;
    for (const b of parts) {
      all.set(b, pos);
      pos += b.length;
    }
    const want = list.map((p) => expected(p, v));
    assert.deepStrictEqual(decodeAll(all, v), want);
    const d = new Decoder({ protocolVersion: v });
    const got: Packet[] = [];
    for (let i = 0; i < all.length; i += 97) {
      const r = d.push(all.subarray(i, Math.min(i + 97, all.length)));
      assert.equal(r.error, undefined, r.error?.message ?? "");
      got.push(...r.packets);
    }
    assert.deepStrictEqual(got, want);
  });
}

test("a CONNECT sets the decoder's version: CONNECT then PUBLISH at each version", () => {
  for (const v of VERSIONS) {
    const c = samples(v)[2];
    const p: PublishPacket = {
      cmd: "publish",
      topic: "t",
      payload: bytes("p"),
      qos: 1,
      retain: false,
      dup: false,
      messageId: 3,
      properties: v === 5 ? { contentType: "c" } : undefined,
    };
    const a = encode(c, v);
    const b = encode(p, v);
    const buf = new Uint8Array(a.length + b.length);
    buf.set(a);
    buf.set(b, a.length);
    // The decoder starts at another version and learns the right one from the CONNECT.
    const r = new Decoder({ protocolVersion: v === 4 ? 5 : 4 }).push(buf);
    assert.equal(r.error, undefined, r.error?.message ?? "");
    assert.deepStrictEqual(r.packets, [expected(c, v), expected(p, v)]);
  }
});

test("prepared PUBLISH bytes decode to the packet with each receiver's packet id", () => {
  for (const v of VERSIONS) {
    for (const qos of [0, 1, 2] as const) {
      const p: PublishPacket = {
        cmd: "publish",
        topic: "fan/ü",
        payload: bytes("to many"),
        qos,
        retain: false,
        dup: false,
        properties: v === 5
          ? { messageExpiryInterval: 9, userProperties: userProps, subscriptionIdentifier: [3, 4] }
          : undefined,
      };
      const prep = preparePublish(p, v);
      const ids = [1, 2, 500, 65535];
      const out = new Uint8Array(prep.bytes.length * ids.length);
      let pos = 0;
      for (const id of ids) pos = writePrepared(prep, id, out, pos);
      const got = decodeAll(out, v);
      assert.deepStrictEqual(
        got,
        ids.map((id) => expected(qos ? { ...p, messageId: id } : p, v)),
        `v${v} qos ${qos}`,
      );
    }
  }
});

test("the shared PINGREQ and PINGRESP bytes decode", () => {
  for (const v of VERSIONS) {
    assert.deepStrictEqual(decodeAll(PINGREQ, v), [{ cmd: "pingreq" }]);
    assert.deepStrictEqual(decodeAll(PINGRESP, v), [{ cmd: "pingresp" }]);
  }
});

test("random PUBLISH packets round-trip at every version (seeded)", () => {
  const rnd = mulberry32(0x5eed);
  const int = (n: number) => Math.floor(rnd() * n);
  const chars = ["a", "b", "/", "é", "€", "😀", "z", "0", " ", "ß"];
  const str = (max: number) => {
    let s = "";
    for (let i = int(max) + 1; i > 0; i--) s += chars[int(chars.length)];
    return s;
  };
  for (let n = 0; n < 300; n++) {
    const v = VERSIONS[n % 3];
    const qos = int(3) as 0 | 1 | 2;
    const props: Properties = {};
    if (rnd() < 0.5) props.messageExpiryInterval = int(0xffffffff);
    if (rnd() < 0.3) props.contentType = str(20);
    if (rnd() < 0.3) props.payloadFormatIndicator = int(2);
    if (rnd() < 0.3) props.correlationData = new Uint8Array(int(50)).map(() => int(256));
    if (rnd() < 0.3) props.topicAlias = 1 + int(65535);
    if (rnd() < 0.4) {
      props.subscriptionIdentifier = rnd() < 0.5
        ? 1 + int(268_435_455)
        : Array.from({ length: 1 + int(4) }, () => 1 + int(268_435_455));
    }
    if (rnd() < 0.4) {
      props.userProperties = Array.from({ length: int(5) }, () => [str(8), str(8)]);
    }
    const size = [0, 1, 100, 127, 128, 5000, 20_000][int(7)];
    const p: PublishPacket = {
      cmd: "publish",
      topic: str(40),
      payload: new Uint8Array(size).map(() => int(256)),
      qos,
      retain: rnd() < 0.5,
      dup: qos > 0 && rnd() < 0.3, // [MQTT-3.3.1-2] DUP is 0 for QoS 0
      messageId: qos ? 1 + int(65535) : undefined,
      properties: props,
    };
    if (p.messageId === undefined) delete p.messageId;
    const got = decodeAll(encode(p, v), v);
    assert.deepStrictEqual(got, [expected(p, v)], `case ${n}`);
  }
});
