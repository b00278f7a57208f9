/**
 * MQTT packet encoder (3.1, 3.1.1 and 5.0), in plain TypeScript.
 *
 * Every packet is encoded in two passes: a sizing pass that computes the exact length (UTF-8 byte
 * lengths of strings included, counted once), then one allocation of exactly that size (or a
 * caller's buffer, `encodeInto`) and a writing pass that fills it. Strings are written straight
 * into the output (an inline loop for short ASCII, `TextEncoder.encodeInto` otherwise) and their
 * 2-byte length prefix is filled in afterwards, so no intermediate arrays are made. A PUBLISH
 * topic of up to 64 units is not even scanned for sizing: it is assumed ASCII and checked while
 * it is copied (a non-ASCII topic is then sized exactly and written again).
 *
 * A PUBLISH that goes to many subscribers is encoded once with `preparePublish` and copied per
 * subscriber with `writePrepared`, which patches only the packet identifier.
 *
 * Why TypeScript and not WASM: see bench/README.md ("## Encode").
 */

import type { ConnectPacket, Packet, Properties, ProtocolVersion, PublishPacket } from "./types.ts";

/** Largest value of a Variable Byte Integer, hence of a Remaining Length (§1.5.5). */
const MAX_VARINT = 268_435_455;
/** Largest UTF-8 string or binary data field: 2-byte length prefix (§1.5.4, §1.5.6). */
export const MAX_STRING = 65_535;

/** PINGRESP, always the same two bytes (§3.13). Shared: do not modify. */
export const PINGRESP: Uint8Array = new Uint8Array([0xd0, 0x00]);
/** PINGREQ, always the same two bytes (§3.12). Shared: do not modify. */
export const PINGREQ: Uint8Array = new Uint8Array([0xc0, 0x00]);

const textEncoder = new TextEncoder();

// ---------------------------------------------------------------------------------------------
// Output allocation. A fresh `new Uint8Array(n)` costs ~600 ns in V8 (Deno) at any size and
// ~250 ns in JavaScriptCore (Bun) above 1000 bytes, while a view on a shared 16 KB slab costs
// 30-100 ns (bench/README.md). So packets up to 4 KB are cut from a slab, except that
// JavaScriptCore allocates typed arrays of up to 1000 bytes in its own heap faster still.
// A slab stays alive while any packet cut from it does, so only packets that are written out
// soon come from slabs (encode, encodeAck, encodeConnack; the same trade as Node's Buffer pool):
// keep a `.slice()` copy if you store one. `preparePublish` bytes, which the broker keeps with a
// message (retained messages, queues), always get their own exact-size buffer.

const SLAB_SIZE = 16_384;
const POOL_MAX = 4_096;
/** Sizes up to this are allocated directly: engine trait, checked once (see above). */
const DIRECT_MAX = typeof (globalThis as { Bun?: unknown }).Bun === "object" ? 1_000 : 0;
let slab = new ArrayBuffer(SLAB_SIZE);
let slabUsed = 0;

/** A zeroed Uint8Array of exactly `n` bytes, possibly a view on a shared slab. */
function alloc(n: number): Uint8Array {
  if (n <= DIRECT_MAX || n > POOL_MAX) return new Uint8Array(n);
  if (slabUsed + n > SLAB_SIZE) {
    slab = new ArrayBuffer(SLAB_SIZE);
    slabUsed = 0;
  }
  const out = new Uint8Array(slab, slabUsed, n);
  slabUsed += (n + 7) & ~7;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Primitives

const NON_ASCII = /[\u0080-\uffff]/;

/** Number of UTF-8 bytes `TextEncoder` writes for `s` (a lone surrogate becomes U+FFFD, 3 bytes). */
export function utf8Length(s: string): number {
  const n = s.length;
  // Most strings are ASCII: a regex scan (native) beats a charCodeAt loop beyond a few dozen
  // characters, the loop wins below.
  if (n > 24) {
    const i = s.search(NON_ASCII);
    return i < 0 ? n : utf8LengthFrom(s, i);
  }
  for (let i = 0; i < n; i++) {
    if (s.charCodeAt(i) >= 0x80) return utf8LengthFrom(s, i);
  }
  return n;
}

/** utf8Length of `s` whose first `start` UTF-16 units are ASCII. */
function utf8LengthFrom(s: string, start: number): number {
  const n = s.length;
  let len = n;
  for (let i = start; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      len += 1;
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        len += 2; // 2 UTF-16 units -> 4 bytes
        i++;
      } else {
        len += 2;
      }
    } else {
      len += 2;
    }
  }
  return len;
}

