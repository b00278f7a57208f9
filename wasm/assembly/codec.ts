// Streaming MQTT packet decoder (3.1, 3.1.1, 5.0), compiled to WebAssembly.
//
// One call to `scan` frames, decodes and validates every complete packet in the input region and
// writes one 64-byte row per packet into the packet table, plus property / subscription / CONNECT
// rows into the aux area. The TypeScript side (src/codec/decoder.ts) turns rows into `Packet`s.
// No allocation happens here: all memory is addressed by hand.
//
// Memory layout (byte addresses):
//   RES   result block, 16 u32 (see R_* below)
//   TAB   packet table, TAB_CAP rows of 16 u32 (see F_* below)
//   IN    input bytes, length set by `prepare`
//   aux   16-byte rows after the input, grown on demand:
//           property     [id | nonAsciiA << 8 | nonAsciiB << 9, value or offA, offB, lenA | lenB << 16]
//           subscription [offset, length | nonAscii << 31, options, 0]
//           CONNECT      clientId, willTopic, willPayload, username, password as (offset, length)
//                        pairs, then willPropIndex, willPropCount (12 u32)
// String lengths in the table carry bit 31 when the string holds a non-ASCII byte.

// ---- error ids (mirrored in src/codec/decoder.ts, which turns them into messages) ----
const E_REMAINING_LENGTH: u32 = 1;
const E_PACKET_TYPE: u32 = 2;
const E_FLAGS: u32 = 3;
const E_FLAGS_0010: u32 = 4;
const E_TOO_LARGE: u32 = 5;
const E_SHORT: u32 = 6;
const E_LEFTOVER: u32 = 7;
const E_UTF8: u32 = 8;
const E_NUL: u32 = 9;
const E_TOPIC_WILDCARD: u32 = 10;
const E_QOS3: u32 = 11;
const E_DUP_QOS0: u32 = 12;
const E_ID_ZERO: u32 = 13;
const E_CONNECT_RESERVED: u32 = 14;
const E_WILL_QOS_NO_WILL: u32 = 15;
const E_WILL_RETAIN_NO_WILL: u32 = 16;
const E_WILL_QOS3: u32 = 17;
const E_PASSWORD_NO_USER: u32 = 18;
const E_PROTOCOL: u32 = 19;
const E_SUB_EMPTY: u32 = 20;
const E_UNSUB_EMPTY: u32 = 21;
const E_SUB_RESERVED: u32 = 22;
const E_SUB_QOS3: u32 = 23;
const E_SUB_RH3: u32 = 24;
const E_EMPTY_FILTER: u32 = 25;
const E_EMPTY_TOPIC: u32 = 26;
const E_EMPTY_TOPIC_NO_ALIAS: u32 = 27;
const E_PROP_UNKNOWN: u32 = 28;
const E_PROP_DUP: u32 = 29;
const E_PROP_NOT_ALLOWED: u32 = 30;
const E_PROP_VALUE: u32 = 31;
const E_REASON_CODE: u32 = 32;
const E_NL_SHARED: u32 = 33;
const E_CONNACK_FLAGS: u32 = 34;
const E_VARINT: u32 = 35;
const E_NO_MEMORY: u32 = 36;
const E_ACK_EMPTY: u32 = 37;
const E_NOT_MINIMAL: u32 = 38;
const E_NOT_CONNECT: u32 = 39;
const E_AUTH_DATA_NO_METHOD: u32 = 40;
const E_SUBID_FROM_CLIENT: u32 = 41;

// ---- reason codes ----
const MALFORMED: u32 = 0x81;
const PROTOCOL_ERROR: u32 = 0x82;
const UNSUPPORTED_VERSION: u32 = 0x84;
const TOPIC_NAME_INVALID: u32 = 0x90;
const PACKET_TOO_LARGE: u32 = 0x95;

// ---- layout ----
const TAB_CAP: u32 = 4096;
const ROW: usize = 64;
const AUX_MIN: usize = 65536;

// Row fields (byte offsets inside a 64-byte row).
const F_HDR: usize = 0; // byte0 | version << 8 | extra << 16 (CONNECT flags, CONNACK flags)
const F_ID: usize = 4; // packet id; CONNECT keepalive
const F_STR_OFF: usize = 8; // PUBLISH topic; CONNECT protocol name
const F_STR_LEN: usize = 12;
const F_BIN_OFF: usize = 16; // PUBLISH payload; SUBACK/UNSUBACK reason codes
const F_BIN_LEN: usize = 20;
const F_PROP_IDX: usize = 24; // u32 index (address >> 2) of the first property row
const F_PROP_CNT: usize = 28;
const F_RC: usize = 32; // reason code; CONNECT raw protocol level
const F_LIST_IDX: usize = 36; // u32 index of the first subscription row / CONNECT block
const F_LIST_CNT: usize = 40;
const F_HASH: usize = 44; // PUBLISH: hash of the topic bytes (the TypeScript side caches topic strings)

