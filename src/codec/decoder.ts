/**
 * Streaming MQTT packet decoder (3.1, 3.1.1, 5.0).
 *
 * Each `push` copies the socket read (after any carried partial packet) into the memory of one
 * shared WebAssembly instance; a single `scan` call frames, decodes and validates every packet in
 * it and writes a packet table, which this file turns into `Packet` objects. Per-connection state
 * (the carried tail, the protocol version) lives in the `Decoder`.
 */
import { Buffer } from "node:buffer";
import process from "node:process";
import { codecWasm } from "./wasm_bytes.generated.ts";
import { instantiate } from "./wasm.ts";
import type {
  DecodeError,
  DecodeResult,
  Packet,
  Properties,
  ProtocolVersion,
  QoS,
  Subscription,
  Will,
} from "./types.ts";

export interface DecoderOptions {
  /** Protocol version before a CONNECT is seen (the client side sets it); default 4. */
  protocolVersion?: ProtocolVersion;
  /** Largest accepted packet in bytes, fixed header included; default 268435460. */
  maxPacketSize?: number;
  /**
   * Decode what a client sends (the broker's side): the first packet must be CONNECT
   * [MQTT-3.1.0-1], refused on its first byte, and a PUBLISH may not carry a Subscription
   * Identifier [MQTT-3.3.4-6 v5]. Default false: either side's packets are accepted.
   */
  fromClient?: boolean;
}

/** The largest packet MQTT can encode: 1 + 4 + 268435455 bytes. */
export const MAX_PACKET_SIZE = 268435460;

interface CodecExports {
  memory: WebAssembly.Memory;
  prepare(len: number): number;
  scan(start: number, end: number, version: number, maxPacket: number, role: number): number;
  resultPtr(): number;
  tablePtr(): number;
}

/** The shared instance and views over its memory (refreshed when the memory grows). */
class Codec {
  readonly x: CodecExports;
  buf!: ArrayBuffer;
  u8!: Uint8Array;
  u32!: Uint32Array;
  readonly res: number;
  readonly tab: number;
  constructor() {
    this.x = instantiate(codecWasm).exports as unknown as CodecExports;
    this.res = this.x.resultPtr() >>> 2;
    this.tab = this.x.tablePtr() >>> 2;
    this.refresh();
  }
  refresh(): void {
    const buf = this.x.memory.buffer as ArrayBuffer;
    if (buf !== this.buf) {
      this.buf = buf;
      this.u8 = new Uint8Array(buf);
      this.u32 = new Uint32Array(buf);
      memBuf = Buffer.from(buf) as NativeSlices;
    }
  }
}

let shared: Codec | undefined;
function codec(): Codec {
  return shared ??= new Codec();
}

// Result block fields (u32 index from resultPtr).
const R_CONSUMED = 1, R_NEED = 2, R_ERR = 3, R_RC = 4, R_DETAIL = 5;
const R_VERSION = 6, R_STATUS = 7;
// Row fields (u32 index inside a 16-word row).
const F_HDR = 0, F_ID = 1, F_STR_OFF = 2, F_STR_LEN = 3, F_BIN_OFF = 4, F_BIN_LEN = 5;
const F_PROP_IDX = 6, F_PROP_CNT = 7, F_RC = 8, F_LIST_IDX = 9, F_LIST_CNT = 10, F_HASH = 11;
const ROW_WORDS = 16;
const NON_ASCII = 0x80000000;

/**
 * PUBLISH topic strings, shared by every decoder: slot = topic hash (computed by the WASM scan) &
 * mask. A hit is checked byte for byte, so a collision only costs a fresh decode. Building a
 * string costs more than comparing one, and real traffic repeats its topics.
 */
const TOPIC_SLOTS = 4096;
const TOPIC_CACHE_MAX = 128;
const topicCache: string[] = new Array(TOPIC_SLOTS).fill("");

function topicName(u8: Uint8Array, off: number, lenWord: number, hash: number): string {
  if (lenWord > TOPIC_CACHE_MAX) return strRef(u8, off, lenWord); // long or non-ASCII
  const slot = hash & (TOPIC_SLOTS - 1);
  const cached = topicCache[slot];
  if (cached.length === lenWord) {
    let i = 0;
    while (i < lenWord && cached.charCodeAt(i) === u8[off + i]) i++;
    if (i === lenWord) return cached;
  }
  const s = text(u8, off, lenWord, false);
  topicCache[slot] = s;
  return s;
}