/** Byte length of a string field including its 2-byte prefix; throws when too long (§1.5.4). */
function stringSize(s: string, what: string): number {
  if (typeof s !== "string") throw new Error(`cannot encode ${what}: not a string`);
  const len = utf8Length(s);
  if (len > MAX_STRING) {
    throw new Error(`cannot encode ${what}: ${len} UTF-8 bytes exceeds the limit of ${MAX_STRING}`);
  }
  return len + 2;
}

/** Byte length of a binary field including its 2-byte prefix; throws when too long (§1.5.6). */
function binarySize(b: Uint8Array, what: string): number {
  if (!(b instanceof Uint8Array)) throw new Error(`cannot encode ${what}: not a Uint8Array`);
  if (b.length > MAX_STRING) {
    throw new Error(`cannot encode ${what}: ${b.length} bytes exceeds the limit of ${MAX_STRING}`);
  }
  return b.length + 2;
}

/** Bytes taken by `n` as a Variable Byte Integer (§1.5.5). */
function varintSize(n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4;
}

function writeVarint(out: Uint8Array, pos: number, n: number): number {
  while (n >= 128) {
    out[pos++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  out[pos++] = n;
  return pos;
}

/** Writes a UTF-8 string with its 2-byte length prefix at `pos`; returns the new position. */
function writeString(out: Uint8Array, pos: number, s: string): number {
  const n = s.length;
  let p = pos + 2;
  let i = 0;
  if (n < 64) {
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      out[p++] = c;
    }
  }
  if (i < n) {
    const rest = i === 0 ? s : s.slice(i);
    p += textEncoder.encodeInto(rest, out.subarray(p)).written;
  }
  const len = p - pos - 2;
  out[pos] = len >>> 8;
  out[pos + 1] = len & 0xff;
  return p;
}

function writeBinary(out: Uint8Array, pos: number, b: Uint8Array): number {
  const len = b.length;
  out[pos] = len >>> 8;
  out[pos + 1] = len & 0xff;
  out.set(b, pos + 2);
  return pos + 2 + len;
}

function checkId(id: number | undefined, what: string): number {
  if (typeof id !== "number" || !(id >= 1 && id <= 0xffff) || (id | 0) !== id) {
    // [MQTT-2.2.1-3 v5] a packet identifier is a non-zero 16-bit integer.
    throw new Error(`cannot encode ${what}: invalid packet identifier ${id}`);
  }
  return id;
}

function checkRemaining(rem: number, what: string): number {
  if (rem > MAX_VARINT) {
    throw new Error(`cannot encode ${what}: ${rem} bytes exceeds the maximum packet size`);
  }
  return rem;
}

// ---------------------------------------------------------------------------------------------
// Properties (MQTT 5, §2.2.2). Written in the order of the object's keys (the order mqtt-packet
// uses too); user properties in the order given [MQTT-3.3.2-18 v5]; a Subscription Identifier
// array becomes one property per entry [MQTT-3.3.4-3 v5]. Keys are visited with for-in and
// dispatched by a switch: reading all 27 possible names from every object was ~10× slower.

const BYTE = 0, U16 = 1, U32 = 2, VAR = 3, STR = 4, BIN = 5, PAIRS = 6;

/** (identifier << 3) | kind for a property name; -1 for a name that is not a property. */
function propCode(name: string): number {
  switch (name) {
    case "payloadFormatIndicator":
      return (0x01 << 3) | BYTE;
    case "messageExpiryInterval":
      return (0x02 << 3) | U32;
    case "contentType":
      return (0x03 << 3) | STR;
    case "responseTopic":
      return (0x08 << 3) | STR;
    case "correlationData":
      return (0x09 << 3) | BIN;
    case "subscriptionIdentifier":
      return (0x0b << 3) | VAR;
    case "userProperties":
      return (0x26 << 3) | PAIRS;
    case "topicAlias":
      return (0x23 << 3) | U16;
    case "sessionExpiryInterval":
      return (0x11 << 3) | U32;
    case "assignedClientIdentifier":
      return (0x12 << 3) | STR;
    case "serverKeepAlive":
      return (0x13 << 3) | U16;
    case "authenticationMethod":
      return (0x15 << 3) | STR;
    case "authenticationData":
      return (0x16 << 3) | BIN;
    case "requestProblemInformation":
      return (0x17 << 3) | BYTE;
    case "willDelayInterval":
      return (0x18 << 3) | U32;
    case "requestResponseInformation":
      return (0x19 << 3) | BYTE;
    case "responseInformation":
      return (0x1a << 3) | STR;
    case "serverReference":
      return (0x1c << 3) | STR;
    case "reasonString":
      return (0x1f << 3) | STR;
    case "receiveMaximum":
      return (0x21 << 3) | U16;
    case "topicAliasMaximum":
      return (0x22 << 3) | U16;
    case "maximumQoS":
      return (0x24 << 3) | BYTE;
    case "retainAvailable":
      return (0x25 << 3) | BYTE;
    case "maximumPacketSize":
      return (0x27 << 3) | U32;
    case "wildcardSubscriptionAvailable":
      return (0x28 << 3) | BYTE;
    case "subscriptionIdentifiersAvailable":
      return (0x29 << 3) | BYTE;
    case "sharedSubscriptionAvailable":
      return (0x2a << 3) | BYTE;
    default:
      return -1;
  }
}

function checkInt(v: unknown, max: number, name: string): number {
  if (typeof v !== "number" || !(v >= 0 && v <= max) || Math.floor(v) !== v) {
    throw new Error(`cannot encode ${name}: ${v} is not an integer in 0..${max}`);
  }
  return v;
}

function propValueSize(kind: number, v: unknown, name: string): number {
  switch (kind) {
    case BYTE:
      checkInt(v, 0xff, `property ${name}`);
      return 2;
    case U16:
      checkInt(v, 0xffff, `property ${name}`);
      return 3;
    case U32:
      checkInt(v, 0xffff_ffff, `property ${name}`);
      return 5;
    case VAR:
      checkInt(v, MAX_VARINT, `property ${name}`);
      return 1 + varintSize(v as number);
    case STR:
      return 1 + stringSize(v as string, `property ${name}`);
    default:
      return 1 + binarySize(v as Uint8Array, `property ${name}`);
  }
}

/** Length of the property bytes (without the Property Length varint); 0 for none. */
function propertiesLength(props: Properties | undefined): number {
  if (props === undefined || props === null) return 0;
  let len = 0;
  for (const name in props) {
    const v = (props as Record<string, unknown>)[name];
    if (v === undefined || v === null) continue;
    const code = propCode(name);
    const kind = code & 7;
    if (kind === PAIRS) {
      const up = v as [string, string][];
      for (let i = 0; i < up.length; i++) {
        const pair = up[i];
        len += 1 + stringSize(pair[0], "user property name") +
          stringSize(pair[1], "user property value");
      }
    } else if (kind === VAR && Array.isArray(v)) {
      for (let j = 0; j < v.length; j++) len += propValueSize(VAR, v[j], name);
    } else if (code < 0) {
      throw new Error(`cannot encode property ${name}: not an MQTT 5 property`);
    } else {
      len += propValueSize(kind, v, name);
    }
  }
  if (len > MAX_VARINT) throw new Error(`cannot encode properties: ${len} bytes is too long`);
  return len;
}

function writePropValue(out: Uint8Array, p: number, id: number, kind: number, v: any): number {
  out[p++] = id;
  switch (kind) {
    case BYTE:
      out[p++] = v;
      return p;
    case U16:
      out[p++] = v >>> 8;
      out[p++] = v & 0xff;
      return p;
    case U32:
      out[p++] = v >>> 24;
      out[p++] = (v >>> 16) & 0xff;
      out[p++] = (v >>> 8) & 0xff;
      out[p++] = v & 0xff;
      return p;
    case VAR:
      return writeVarint(out, p, v);
    case STR:
      return writeString(out, p, v);
    default:
      return writeBinary(out, p, v);
  }
}

/** Writes Property Length then the properties; `len` must be `propertiesLength(props)`. */
function writeProperties(
  out: Uint8Array,
  p: number,
  props: Properties | undefined,
  len: number,
): number {
  p = writeVarint(out, p, len);
  if (len === 0 || !props) return p;
  for (const name in props) {
    const v = (props as Record<string, unknown>)[name];
    if (v === undefined || v === null) continue;
    const code = propCode(name);
    const kind = code & 7;
    const id = code >> 3;
    if (kind === PAIRS) {
      const up = v as [string, string][];
      for (let i = 0; i < up.length; i++) {
        out[p++] = id;
        p = writeString(out, p, up[i][0]);
        p = writeString(out, p, up[i][1]);
      }
    } else if (kind === VAR && Array.isArray(v)) {
      for (let j = 0; j < v.length; j++) p = writePropValue(out, p, id, VAR, v[j]);
    } else {
      p = writePropValue(out, p, id, kind, v);
    }
  }
  return p;
}

// ---------------------------------------------------------------------------------------------
// Sizing pass. Each returns the Remaining Length; `propLen` receives the properties' length so
// the writing pass does not count again.

/** Scratch for the sizing pass: [0] properties length, [1] will properties length. */
const scratch = [0, 0];

function connectRemaining(p: ConnectPacket, v: ProtocolVersion): number {
  const protocolId = p.protocolId || (v === 3 ? "MQIsdp" : "MQTT");
  let rem = stringSize(protocolId, "protocol name") + 1 + 1 + 2; // name, level, flags, keepalive
  if (v === 5) {
    const pl = propertiesLength(p.properties);
    scratch[0] = pl;
    rem += varintSize(pl) + pl;
  }
  rem += stringSize(p.clientId ?? "", "client identifier");
  const will = p.will;
  if (will) {
    if (v === 5) {
      const wl = propertiesLength(will.properties);
      scratch[1] = wl;
      rem += varintSize(wl) + wl;
    }
    rem += stringSize(will.topic, "will topic") + binarySize(will.payload, "will payload");
  }
  if (p.username !== undefined) rem += stringSize(p.username, "user name");
  if (p.password !== undefined) rem += binarySize(p.password, "password");
  return rem;
}

/** Topics up to this many UTF-16 units are first assumed ASCII (see `publishRemaining`). */
const ASCII_GUESS_MAX = 64;

/**
 * Remaining Length of a PUBLISH. With `guess`, a topic of up to ASCII_GUESS_MAX units is taken
 * to be ASCII (1 byte per unit) without scanning it: `writePublish` checks while it copies and
 * reports a wrong guess, and the caller then sizes again exactly. This saves one pass over the
 * topic for the usual ASCII topics.
 */
function publishRemaining(p: PublishPacket, v: ProtocolVersion, guess: boolean): number {
  if (!(p.payload instanceof Uint8Array)) {
    throw new Error("cannot encode PUBLISH: payload is not a Uint8Array");
  }
  const t = p.topic;
  const topicSize = guess && typeof t === "string" && t.length <= ASCII_GUESS_MAX
    ? t.length + 2
    : stringSize(t, "topic name");
  let rem = topicSize + (p.qos > 0 ? 2 : 0) + p.payload.length;
  if (v === 5) {
    const pl = propertiesLength(p.properties);
    scratch[0] = pl;
    rem += varintSize(pl) + pl;
  }
  return rem;
}

/** v5 PUBACK/PUBREC/PUBREL/PUBCOMP/DISCONNECT/AUTH tail: reason code and properties, short forms. */
function reasonTailSize(reasonCode: number | undefined, props: Properties | undefined): number {
  // §3.4.2.1: the reason code and property length can be omitted when the reason is 0x00 and
  // there are no properties; §3.4.2.2.1: the property length can be omitted when there are none.
  const pl = propertiesLength(props);
  if (pl > 0) {
    scratch[0] = pl;
    return 1 + varintSize(pl) + pl;
  }
  return (reasonCode ?? 0) === 0 ? 0 : 1;
}

function remainingLength(packet: Packet, v: ProtocolVersion): number {
  switch (packet.cmd) {
    case "publish":
      return publishRemaining(packet, v, false);
    case "puback":
    case "pubrec":
    case "pubrel":
    case "pubcomp":
      return 2 + (v === 5 ? reasonTailSize(packet.reasonCode, packet.properties) : 0);
    case "connect":
      return connectRemaining(packet, v);
    case "connack": {
      if (v !== 5) return 2;
      const pl = propertiesLength(packet.properties);
      scratch[0] = pl;
      return 2 + varintSize(pl) + pl;
    }
    case "subscribe": {
      let rem = 2;
      if (v === 5) {
        const pl = propertiesLength(packet.properties);
        scratch[0] = pl;
        rem += varintSize(pl) + pl;
      }
      const subs = packet.subscriptions;
      for (let i = 0; i < subs.length; i++) rem += stringSize(subs[i].topic, "topic filter") + 1;
      return rem;
    }
    case "suback":
    case "unsuback": {
      let rem = 2;
      if (v === 5) {
        const pl = propertiesLength(packet.properties);
        scratch[0] = pl;
        rem += varintSize(pl) + pl + (packet.granted?.length ?? 0);
      } else if (packet.cmd === "suback") {
        rem += packet.granted.length;
      }
      return rem;
    }
    case "unsubscribe": {
      let rem = 2;
      if (v === 5) {
        const pl = propertiesLength(packet.properties);
        scratch[0] = pl;
        rem += varintSize(pl) + pl;
      }
      const topics = packet.unsubscriptions;
      for (let i = 0; i < topics.length; i++) rem += stringSize(topics[i], "topic filter");
      return rem;
    }
    case "pingreq":
    case "pingresp":
      return 0;
    case "disconnect":
      return v === 5 ? reasonTailSize(packet.reasonCode, packet.properties) : 0;
    case "auth":
      if (v !== 5) throw new Error("cannot encode AUTH: it exists only in MQTT 5");
      return reasonTailSize(packet.reasonCode, packet.properties);
    default:
      throw new Error(`cannot encode packet: unknown cmd ${(packet as { cmd: unknown }).cmd}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Writing pass.

const ACK_TYPE = { puback: 4, pubrec: 5, pubrel: 6, pubcomp: 7 } as const;

function writeConnect(out: Uint8Array, p: number, pk: ConnectPacket, v: ProtocolVersion): number {
  const protocolId = pk.protocolId || (v === 3 ? "MQIsdp" : "MQTT");
  p = writeString(out, p, protocolId);
  // The level byte is the version the packet is laid out for; bit 7 marks a bridge.
  out[p++] = v | (pk.bridgeMode ? 0x80 : 0);
  const will = pk.will;
  let flags = pk.clean ? 0x02 : 0;
  if (will) flags |= 0x04 | ((will.qos & 3) << 3) | (will.retain ? 0x20 : 0);
  if (pk.password !== undefined) flags |= 0x40;
  if (pk.username !== undefined) flags |= 0x80;
  out[p++] = flags;
  const ka = checkInt(pk.keepalive ?? 0, 0xffff, "keepalive");
  out[p++] = ka >>> 8;
  out[p++] = ka & 0xff;
  if (v === 5) p = writeProperties(out, p, pk.properties, scratch[0]);
  p = writeString(out, p, pk.clientId ?? "");
  if (will) {
    if (v === 5) p = writeProperties(out, p, will.properties, scratch[1]);
    p = writeString(out, p, will.topic);
    p = writeBinary(out, p, will.payload);
  }
  if (pk.username !== undefined) p = writeString(out, p, pk.username);
  if (pk.password !== undefined) p = writeBinary(out, p, pk.password);
  return p;
}

function writeReasonTail(
  out: Uint8Array,
  p: number,
  rem: number,
  base: number,
  reasonCode: number | undefined,
  props: Properties | undefined,
): number {
  if (rem === base) return p;
  out[p++] = reasonCode ?? 0;
  if (rem === base + 1) return p;
  return writeProperties(out, p, props, scratch[0]);
}

/**
 * Writes a PUBLISH of Remaining Length `rem` at `p`. `id` is written for QoS 1/2. With `guess`
 * (see `publishRemaining`) the topic is copied as ASCII, and -1 is returned if it is not.
 */
function writePublish(
  out: Uint8Array,
  p: number,
  packet: PublishPacket,
  v: ProtocolVersion,
  rem: number,
  guess: boolean,
  id: number,
): number {
  const qos = packet.qos;
  out[p++] = 0x30 | (packet.dup ? 0x08 : 0) | (qos << 1) | (packet.retain ? 0x01 : 0);
  p = writeVarint(out, p, rem);
  const t = packet.topic;
  if (guess && t.length <= ASCII_GUESS_MAX) {
    const n = t.length;
    out[p++] = n >>> 8;
    out[p++] = n & 0xff;
    for (let i = 0; i < n; i++) {
      const c = t.charCodeAt(i);
      if (c >= 0x80) return -1;
      out[p++] = c;
    }
  } else {
    p = writeString(out, p, t);
  }
  if (qos > 0) {
    out[p++] = id >>> 8;
    out[p++] = id & 0xff;
  }
  if (v === 5) p = writeProperties(out, p, packet.properties, scratch[0]);
  const payload = packet.payload;
  if (payload.length <= 16) {
    for (let i = 0; i < payload.length; i++) out[p++] = payload[i];
    return p;
  }
  out.set(payload, p);
  return p + payload.length;
}

function checkQos(qos: number): void {
  if (qos !== 0 && qos !== 1 && qos !== 2) {
    throw new Error(`cannot encode PUBLISH: invalid QoS ${qos}`); // [MQTT-3.3.1-4]
  }
}

/** Writes `packet` at `pos` of `out`, which must have `rem` (+ header) bytes free. */
function writeBody(
  out: Uint8Array,
  p: number,
  packet: Packet,
  v: ProtocolVersion,
  rem: number,
): number {
  switch (packet.cmd) {
    case "publish":
      return writePublish(out, p, packet, v, rem, false, checkId(packet.messageId, "PUBLISH"));
    case "puback":
    case "pubrec":
    case "pubrel":
    case "pubcomp": {
      const type = ACK_TYPE[packet.cmd];
      // [MQTT-3.6.1-1] PUBREL fixed header flags are 0010.
      out[p++] = (type << 4) | (type === 6 ? 0x02 : 0);
      p = writeVarint(out, p, rem);
      const id = checkId(packet.messageId, packet.cmd.toUpperCase());
      out[p++] = id >>> 8;
      out[p++] = id & 0xff;
      if (v !== 5) return p;
      return writeReasonTail(out, p, rem, 2, packet.reasonCode, packet.properties);
    }
    case "connect":
      out[p++] = 0x10;
      p = writeVarint(out, p, rem);
      return writeConnect(out, p, packet, v);
    case "connack":
      out[p++] = 0x20;
      p = writeVarint(out, p, rem);
      out[p++] = packet.sessionPresent ? 1 : 0;
      out[p++] = checkInt(packet.reasonCode, 0xff, "reasonCode");
      if (v === 5) p = writeProperties(out, p, packet.properties, scratch[0]);
      return p;
    case "subscribe": {
      // [MQTT-3.8.1-1] SUBSCRIBE fixed header flags are 0010.
      out[p++] = 0x82;
      p = writeVarint(out, p, rem);
      const id = checkId(packet.messageId, "SUBSCRIBE");
      out[p++] = id >>> 8;
      out[p++] = id & 0xff;
      if (v === 5) p = writeProperties(out, p, packet.properties, scratch[0]);
      const subs = packet.subscriptions;
      for (let i = 0; i < subs.length; i++) {
        const s = subs[i];
        p = writeString(out, p, s.topic);
        let opts = s.qos & 3;
        if (v === 5) {
          opts |= (s.nl ? 0x04 : 0) | (s.rap ? 0x08 : 0) | (((s.rh ?? 0) & 3) << 4);
        }
        out[p++] = opts;
      }
      return p;
    }
    case "suback":
    case "unsuback": {
      out[p++] = packet.cmd === "suback" ? 0x90 : 0xb0;
      p = writeVarint(out, p, rem);
      const id = checkId(packet.messageId, packet.cmd.toUpperCase());
      out[p++] = id >>> 8;
      out[p++] = id & 0xff;
      if (v === 5) p = writeProperties(out, p, packet.properties, scratch[0]);
      // v3/v3.1.1 SUBACK: granted QoS or 0x80 [MQTT-3.9.3-2]; v3 UNSUBACK has no payload.
      if (v === 5 || packet.cmd === "suback") {
        const g = packet.granted ?? [];
        for (let i = 0; i < g.length; i++) out[p++] = g[i];
      }
      return p;
    }
    case "unsubscribe": {
      // [MQTT-3.10.1-1] UNSUBSCRIBE fixed header flags are 0010.
      out[p++] = 0xa2;
      p = writeVarint(out, p, rem);
      const id = checkId(packet.messageId, "UNSUBSCRIBE");
      out[p++] = id >>> 8;
      out[p++] = id & 0xff;
      if (v === 5) p = writeProperties(out, p, packet.properties, scratch[0]);
      const topics = packet.unsubscriptions;
      for (let i = 0; i < topics.length; i++) p = writeString(out, p, topics[i]);
      return p;
    }
    case "pingreq":
      out[p++] = 0xc0;
      out[p++] = 0;
      return p;
    case "pingresp":
      out[p++] = 0xd0;
      out[p++] = 0;
      return p;
    case "disconnect":
    case "auth":
      out[p++] = packet.cmd === "disconnect" ? 0xe0 : 0xf0;
      p = writeVarint(out, p, rem);
      if (v !== 5) return p;
      return writeReasonTail(out, p, rem, 0, packet.reasonCode, packet.properties);
  }
}

function checkVersion(v: ProtocolVersion): void {
  if (v !== 3 && v !== 4 && v !== 5) throw new Error(`cannot encode: protocol version ${v}`);
}

// ---------------------------------------------------------------------------------------------
// Public API

/**
 * Encodes any packet at protocol version 3, 4 or 5 (both directions: CONNACK, PUBLISH, … that
 * the broker sends, CONNECT, SUBSCRIBE, … that clients and bridges send). Properties are ignored
 * below version 5. Throws an Error naming the field when a value cannot be encoded.
 * Packets up to 4 KB may be views on a shared slab: write them out, or `.slice()` to keep one.
 */
export function encode(packet: Packet, version: ProtocolVersion): Uint8Array {
  checkVersion(version);
  if (packet.cmd === "publish") {
    checkQos(packet.qos);
    const id = packet.qos > 0 ? checkId(packet.messageId, "PUBLISH") : 0;
    let rem = checkRemaining(publishRemaining(packet, version, true), "publish");
    let out = alloc(1 + varintSize(rem) + rem);
    if (writePublish(out, 0, packet, version, rem, true, id) < 0) {
      rem = checkRemaining(publishRemaining(packet, version, false), "publish");
      out = alloc(1 + varintSize(rem) + rem);
      writePublish(out, 0, packet, version, rem, false, id);
    }
    return out;
  }
  const rem = checkRemaining(remainingLength(packet, version), packet.cmd);
  const out = alloc(1 + varintSize(rem) + rem);
  writeBody(out, 0, packet, version, rem);
  return out;
}

/**
 * Encodes `packet` into `out` at `pos` (e.g. a connection's outgoing buffer) and returns the
 * position after it. Throws a RangeError when `out` has too little room from `pos`.
 */
export function encodeInto(
  packet: Packet,
  version: ProtocolVersion,
  out: Uint8Array,
  pos: number,
): number {
  checkVersion(version);
  if (packet.cmd === "publish") {
    checkQos(packet.qos);
    const id = packet.qos > 0 ? checkId(packet.messageId, "PUBLISH") : 0;
    const rem = checkRemaining(publishRemaining(packet, version, true), "publish");
    checkRoom(out, pos, 1 + varintSize(rem) + rem);
    const end = writePublish(out, pos, packet, version, rem, true, id);
    if (end >= 0) return end;
    // A non-ASCII topic: size exactly and write again.
  }
  const rem = checkRemaining(remainingLength(packet, version), packet.cmd);
  checkRoom(out, pos, 1 + varintSize(rem) + rem);
  return writeBody(out, pos, packet, version, rem);
}

function checkRoom(out: Uint8Array, pos: number, total: number): void {
  if (pos + total > out.length) {
    throw new RangeError(`encodeInto: ${total} bytes do not fit at ${pos} of ${out.length}`);
  }
}

/** A PUBLISH encoded once for many receivers that get the same bytes except the packet id. */
export interface PreparedPublish {
  bytes: Uint8Array;
  /** offset of the 2-byte packet id, -1 for QoS 0 */
  idOffset: number;
}

/**
 * Encodes a PUBLISH once for many receivers. For QoS 1/2 the packet id bytes are a placeholder
 * (the packet's `messageId`, or 0 when it has none) that `writePrepared` overwrites.
 */
export function preparePublish(p: PublishPacket, version: ProtocolVersion): PreparedPublish {
  checkVersion(version);
  checkQos(p.qos);
  const id = p.messageId ?? 0;
  let rem = checkRemaining(publishRemaining(p, version, true), "publish");
  let headerLen = 1 + varintSize(rem);
  let bytes = new Uint8Array(headerLen + rem); // owned: may be kept long (see alloc)
  if (writePublish(bytes, 0, p, version, rem, true, id) < 0) {
    rem = checkRemaining(publishRemaining(p, version, false), "publish");
    headerLen = 1 + varintSize(rem);
    bytes = new Uint8Array(headerLen + rem);
    writePublish(bytes, 0, p, version, rem, false, id);
  }
  // The packet id follows the fixed header and the topic.
  const idOffset = p.qos > 0
    ? headerLen + 2 + ((bytes[headerLen] << 8) | bytes[headerLen + 1])
    : -1;
  return { bytes, idOffset };
}

/** Copy prepared bytes into `out` at `pos` with `id` written at idOffset; returns new pos. */
export function writePrepared(
  prep: PreparedPublish,
  id: number,
  out: Uint8Array,
  pos: number,
): number {
  const b = prep.bytes;
  out.set(b, pos);
  const o = prep.idOffset;
  if (o >= 0) {
    if (!(id >= 1 && id <= 0xffff)) {
      throw new Error(`cannot encode PUBLISH: invalid packet identifier ${id}`); // [MQTT-2.2.1-3 v5]
    }
    out[pos + o] = id >>> 8;
    out[pos + o + 1] = id & 0xff;
  }
  return pos + b.length;
}

/** First byte of PUBACK, PUBREC, PUBREL (flags 0010 [MQTT-3.6.1-1]) and PUBCOMP. */
export const PUBACK = 0x40, PUBREC = 0x50, PUBREL = 0x62, PUBCOMP = 0x70;

/**
 * Write a PUBACK, PUBREC, PUBREL or PUBCOMP (`first`: PUBACK … PUBCOMP) without properties at
 * `pos`: 4 bytes, or 5 when `reasonCode` is not 0 (it is omitted when 0, §3.4.2.1; pass 0 for
 * v3). Returns the new position.
 */
export function writeAck(
  out: Uint8Array,
  pos: number,
  first: number,
  id: number,
  reasonCode: number,
): number {
  out[pos] = first;
  out[pos + 1] = reasonCode ? 3 : 2;
  out[pos + 2] = id >>> 8;
  out[pos + 3] = id & 0xff;
  if (!reasonCode) return pos + 4;
  out[pos + 4] = reasonCode;
  return pos + 5;
}