// Result block fields (u32 each).
const R_COUNT: usize = 0;
const R_CONSUMED: usize = 4; // offset (from IN) of the first byte not consumed
const R_NEED: usize = 8; // total length of the incomplete packet at the tail, 0 when unknown
const R_ERR: usize = 12;
const R_RC: usize = 16;
const R_DETAIL: usize = 20;
const R_VERSION: usize = 24;
const R_STATUS: usize = 28; // 0 done, 1 table full (call again from R_CONSUMED), 2 error

const RES: usize = (__heap_base + 63) & ~63;
const TAB: usize = RES + 64;
const IN: usize = TAB + <usize> TAB_CAP * ROW;

// ---- property table: type and the packets that may carry it (bit = packet type; bit 0 = will) ----
// types: 1 byte, 2 u16, 3 u32, 4 varint, 5 string, 6 binary, 7 string pair
const P_TYPE: usize = memory.data<u8>([
  0,
  1,
  3,
  5,
  0,
  0,
  0,
  0,
  5,
  6,
  0,
  4,
  0,
  0,
  0,
  0, // 0x00
  0,
  3,
  5,
  2,
  0,
  5,
  6,
  1,
  3,
  1,
  5,
  0,
  5,
  0,
  0,
  5, // 0x10
  0,
  2,
  2,
  2,
  1,
  1,
  7,
  3,
  1,
  1,
  1,
  0,
  0,
  0,
  0,
  0, // 0x20
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0, // 0x30
]);
const P_MASK: usize = memory.data<u32>([
  0,
  0x0009,
  0x0009,
  0x0009,
  0,
  0,
  0,
  0,
  0x0009,
  0x0009,
  0,
  0x0108,
  0,
  0,
  0,
  0, // 0x00
  0,
  0x4006,
  0x0004,
  0x0004,
  0,
  0x8006,
  0x8006,
  0x0002, // 0x10
  0x0001,
  0x0002,
  0x0004,
  0,
  0x4004,
  0,
  0,
  0xcaf4, // 0x18
  0,
  0x0006,
  0x0006,
  0x0008,
  0x0004,
  0x0004,
  0xcfff,
  0x0006, // 0x20
  0x0004,
  0x0004,
  0x0004,
  0,
  0,
  0,
  0,
  0, // 0x28
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0, // 0x30
]);

// ---- state of the current scan ----
let pos: usize = 0; // cursor
let lim: usize = 0; // end of the current packet (or property block)
let aux: usize = 0; // next free aux row
let memEnd: usize = 0;
let ver: u32 = 4;
let errId: u32 = 0;
let errRc: u32 = 0;
let errDetail: u32 = 0;
let strFlags: u32 = 0;
let seenProps: u64 = 0;
/** Decoding what a client sends (the broker's side): see `scan`'s `role`. */
let fromClient = false;
/** No packet of this connection decoded yet: the next one must be CONNECT [MQTT-3.1.0-1]. */
let awaitConnect = false;

/** Address of the result block. */
export function resultPtr(): usize {
  return RES;
}

/** Address of the packet table. */
export function tablePtr(): usize {
  return TAB;
}

/** Makes room for `len` input bytes (plus some aux space) and returns where to write them. */
export function prepare(len: u32): usize {
  const want = IN + <usize> len + AUX_MIN + 64;
  if (!grow(want)) return 0;
  return IN;
}

function grow(want: usize): bool {
  const have = <usize> memory.size() << 16;
  if (want <= have) {
    memEnd = have;
    return true;
  }
  const pages = <i32> ((want - have + 0xffff) >> 16);
  if (memory.grow(pages) < 0) return false;
  memEnd = <usize> memory.size() << 16;
  return true;
}

function fail(id: u32, rc: u32, detail: u32): void {
  if (errId == 0) {
    errId = id;
    errRc = rc;
    errDetail = detail;
  }
  pos = lim;
}

function short(): void {
  fail(E_SHORT, MALFORMED, 0);
}

function ensureAux(bytes: usize): bool {
  if (aux + bytes <= memEnd) return true;
  if (grow(aux + bytes + AUX_MIN)) return true;
  fail(E_NO_MEMORY, 0x83, 0);
  return false;
}

function u8at(): u32 {
  if (pos >= lim) {
    short();
    return 0;
  }
  return load<u8>(pos++);
}