/**
 * Payload copies. Allocating a small ArrayBuffer costs about 0.5-1 µs on V8 (Deno) but is cheap
 * on JavaScriptCore (Bun), where views over a shared ArrayBuffer are the slower choice (measured
 * with bench/decode.ts: 1 KB payloads 2x slower as views on Bun, 2x faster as views on Deno).
 * So on V8 a payload of up to SHARED_MAX bytes is a view into a copy of the WINDOW input bytes
 * that start at the first payload not yet covered (one allocation for many small payloads), and
 * larger payloads get their own copy; on JavaScriptCore every payload gets its own `slice`.
 * A kept view keeps its window (at most WINDOW bytes, like Node's Buffer pool) alive.
 */
export const SHARE_PAYLOADS = process.versions.bun === undefined;
const SHARED_MAX = 2048;
const WINDOW = 16 * 1024;
const EMPTY = new ArrayBuffer(0);
let winBuf: ArrayBuffer = EMPTY;
let winLo = 0;
let winHi = 0;
/** End (address) of the input being turned into packets; a window never reaches past it. */
let inputEnd = 0;

function payloadOf(u8: Uint8Array, off: number, len: number): Uint8Array {
  if (!SHARE_PAYLOADS || len > SHARED_MAX) return u8.slice(off, off + len);
  if (len === 0) return new Uint8Array(EMPTY, 0, 0);
  if (off < winLo || off + len > winHi) {
    winLo = off;
    winHi = Math.min(off + WINDOW, inputEnd);
    winBuf = u8.slice(winLo, winHi).buffer;
  }
  return new Uint8Array(winBuf, off - winLo, len);
}

/**
 * Strings are made from WASM memory with node:buffer's native slicers where present (about
 * 3x faster than a `TextDecoder` call on a fresh subarray on both runtimes, and no view object),
 * `TextDecoder` otherwise. The WASM scan has already validated the UTF-8 and flagged non-ASCII.
 */
interface NativeSlices {
  latin1Slice?(start: number, end: number): string;
  utf8Slice?(start: number, end: number): string;
}
const utf8 = new TextDecoder();
let memBuf: NativeSlices = {};

/** A string at `off` of `len` bytes; `wide` when the WASM scan saw a non-ASCII byte. */
function text(u8: Uint8Array, off: number, len: number, wide: boolean): string {
  if (!wide && memBuf.latin1Slice) return memBuf.latin1Slice(off, off + len);
  if (wide && memBuf.utf8Slice) return memBuf.utf8Slice(off, off + len);
  return utf8.decode(u8.subarray(off, off + len));
}

/** A string stored as (offset, length | nonAscii << 31). */
function strRef(u8: Uint8Array, off: number, lenWord: number): string {
  return text(u8, off, lenWord & 0x7fffffff, (lenWord & NON_ASCII) !== 0);
}

function readProps(u8: Uint8Array, u32: Uint32Array, idx: number, cnt: number): Properties {
  const p: Properties = {};
  const end = idx + cnt * 4;
  for (; idx < end; idx += 4) {
    const w0 = u32[idx];
    const v = u32[idx + 1];
    switch (w0 & 0xff) {
      case 0x01:
        p.payloadFormatIndicator = v;
        break;
      case 0x02:
        p.messageExpiryInterval = v;
        break;
      case 0x03:
        p.contentType = text(u8, v, u32[idx + 3], (w0 & 0x100) !== 0);
        break;
      case 0x08:
        p.responseTopic = text(u8, v, u32[idx + 3], (w0 & 0x100) !== 0);
        break;
      case 0x09:
        p.correlationData = u8.slice(v, v + u32[idx + 3]);
        break;
      case 0x0b: {
        const old = p.subscriptionIdentifier;
        if (old === undefined) p.subscriptionIdentifier = v;
        else if (typeof old === "number") p.subscriptionIdentifier = [old, v];
        else old.push(v);
        break;
      }
      case 0x11:
        p.sessionExpiryInterval = v;
        break;
      case 0x12:
        p.assignedClientIdentifier = text(u8, v, u32[idx + 3], (w0 & 0x100) !== 0);
        break;
      case 0x13:
        p.serverKeepAlive = v;
        break;
      case 0x15:
        p.authenticationMethod = text(u8, v, u32[idx + 3], (w0 & 0x100) !== 0);
        break;
      case 0x16:
        p.authenticationData = u8.slice(v, v + u32[idx + 3]);
        break;
      case 0x17:
        p.requestProblemInformation = v;
        break;
      case 0x18:
        p.willDelayInterval = v;
        break;
      case 0x19:
        p.requestResponseInformation = v;
        break;
      case 0x1a:
        p.responseInformation = text(u8, v, u32[idx + 3], (w0 & 0x100) !== 0);
        break;
      case 0x1c:
        p.serverReference = text(u8, v, u32[idx + 3], (w0 & 0x100) !== 0);
        break;
      case 0x1f:
        p.reasonString = text(u8, v, u32[idx + 3], (w0 & 0x100) !== 0);
        break;
      case 0x21:
        p.receiveMaximum = v;
        break;
      case 0x22:
        p.topicAliasMaximum = v;
        break;
      case 0x23:
        p.topicAlias = v;
        break;
      case 0x24:
        p.maximumQoS = v;
        break;
      case 0x25:
        p.retainAvailable = v;
        break;
      case 0x26: {
        const lens = u32[idx + 3];
        const k = text(u8, v, lens & 0xffff, (w0 & 0x100) !== 0);
        const val = text(u8, u32[idx + 2], lens >>> 16, (w0 & 0x200) !== 0);
        (p.userProperties ??= []).push([k, val]);
        break;
      }
      case 0x27:
        p.maximumPacketSize = v;
        break;
      case 0x28:
        p.wildcardSubscriptionAvailable = v;
        break;
      case 0x29:
        p.subscriptionIdentifiersAvailable = v;
        break;
      case 0x2a:
        p.sharedSubscriptionAvailable = v;
        break;
    }
  }
  return p;
}

const ACK_CMDS = ["puback", "pubrec", "pubrel", "pubcomp"] as const;