function u16at(): u32 {
  if (pos + 2 > lim) {
    short();
    return 0;
  }
  const v = (<u32> load<u8>(pos) << 8) | <u32> load<u8>(pos + 1);
  pos += 2;
  return v;
}

function u32at(): u32 {
  if (pos + 4 > lim) {
    short();
    return 0;
  }
  const v = bswap<u32>(load<u32>(pos));
  pos += 4;
  return v;
}

/**
 * Variable byte integer [MQTT-1.5.5]: at most 4 bytes, and no more than the value needs
 * [MQTT-1.5.5-1 v5]: a last byte of 0 after a continuation byte is a longer form of a smaller value.
 */
function varint(): u32 {
  let v: u32 = 0;
  for (let i: u32 = 0; i < 4; i++) {
    if (pos >= lim) {
      short();
      return 0;
    }
    const b = <u32> load<u8>(pos++);
    v |= (b & 127) << (7 * i);
    if ((b & 128) == 0) {
      if (b == 0 && i != 0) fail(E_NOT_MINIMAL, MALFORMED, 1);
      return v;
    }
  }
  fail(E_VARINT, MALFORMED, 0);
  return 0;
}

function hasZero(v: u64): bool {
  return ((v - 0x0101010101010101) & ~v & 0x8080808080808080) != 0;
}

/**
 * Checks a UTF-8 string [MQTT-1.5.4-1 v5][MQTT-1.5.4-2 v5]. Returns flags: 1 non-ASCII, 2 holds '+' or
 * '#', 4 ill-formed (including surrogates and overlong forms), 8 holds U+0000.
 */
function checkUtf8(start: usize, n: usize): u32 {
  let p = start;
  const end = start + n;
  let f: u32 = 0;
  while (p + 8 <= end) {
    const v = load<u64>(p);
    if ((v & 0x8080808080808080) != 0) break;
    if (hasZero(v)) f |= 8;
    if (hasZero(v ^ 0x2b2b2b2b2b2b2b2b) || hasZero(v ^ 0x2323232323232323)) f |= 2;
    p += 8;
  }
  while (p < end) {
    const b = <u32> load<u8>(p);
    if (b < 0x80) {
      if (b == 0) f |= 8;
      else if (b == 0x2b || b == 0x23) f |= 2;
      p++;
      continue;
    }
    f |= 1;
    let need: usize = 0;
    let lo: u32 = 0x80;
    let hi: u32 = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) {
      need = 1;
    } else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b == 0xe0) lo = 0xa0;
      else if (b == 0xed) hi = 0x9f; // no surrogates U+D800..U+DFFF
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b == 0xf0) lo = 0x90;
      else if (b == 0xf4) hi = 0x8f;
    } else {
      return f | 4;
    }
    if (p + need >= end) return f | 4;
    const b1 = <u32> load<u8>(p + 1);
    if (b1 < lo || b1 > hi) return f | 4;
    for (let i: usize = 2; i <= need; i++) {
      const c = <u32> load<u8>(p + i);
      if (c < 0x80 || c > 0xbf) return f | 4;
    }
    p += need + 1;
  }
  return f;
}

/** Reads a UTF-8 string; stores (offset, length | nonAscii << 31) at dst. Returns the length or -1. */
function str(dst: usize): i32 {
  const n = <usize> u16at();
  if (errId) return -1;
  if (pos + n > lim) {
    short();
    return -1;
  }
  let f: u32 = 0;
  if (n) {
    f = checkUtf8(pos, n);
    if (f & 4) {
      fail(E_UTF8, MALFORMED, 0);
      return -1;
    }
    if (f & 8) {
      fail(E_NUL, MALFORMED, 0);
      return -1;
    }
  }
  strFlags = f;
  store<u32>(dst, <u32> pos);
  store<u32>(dst + 4, <u32> n | ((f & 1) << 31));
  pos += n;
  return <i32> n;
}

/** Reads binary data (two-byte length + bytes); stores (offset, length) at dst. */
function bin(dst: usize): void {
  const n = <usize> u16at();
  if (errId) return;
  if (pos + n > lim) {
    short();
    return;
  }
  store<u32>(dst, <u32> pos);
  store<u32>(dst + 4, <u32> n);
  pos += n;
}

/**
 * Reads a v5 property block; stores (row index, count) at dst. `ctx` is the packet type, 0 for
 * will properties. A property not allowed in the packet is a Malformed Packet (0x81) by §2.2.2.2
 * ("A Control Packet which contains an Identifier which is not valid for its packet type ... is a
 * Malformed Packet"); a repeated single-valued property is a Protocol Error (0x82) by the text of
 * each property in §3.x ("It is a Protocol Error to include ... more than once").
 */
function props(dst: usize, ctx: u32): void {
  seenProps = 0;
  const n = <usize> varint();
  if (errId) return;
  if (pos + n > lim) {
    short();
    return;
  }
  const end = pos + n;
  const outer = lim;
  lim = end;
  const first = aux;
  let cnt: u32 = 0;
  let seen: u64 = 0;
  while (pos < end && errId == 0) {
    const id = varint();
    if (errId) break;
    const t: u32 = id < 64 ? <u32> load<u8>(P_TYPE + id) : 0;
    if (t == 0) {
      fail(E_PROP_UNKNOWN, MALFORMED, id);
      break;
    }
    if ((load<u32>(P_MASK + (<usize> id << 2)) & (<u32> 1 << ctx)) == 0) {
      fail(E_PROP_NOT_ALLOWED, MALFORMED, id | (ctx << 8));
      break;
    }
    const bit: u64 = <u64> 1 << id;
    if ((seen & bit) != 0 && id != 0x26 && !(id == 0x0b && ctx == 3)) {
      fail(E_PROP_DUP, PROTOCOL_ERROR, id);
      break;
    }
    seen |= bit;
    if (!ensureAux(16)) break;
    let w0: u32 = id;
    let w1: u32 = 0;
    let w2: u32 = 0;
    let w3: u32 = 0;
    if (t == 1) {
      w1 = u8at();
      // requestProblemInformation, requestResponseInformation, maximumQoS, retainAvailable,
      // wildcard/subscription-identifier/shared subscription available: 0 or 1, else Protocol Error.
      if (
        w1 > 1 &&
        (id == 0x17 || id == 0x19 || id == 0x24 || id == 0x25 || id == 0x28 || id == 0x29 ||
          id == 0x2a)
      ) {
        fail(E_PROP_VALUE, PROTOCOL_ERROR, id | (w1 << 8));
      }
    } else if (t == 2) {
      w1 = u16at();
      if (w1 == 0 && id == 0x21) fail(E_PROP_VALUE, PROTOCOL_ERROR, id); // receive maximum 0
    } else if (t == 3) {
      w1 = u32at();
      if (w1 == 0 && id == 0x27) fail(E_PROP_VALUE, PROTOCOL_ERROR, id); // maximum packet size 0
    } else if (t == 4) {
      w1 = varint();
      if (w1 == 0 && errId == 0) fail(E_PROP_VALUE, PROTOCOL_ERROR, id); // subscription id 0
    } else if (t == 5) {
      if (str(aux + 4) < 0) break;
      w3 = load<u32>(aux + 8) & 0xffff;
      w0 |= (strFlags & 1) << 8;
      w1 = load<u32>(aux + 4);
    } else if (t == 6) {
      bin(aux + 4);
      if (errId) break;
      w3 = load<u32>(aux + 8);
      w1 = load<u32>(aux + 4);
    } else {
      if (str(aux + 4) < 0) break;
      w1 = load<u32>(aux + 4);
      const la = load<u32>(aux + 8);
      w0 |= (la >>> 31) << 8;
      if (str(aux + 4) < 0) break;
      w2 = load<u32>(aux + 4);
      const lb = load<u32>(aux + 8);
      w0 |= (lb >>> 31) << 9;
      w3 = (la & 0xffff) | ((lb & 0xffff) << 16);
    }
    if (errId) break;
    store<u32>(aux, w0);
    store<u32>(aux + 4, w1);
    store<u32>(aux + 8, w2);
    store<u32>(aux + 12, w3);
    aux += 16;
    cnt++;
  }
  lim = outer;
  if (errId) {
    pos = lim;
    return;
  }
  seenProps = seen;
  store<u32>(dst, <u32> (first >> 2));
  store<u32>(dst + 4, cnt);
}

function leftover(t: u32): void {
  if (pos != lim && errId == 0) fail(E_LEFTOVER, MALFORMED, t);
}

function packetId(t: u32): u32 {
  const id = u16at();
  // [MQTT-2.2.1-3 v5] (v5) / [MQTT-2.3.1-1 v3.1.1] (3.1.1): packet identifiers are non-zero.
  if (errId == 0 && id == 0) fail(E_ID_ZERO, PROTOCOL_ERROR, t);
  return id;
}