/** Turns table row `r` (u32 index) into a packet. */
function toPacket(u8: Uint8Array, u32: Uint32Array, r: number): Packet {
  const hdr = u32[r + F_HDR];
  const type = (hdr >>> 4) & 15;
  const v5 = ((hdr >>> 8) & 0xff) === 5;
  const pc = u32[r + F_PROP_CNT];
  switch (type) {
    case 3: {
      const qos = ((hdr >>> 1) & 3) as QoS;
      const off = u32[r + F_BIN_OFF];
      if (qos === 0 && pc === 0) {
        return {
          cmd: "publish",
          topic: topicName(u8, u32[r + F_STR_OFF], u32[r + F_STR_LEN], u32[r + F_HASH]),
          payload: payloadOf(u8, off, u32[r + F_BIN_LEN]),
          qos,
          retain: (hdr & 1) !== 0,
          dup: (hdr & 8) !== 0,
        };
      }
      const p: Packet = {
        cmd: "publish",
        topic: topicName(u8, u32[r + F_STR_OFF], u32[r + F_STR_LEN], u32[r + F_HASH]),
        payload: payloadOf(u8, off, u32[r + F_BIN_LEN]),
        qos,
        retain: (hdr & 1) !== 0,
        dup: (hdr & 8) !== 0,
      };
      if (qos > 0) p.messageId = u32[r + F_ID];
      if (pc) p.properties = readProps(u8, u32, u32[r + F_PROP_IDX], pc);
      return p;
    }
    case 1:
      return toConnect(u8, u32, r, hdr);
    case 2: {
      const p: Packet = {
        cmd: "connack",
        sessionPresent: ((hdr >>> 16) & 1) !== 0,
        reasonCode: u32[r + F_RC],
      };
      if (pc) p.properties = readProps(u8, u32, u32[r + F_PROP_IDX], pc);
      return p;
    }
    case 4:
    case 5:
    case 6:
    case 7: {
      const p: Packet = { cmd: ACK_CMDS[type - 4], messageId: u32[r + F_ID] };
      if (v5) p.reasonCode = u32[r + F_RC];
      if (pc) p.properties = readProps(u8, u32, u32[r + F_PROP_IDX], pc);
      return p;
    }
    case 8: {
      const subscriptions: Subscription[] = [];
      for (let i = u32[r + F_LIST_IDX], n = u32[r + F_LIST_CNT]; n > 0; n--, i += 4) {
        const o = u32[i + 2];
        const s: Subscription = { topic: strRef(u8, u32[i], u32[i + 1]), qos: (o & 3) as QoS };
        if (v5) {
          s.nl = (o & 4) !== 0;
          s.rap = (o & 8) !== 0;
          s.rh = (o >>> 4) & 3;
        }
        subscriptions.push(s);
      }
      const p: Packet = { cmd: "subscribe", messageId: u32[r + F_ID], subscriptions };
      if (pc) p.properties = readProps(u8, u32, u32[r + F_PROP_IDX], pc);
      return p;
    }
    case 9:
    case 11: {
      const off = u32[r + F_BIN_OFF];
      const granted = Array.from(u8.subarray(off, off + u32[r + F_BIN_LEN]));
      if (type === 9) {
        const p: Packet = { cmd: "suback", messageId: u32[r + F_ID], granted };
        if (pc) p.properties = readProps(u8, u32, u32[r + F_PROP_IDX], pc);
        return p;
      }
      const p: Packet = { cmd: "unsuback", messageId: u32[r + F_ID] };
      if (v5) p.granted = granted;
      if (pc) p.properties = readProps(u8, u32, u32[r + F_PROP_IDX], pc);
      return p;
    }
    case 10: {
      const unsubscriptions: string[] = [];
      for (let i = u32[r + F_LIST_IDX], n = u32[r + F_LIST_CNT]; n > 0; n--, i += 4) {
        unsubscriptions.push(strRef(u8, u32[i], u32[i + 1]));
      }
      const p: Packet = { cmd: "unsubscribe", messageId: u32[r + F_ID], unsubscriptions };
      if (pc) p.properties = readProps(u8, u32, u32[r + F_PROP_IDX], pc);
      return p;
    }
    case 12:
      return { cmd: "pingreq" };
    case 13:
      return { cmd: "pingresp" };
    case 14: {
      const p: Packet = { cmd: "disconnect" };
      if (v5) p.reasonCode = u32[r + F_RC];
      if (pc) p.properties = readProps(u8, u32, u32[r + F_PROP_IDX], pc);
      return p;
    }
    default: {
      const p: Packet = { cmd: "auth", reasonCode: u32[r + F_RC] };
      if (pc) p.properties = readProps(u8, u32, u32[r + F_PROP_IDX], pc);
      return p;
    }
  }
}

function toConnect(u8: Uint8Array, u32: Uint32Array, r: number, hdr: number): Packet {
  const flags = (hdr >>> 16) & 0xff;
  const raw = u32[r + F_RC];
  const b = u32[r + F_LIST_IDX]; // CONNECT block: 5 (offset, length) pairs, will props
  const p: Packet = {
    cmd: "connect",
    protocolId: strRef(u8, u32[r + F_STR_OFF], u32[r + F_STR_LEN]),
    protocolVersion: (raw & 0x7f) as ProtocolVersion,
    bridgeMode: (raw & 0x80) !== 0,
    clean: (flags & 2) !== 0,
    keepalive: u32[r + F_ID],
    clientId: strRef(u8, u32[b], u32[b + 1]),
  };
  if (flags & 4) {
    const po = u32[b + 4];
    const will: Will = {
      topic: strRef(u8, u32[b + 2], u32[b + 3]),
      payload: u8.slice(po, po + u32[b + 5]),
      qos: ((flags >>> 3) & 3) as QoS,
      retain: (flags & 0x20) !== 0,
    };
    if (u32[b + 11]) will.properties = readProps(u8, u32, u32[b + 10], u32[b + 11]);
    p.will = will;
  }
  if (flags & 0x80) p.username = strRef(u8, u32[b + 6], u32[b + 7]);
  if (flags & 0x40) {
    const o = u32[b + 8];
    p.password = u8.slice(o, o + u32[b + 9]);
  }
  const pc = u32[r + F_PROP_CNT];
  if (pc) p.properties = readProps(u8, u32, u32[r + F_PROP_IDX], pc);
  return p;
}