/** Whether `code` is a reason code the packet type may carry (v5, §2.4 table 2-6). */
function validReason(t: u32, c: u32): bool {
  if (t == 2) {
    // CONNACK
    return c == 0 || (c >= 0x80 && c <= 0x8a) || c == 0x8c || c == 0x90 || c == 0x95 ||
      c == 0x97 || c == 0x99 || c == 0x9a || c == 0x9b || c == 0x9c || c == 0x9d || c == 0x9f;
  }
  if (t == 4 || t == 5) {
    return c == 0 || c == 0x10 || c == 0x80 || c == 0x83 || c == 0x87 || c == 0x90 ||
      c == 0x91 || c == 0x97 || c == 0x99;
  }
  if (t == 6 || t == 7) return c == 0 || c == 0x92;
  if (t == 9) {
    return c <= 2 || c == 0x80 || c == 0x83 || c == 0x87 || c == 0x8f || c == 0x91 ||
      c == 0x97 || c == 0x9e || c == 0xa1 || c == 0xa2;
  }
  if (t == 11) {
    return c == 0 || c == 0x11 || c == 0x80 || c == 0x83 || c == 0x87 || c == 0x8f || c == 0x91;
  }
  if (t == 14) {
    return c == 0 || c == 0x04 || (c >= 0x80 && c <= 0x83) || c == 0x87 || c == 0x89 ||
      (c >= 0x8b && c <= 0x8e) || (c >= 0x8f && c <= 0xa2 && c != 0x91 && c != 0x92);
  }
  if (t == 15) return c == 0 || c == 0x18 || c == 0x19;
  return false;
}

function reason(row: usize, t: u32): void {
  const c = u8at();
  if (errId) return;
  if (!validReason(t, c)) fail(E_REASON_CODE, MALFORMED, t | (c << 8));
  store<u32>(row + F_RC, c);
}

/** Topic name checks for PUBLISH and the will topic. */
function topicName(n: i32, will: u32): void {
  if (n < 0 || errId) return;
  if (strFlags & 2) {
    // [MQTT-3.3.2-2] no wildcards in a topic name; v5 answers Topic Name invalid.
    fail(E_TOPIC_WILDCARD, ver == 5 ? TOPIC_NAME_INVALID : MALFORMED, will);
  } else if (n == 0 && (ver < 5 || will)) {
    // [MQTT-4.7.3-1] topic names are at least one character long (v5 PUBLISH may use an alias).
    fail(E_EMPTY_TOPIC, ver == 5 ? TOPIC_NAME_INVALID : MALFORMED, will);
  }
}

function decodeConnect(row: usize): void {
  const nameLen = str(row + F_STR_OFF);
  if (nameLen < 0) return;
  const np = load<u32>(row + F_STR_OFF);
  const raw = u8at();
  if (errId) return;
  const level = raw & 0x7f;
  let ok = false;
  if (nameLen == 4 && load<u32>(np) == 0x5454514d) ok = level == 4 || level == 5; // "MQTT"
  else if (nameLen == 6 && load<u32>(np) == 0x7349514d && load<u16>(np + 4) == 0x7064) {
    ok = level == 3; // "MQIsdp"
  }
  if (!ok) {
    // [MQTT-3.1.2-1][MQTT-3.1.2-2] unknown protocol name or level.
    fail(E_PROTOCOL, UNSUPPORTED_VERSION, raw);
    return;
  }
  ver = level;
  store<u32>(row + F_RC, raw);
  const flags = u8at();
  const keepalive = u16at();
  if (errId) return;
  store<u32>(row + F_ID, keepalive);
  store<u32>(row + F_HDR, (load<u32>(row + F_HDR) & 0xff) | (level << 8) | (flags << 16));
  if (level >= 4 && (flags & 1) != 0) {
    fail(E_CONNECT_RESERVED, MALFORMED, 0); // [MQTT-3.1.2-3]
    return;
  }
  const will = flags & 4;
  const wq = (flags >> 3) & 3;
  if (!will) {
    if (wq) fail(E_WILL_QOS_NO_WILL, MALFORMED, 0); // [MQTT-3.1.2-13 v3.1.1][MQTT-3.1.2-11 v5]
    else if (flags & 0x20) fail(E_WILL_RETAIN_NO_WILL, MALFORMED, 0); // [MQTT-3.1.2-15 v3.1.1][MQTT-3.1.2-13 v5]
  } else if (wq == 3) {
    fail(E_WILL_QOS3, MALFORMED, 0); // [MQTT-3.1.2-14 v3.1.1][MQTT-3.1.2-12 v5]
  }
  if (level < 5 && (flags & 0x40) != 0 && (flags & 0x80) == 0) {
    fail(E_PASSWORD_NO_USER, MALFORMED, 0); // [MQTT-3.1.2-22 v3.1.1]
  }
  if (errId) return;
  if (!ensureAux(48)) return;
  const blk = aux;
  memory.fill(blk, 0, 48);
  aux += 48;
  store<u32>(row + F_LIST_IDX, <u32> (blk >> 2));
  if (level == 5) {
    props(row + F_PROP_IDX, 1);
    if (errId) return;
    // §3.1.2.11.10: Authentication Data without an Authentication Method is a Protocol Error.
    if ((seenProps & (<u64> 1 << 0x16)) != 0 && (seenProps & (<u64> 1 << 0x15)) == 0) {
      fail(E_AUTH_DATA_NO_METHOD, PROTOCOL_ERROR, 0);
      return;
    }
  }
  if (str(blk) < 0) return; // client id
  if (will) {
    if (level == 5) props(blk + 40, 0);
    if (errId) return;
    topicName(str(blk + 8), 1);
    if (errId) return;
    bin(blk + 16);
  }
  if (flags & 0x80) str(blk + 24);
  if (flags & 0x40) bin(blk + 32);
  leftover(1);
}