const TYPE_NAMES = [
  "reserved",
  "CONNECT",
  "CONNACK",
  "PUBLISH",
  "PUBACK",
  "PUBREC",
  "PUBREL",
  "PUBCOMP",
  "SUBSCRIBE",
  "SUBACK",
  "UNSUBSCRIBE",
  "UNSUBACK",
  "PINGREQ",
  "PINGRESP",
  "DISCONNECT",
  "AUTH",
];

const PROPERTY_NAMES: Record<number, string> = {
  0x01: "Payload Format Indicator",
  0x02: "Message Expiry Interval",
  0x03: "Content Type",
  0x08: "Response Topic",
  0x09: "Correlation Data",
  0x0b: "Subscription Identifier",
  0x11: "Session Expiry Interval",
  0x12: "Assigned Client Identifier",
  0x13: "Server Keep Alive",
  0x15: "Authentication Method",
  0x16: "Authentication Data",
  0x17: "Request Problem Information",
  0x18: "Will Delay Interval",
  0x19: "Request Response Information",
  0x1a: "Response Information",
  0x1c: "Server Reference",
  0x1f: "Reason String",
  0x21: "Receive Maximum",
  0x22: "Topic Alias Maximum",
  0x23: "Topic Alias",
  0x24: "Maximum QoS",
  0x25: "Retain Available",
  0x26: "User Property",
  0x27: "Maximum Packet Size",
  0x28: "Wildcard Subscription Available",
  0x29: "Subscription Identifier Available",
  0x2a: "Shared Subscription Available",
};

const hex = (n: number) => "0x" + n.toString(16).padStart(2, "0");
const prop = (id: number) => `${PROPERTY_NAMES[id] ?? "property"} (${hex(id)})`;