function decodeConnack(row: usize): void {
  const flags = u8at();
  if (errId) return;
  if (flags & 0xfe) {
    fail(E_CONNACK_FLAGS, MALFORMED, flags); // [MQTT-3.2.2-1 v5]
    return;
  }
  store<u32>(row + F_HDR, load<u32>(row + F_HDR) | (flags << 16));
  if (ver == 5) {
    reason(row, 2);
    if (errId) return;
    if (pos < lim) props(row + F_PROP_IDX, 2);
  } else {
    store<u32>(row + F_RC, u8at());
  }
  leftover(2);
}

/** A 32-bit hash of n bytes at p (8 bytes per step). */
function hashBytes(p: usize, n: usize): u32 {
  let h: u64 = 0x9e3779b97f4a7c15 ^ <u64> n;
  const end = p + n;
  while (p + 8 <= end) {
    h = (h ^ load<u64>(p)) * 0xff51afd7ed558ccd;
    h ^= h >> 29;
    p += 8;
  }
  while (p < end) {
    h = (h ^ <u64> load<u8>(p)) * 0x100000001b3;
    p++;
  }
  h = (h ^ (h >> 32)) * 0xc4ceb9fe1a85ec53;
  return <u32> (h >> 32);
}

function decodePublish(row: usize, flags: u32): void {
  const n = str(row + F_STR_OFF);
  if (n < 0) return;
  store<u32>(row + F_HASH, hashBytes(load<u32>(row + F_STR_OFF), <usize> n));
  const wild = strFlags & 2;
  if (flags & 6) store<u32>(row + F_ID, packetId(3));
  if (errId) return;
  if (ver == 5) {
    props(row + F_PROP_IDX, 3);
    if (errId) return;
    if (fromClient && (seenProps & (<u64> 1 << 0x0b)) != 0) {
      // [MQTT-3.3.4-6 v5] only the server puts Subscription Identifiers in a PUBLISH.
      fail(E_SUBID_FROM_CLIENT, PROTOCOL_ERROR, 0);
      return;
    }
  }
  if (wild) {
    fail(E_TOPIC_WILDCARD, ver == 5 ? TOPIC_NAME_INVALID : MALFORMED, 0); // [MQTT-3.3.2-2]
    return;
  }
  if (n == 0) {
    if (ver < 5) {
      fail(E_EMPTY_TOPIC, MALFORMED, 0); // [MQTT-4.7.3-1]
      return;
    }
    if ((seenProps & (<u64> 1 << 0x23)) == 0) {
      // §3.3.2.1: a zero-length Topic Name without a Topic Alias is a Protocol Error.
      fail(E_EMPTY_TOPIC_NO_ALIAS, PROTOCOL_ERROR, 0);
      return;
    }
  }
  store<u32>(row + F_BIN_OFF, <u32> pos);
  store<u32>(row + F_BIN_LEN, <u32> (lim - pos));
  pos = lim;
}

function decodeAck(row: usize, t: u32): void {
  store<u32>(row + F_ID, packetId(t));
  if (errId) return;
  if (ver == 5 && pos < lim) {
    reason(row, t);
    if (errId) return;
    if (pos < lim) props(row + F_PROP_IDX, t);
  }
  leftover(t);
}

/** `$share/` prefix of a shared subscription. */
function isShared(p: usize, n: u32): bool {
  return n >= 7 && load<u32>(p) == 0x61687324 && load<u16>(p + 4) == 0x6572 &&
    load<u8>(p + 6) == 0x2f;
}

function decodeSubscribe(row: usize): void {
  store<u32>(row + F_ID, packetId(8));
  if (errId) return;
  if (ver == 5) props(row + F_PROP_IDX, 8);
  if (errId) return;
  const first = aux;
  let cnt: u32 = 0;
  while (pos < lim && errId == 0) {
    if (!ensureAux(16)) return;
    const n = str(aux);
    if (n < 0) return;
    if (n == 0) {
      fail(E_EMPTY_FILTER, MALFORMED, 8); // [MQTT-4.7.3-1]
      return;
    }
    const o = u8at();
    if (errId) return;
    if (ver == 5) {
      if (o & 0xc0) fail(E_SUB_RESERVED, MALFORMED, o); // [MQTT-3.8.3-5 v5]
      else if ((o & 3) == 3) fail(E_SUB_QOS3, MALFORMED, o);
      else if (((o >> 4) & 3) == 3) fail(E_SUB_RH3, MALFORMED, o);
      else if ((o & 4) != 0 && isShared(<usize> load<u32>(aux), <u32> n)) {
        fail(E_NL_SHARED, PROTOCOL_ERROR, 0); // [MQTT-3.8.3-4 v5]
      }
    } else {
      if (o & 0xfc) fail(E_SUB_RESERVED, MALFORMED, o); // [MQTT-3.8.3-4 v3.1.1]
      else if ((o & 3) == 3) fail(E_SUB_QOS3, MALFORMED, o);
    }
    if (errId) return;
    store<u32>(aux + 8, o);
    store<u32>(aux + 12, 0);
    aux += 16;
    cnt++;
  }
  if (cnt == 0) {
    fail(E_SUB_EMPTY, PROTOCOL_ERROR, 0); // [MQTT-3.8.3-3 v3.1.1][MQTT-3.8.3-2 v5]
    return;
  }
  store<u32>(row + F_LIST_IDX, <u32> (first >> 2));
  store<u32>(row + F_LIST_CNT, cnt);
}

function decodeUnsubscribe(row: usize): void {
  store<u32>(row + F_ID, packetId(10));
  if (errId) return;
  if (ver == 5) props(row + F_PROP_IDX, 10);
  if (errId) return;
  const first = aux;
  let cnt: u32 = 0;
  while (pos < lim && errId == 0) {
    if (!ensureAux(16)) return;
    const n = str(aux);
    if (n < 0) return;
    if (n == 0) {
      fail(E_EMPTY_FILTER, MALFORMED, 10); // [MQTT-4.7.3-1]
      return;
    }
    store<u32>(aux + 8, 0);
    store<u32>(aux + 12, 0);
    aux += 16;
    cnt++;
  }
  if (cnt == 0) {
    fail(E_UNSUB_EMPTY, PROTOCOL_ERROR, 0); // [MQTT-3.10.3-2]
    return;
  }
  store<u32>(row + F_LIST_IDX, <u32> (first >> 2));
  store<u32>(row + F_LIST_CNT, cnt);
}

/** SUBACK and (v5) UNSUBACK: packet id, properties, then one reason code per filter. */
function decodeCodes(row: usize, t: u32): void {
  store<u32>(row + F_ID, packetId(t));
  if (errId) return;
  if (ver == 5) props(row + F_PROP_IDX, t);
  if (errId) return;
  if (pos >= lim) {
    fail(E_ACK_EMPTY, MALFORMED, t);
    return;
  }
  for (let p = pos; p < lim; p++) {
    const c = <u32> load<u8>(p);
    const ok = ver == 5 ? validReason(t, c) : c <= 2 || c == 0x80;
    if (!ok) {
      fail(E_REASON_CODE, MALFORMED, t | (c << 8));
      return;
    }
  }
  store<u32>(row + F_BIN_OFF, <u32> pos);
  store<u32>(row + F_BIN_LEN, <u32> (lim - pos));
  pos = lim;
}

function decodeBody(row: usize, b0: u32): void {
  const t = b0 >> 4;
  switch (t) {
    case 1:
      decodeConnect(row);
      break;
    case 2:
      decodeConnack(row);
      break;
    case 3:
      decodePublish(row, b0 & 15);
      break;
    case 4:
    case 5:
    case 6:
    case 7:
      decodeAck(row, t);
      break;
    case 8:
      decodeSubscribe(row);
      break;
    case 9:
      decodeCodes(row, 9);
      break;
    case 10:
      decodeUnsubscribe(row);
      break;
    case 11:
      if (ver == 5) decodeCodes(row, 11);
      else {
        store<u32>(row + F_ID, packetId(11));
        leftover(11);
      }
      break;
    case 14:
      if (ver == 5 && pos < lim) {
        reason(row, 14);
        if (errId == 0 && pos < lim) props(row + F_PROP_IDX, 14);
      }
      leftover(14);
      break;
    case 15:
      if (pos < lim) {
        reason(row, 15);
        if (errId == 0 && pos < lim) props(row + F_PROP_IDX, 15);
      }
      leftover(15);
      break;
    default: // 12, 13: PINGREQ, PINGRESP
      leftover(t);
  }
}