/** The log line for error `id` (ids as in wasm/assembly/codec.ts). */
function errorMessage(id: number, d: number, version: number): string {
  const t = TYPE_NAMES[d & 15];
  switch (id) {
    case 1:
      return "§2.2.3 remaining length longer than 4 bytes";
    case 2:
      return d === 15
        ? "§2.2.1 packet type 15 (AUTH) is reserved before MQTT 5"
        : "§2.2.1 packet type 0 is reserved";
    case 3:
      return `[MQTT-2.2.2-1 v3.1.1][MQTT-2.2.2-2 v3.1.1][MQTT-2.1.3-1 v5] reserved fixed header flags of ${t} must be 0000`;
    case 4: {
      const rule = d === 6 ? "[MQTT-3.6.1-1]" : d === 8 ? "[MQTT-3.8.1-1]" : "[MQTT-3.10.1-1]";
      return `${rule} fixed header flags of ${t} must be 0010`;
    }
    case 5:
      return `packet of ${d} bytes exceeds the maximum packet size`;
    case 6:
      return "a field runs past the end of the packet (remaining length too short)";
    case 7:
      return `unexpected bytes after the last field of ${t}`;
    case 8:
      return "[MQTT-1.5.4-1 v5] ill-formed UTF-8 string (invalid sequence or surrogate)";
    case 9:
      return "[MQTT-1.5.4-2 v5] UTF-8 string contains U+0000";
    case 10:
      return `[MQTT-3.3.2-2] wildcard in ${d ? "will topic" : "PUBLISH topic name"}`;
    case 11:
      return "[MQTT-3.3.1-4] PUBLISH with QoS 3";
    case 12:
      return "[MQTT-3.3.1-2] DUP set on a QoS 0 PUBLISH";
    case 13:
      return `[MQTT-2.2.1-3 v5][MQTT-2.3.1-1 v3.1.1] packet identifier 0 in ${t}`;
    case 14:
      return "[MQTT-3.1.2-3] reserved CONNECT flag (bit 0) is set";
    case 15:
      return `${
        version === 5 ? "[MQTT-3.1.2-11 v5]" : "[MQTT-3.1.2-13 v3.1.1]"
      } will QoS set without will flag`;
    case 16:
      return `${
        version === 5 ? "[MQTT-3.1.2-13 v5]" : "[MQTT-3.1.2-15 v3.1.1]"
      } will retain set without will flag`;
    case 17:
      return `${version === 5 ? "[MQTT-3.1.2-12 v5]" : "[MQTT-3.1.2-14 v3.1.1]"} will QoS 3`;
    case 18:
      return "[MQTT-3.1.2-22 v3.1.1] password flag set without user name flag";
    case 19:
      return `[MQTT-3.1.2-1][MQTT-3.1.2-2] unsupported protocol name or level ${hex(d)}`;
    case 20:
      return "[MQTT-3.8.3-3 v3.1.1][MQTT-3.8.3-2 v5] SUBSCRIBE without topic filters";
    case 21:
      return "[MQTT-3.10.3-2] UNSUBSCRIBE without topic filters";
    case 22:
      return `${
        version === 5 ? "[MQTT-3.8.3-5 v5]" : "[MQTT-3.8.3-4 v3.1.1]"
      } reserved subscription option bits set (${hex(d)})`;
    case 23:
      return `${
        version === 5 ? "[MQTT-3.8.3-5 v5]" : "[MQTT-3.8.3-4 v3.1.1]"
      } subscription with QoS 3`;
    case 24:
      return "[MQTT-3.8.3-5 v5] subscription with retain handling 3";
    case 25:
      return `[MQTT-4.7.3-1] empty topic filter in ${t}`;
    case 26:
      return `[MQTT-4.7.3-1] empty ${d ? "will topic" : "PUBLISH topic name"}`;
    case 27:
      return "§3.3.2.1 empty PUBLISH topic name without a Topic Alias";
    case 28:
      return `§2.2.2.2 unknown property identifier ${hex(d)}`;
    case 29:
      return `§2.2.2.2 ${prop(d & 0xff)} included more than once`;
    case 30:
      return `§2.2.2.2 ${prop(d & 0xff)} is not allowed in ${
        d >>> 8 ? TYPE_NAMES[d >>> 8] : "will properties"
      }`;
    case 31:
      return `invalid value ${d >>> 8} of ${prop(d & 0xff)}`;
    case 32:
      return `invalid reason code ${hex(d >>> 8)} in ${t}`;
    case 33:
      return "[MQTT-3.8.3-4 v5] No Local set on a shared subscription";
    case 34:
      return "[MQTT-3.2.2-1 v5] reserved CONNACK flags set";
    case 35:
      return "§1.5.5 variable byte integer longer than 4 bytes";
    case 36:
      return "out of memory decoding a packet";
    case 37:
      return `${t} without reason codes`;
    case 38:
      return `[MQTT-1.5.5-1 v5] ${
        d ? "variable byte integer" : "Remaining Length"
      } encoded in more bytes than its value needs`;
    case 39:
      return `[MQTT-3.1.0-1] first packet is ${t}, not CONNECT`;
    case 40:
      return "§3.1.2.11.10 Authentication Data without an Authentication Method";
    case 41:
      return "[MQTT-3.3.4-6 v5] PUBLISH from a client with a Subscription Identifier";
    default:
      return `decode error ${id}`;
  }
}

/**
 * A per-connection streaming decoder. Feed it every socket read with `push`; it returns the
 * complete packets and keeps any partial packet for the next read. After an error the stream is
 * dead: the connection must be closed, and further pushes return the same error.
 */
export class Decoder {
  /**
   * Version used for the next packets; a decoded CONNECT sets it. When a CONNECT with a
   * supported level fails later validation, it already holds that level, so the broker can
   * answer in the client's version (an unsupported level leaves it unchanged: reason 0x84).
   */
  protocolVersion: ProtocolVersion;
  /** Whole-packet size limit in bytes; larger packets fail with 0x95 once their header is read. */
  maxPacketSize: number;
  /**
   * Bytes carried to the next read. With `#need` 0: one part, a packet whose length is not known
   * yet (fixed header incomplete). Otherwise the reads making up a packet of known total length
   * `#need` that is not complete yet, `#fill` bytes in all. They are copied into WASM memory once,
   * when the packet is complete; memory held grows with the bytes that actually arrived, never
   * with the length a header announces.
   */
  #carry: Uint8Array[] | null = null;
  #fill = 0;
  #need = 0;
  #error: DecodeError | undefined;
  /** `scan`'s role: 0 either side's packets; 1 a client's, none decoded yet; 2 a client's. */
  #role: number;

  constructor(opts: DecoderOptions = {}) {
    this.protocolVersion = opts.protocolVersion ?? 4;
    this.maxPacketSize = opts.maxPacketSize ?? MAX_PACKET_SIZE;
    this.#role = opts.fromClient ? 1 : 0;
  }

  /**
   * True while a client's first packet has not been decoded (`fromClient` only). After an
   * error it tells whether the packet that failed was that first packet, the CONNECT.
   */
  get awaitingConnect(): boolean {
    return this.#role === 1;
  }

  /** Bytes held over from earlier reads (a packet not yet complete). */
  get buffered(): number {
    return this.#need ? this.#fill : this.#carry ? this.#carry[0].length : 0;
  }

  /** Decodes every complete packet in `chunk` plus the carried tail. Never throws. */
  push(chunk: Uint8Array): DecodeResult {
    if (this.#error) return { packets: [], error: this.#error };
    if (this.#need) {
      const room = this.#need - this.#fill;
      if (chunk.length < room) {
        if (chunk.length) (this.#carry ??= []).push(chunk.slice());
        this.#fill += chunk.length;
        return { packets: [] };
      }
      // The packet is complete: copy its parts, then the rest of this read, and scan once.
      const parts = this.#carry ?? [];
      const total = this.#need + chunk.length - room;
      this.#carry = null;
      this.#need = this.#fill = 0;
      const c = codec();
      const ptr = c.x.prepare(total);
      if (ptr === 0) return this.#fail(0x83, `out of memory for a read of ${total} bytes`);
      c.refresh();
      let at = ptr;
      for (const p of parts) {
        c.u8.set(p, at);
        at += p.length;
      }
      c.u8.set(chunk, at);
      return this.#scan(c, ptr, total);
    }
    const head = this.#carry ? this.#carry[0] : null;
    this.#carry = null;
    const headLen = head ? head.length : 0;
    const total = headLen + chunk.length;
    if (total === 0) return { packets: [] };
    const c = codec();
    const ptr = c.x.prepare(total);
    if (ptr === 0) return this.#fail(0x83, `out of memory for a read of ${total} bytes`);
    c.refresh();
    if (head) c.u8.set(head, ptr);
    c.u8.set(chunk, ptr + headLen);
    return this.#scan(c, ptr, total);
  }

  #scan(c: Codec, ptr: number, total: number): DecodeResult {
    const packets: Packet[] = [];
    const maxPacket = Math.min(Math.max(this.maxPacketSize, 0), 0xffffffff) >>> 0;
    let start = 0;
    for (;;) {
      const n = c.x.scan(start, total, this.protocolVersion, maxPacket, this.#role);
      c.refresh();
      if (n > 0 && this.#role === 1) this.#role = 2;
      const { u8, u32, res } = c;
      // Windows of an earlier push describe bytes since overwritten: start afresh.
      winLo = winHi = 0;
      winBuf = EMPTY;
      inputEnd = ptr + total;
      for (let i = 0, r = c.tab; i < n; i++, r += ROW_WORDS) packets.push(toPacket(u8, u32, r));
      winBuf = EMPTY;
      this.protocolVersion = u32[res + R_VERSION] as ProtocolVersion;
      const status = u32[res + R_STATUS];
      start = u32[res + R_CONSUMED];
      if (status === 1) continue; // table full: go on from where it stopped
      if (status === 2) {
        const id = u32[res + R_ERR];
        const message = errorMessage(id, u32[res + R_DETAIL], this.protocolVersion);
        this.#error = { reasonCode: u32[res + R_RC], message };
        return { packets, error: this.#error };
      }
      if (start < total) {
        const need = u32[res + R_NEED];
        const rest = u8.subarray(ptr + start, ptr + total);
        this.#carry = [rest.slice()];
        if (need > 0) {
          this.#need = need;
          this.#fill = rest.length;
        }
      }
      return { packets };
    }
  }

  #fail(reasonCode: number, message: string): DecodeResult {
    this.#error = { reasonCode, message };
    return { packets: [], error: this.#error };
  }
}