/** Fixed-header byte checks, done as soon as the byte arrives. */
function checkFirstByte(b0: u32): void {
  const t = b0 >> 4;
  const f = b0 & 15;
  if (awaitConnect) {
    // [MQTT-3.1.0-1] a client's first packet is CONNECT: anything else is refused on its first
    // byte, without waiting for the length it announces (e.g. "PROXY ..." on a plain listener).
    if (t != 1) {
      fail(E_NOT_CONNECT, PROTOCOL_ERROR, t);
      return;
    }
    awaitConnect = false;
  }
  if (t == 0 || (t == 15 && ver != 5)) {
    fail(E_PACKET_TYPE, MALFORMED, t); // §2.2.1: 0 is reserved; 15 (AUTH) exists from v5 on
  } else if (t == 3) {
    if ((f & 6) == 6) fail(E_QOS3, MALFORMED, 0); // [MQTT-3.3.1-4]
    else if (ver >= 4 && (f & 6) == 0 && (f & 8) != 0) fail(E_DUP_QOS0, MALFORMED, 0); // [MQTT-3.3.1-2]
  } else if (ver >= 4) {
    // MQTT 3.1 set QoS/DUP bits on these packets; 3.1.1 and 5.0 fix them [MQTT-2.2.2-1/2].
    if (t == 6 || t == 8 || t == 10) {
      if (f != 2) fail(E_FLAGS_0010, MALFORMED, t); // [MQTT-3.6.1-1][MQTT-3.8.1-1][MQTT-3.10.1-1]
    } else if (f != 0) {
      fail(E_FLAGS, MALFORMED, t); // [MQTT-2.2.2-1 v3.1.1][MQTT-2.2.2-2 v3.1.1][MQTT-2.1.3-1 v5]
    }
  }
}

/**
 * Decodes every complete packet in input bytes [start, end) with protocol `version` (updated by
 * a CONNECT). Packets larger than `maxPacket` bytes fail with 0x95 as soon as their fixed header
 * is complete. `role` 0 decodes either side's packets (a client reading its server); 1 and 2
 * decode what a client sends, which may not carry what only a server sends, and with 1 no
 * packet has been decoded yet, so the first must be CONNECT. Results go to the result block;
 * returns the number of table rows written.
 */
export function scan(start: u32, end: u32, version: u32, maxPacket: u32, role: u32): u32 {
  ver = version;
  fromClient = role != 0;
  awaitConnect = role == 1;
  errId = 0;
  errRc = 0;
  errDetail = 0;
  aux = (IN + <usize> end + 15) & ~15;
  memEnd = <usize> memory.size() << 16;
  let p = IN + <usize> start;
  const e = IN + <usize> end;
  let count: u32 = 0;
  let need: u32 = 0;
  let status: u32 = 0;
  while (p < e) {
    if (count == TAB_CAP) {
      status = 1;
      break;
    }
    const b0 = <u32> load<u8>(p);
    lim = e;
    checkFirstByte(b0);
    if (errId) break;
    // Remaining length: at most four bytes (§2.2.3 / §1.5.5).
    let q = p + 1;
    let rl: u32 = 0;
    let complete = false;
    for (let i: u32 = 0; i < 4; i++) {
      if (q >= e) break;
      const b = <u32> load<u8>(q++);
      rl |= (b & 127) << (7 * i);
      if ((b & 128) == 0) {
        // [MQTT-1.5.5-1 v5] no more bytes than the value needs.
        if (b == 0 && i != 0) fail(E_NOT_MINIMAL, MALFORMED, 0);
        else complete = true;
        break;
      }
    }
    if (!complete) {
      if (q - p == 5) fail(E_REMAINING_LENGTH, MALFORMED, 0);
      break;
    }
    const total = <u32> (q - p) + rl;
    if (total > maxPacket) {
      fail(E_TOO_LARGE, PACKET_TOO_LARGE, total);
      break;
    }
    if (<usize> total > e - p) {
      need = total;
      break;
    }
    const row = TAB + <usize> count * ROW;
    memory.fill(row, 0, ROW);
    store<u32>(row + F_HDR, b0 | (ver << 8));
    pos = q;
    lim = p + <usize> total;
    decodeBody(row, b0);
    if (errId) break;
    count++;
    p += <usize> total;
  }
  store<u32>(RES + R_COUNT, count);
  store<u32>(RES + R_CONSUMED, <u32> (p - IN));
  store<u32>(RES + R_NEED, need);
  store<u32>(RES + R_ERR, errId);
  store<u32>(RES + R_RC, errRc);
  store<u32>(RES + R_DETAIL, errDetail);
  store<u32>(RES + R_VERSION, ver);
  store<u32>(RES + R_STATUS, errId ? 2 : status);
  return count;
}
