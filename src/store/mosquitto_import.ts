/**
 * Reading Mosquitto's persistence file (`mosquitto.db`, db versions 5 and 6 as written by
 * Mosquitto 1.6 and 2.0) and turning it into Midge's stored state, so that a Mosquitto user
 * keeps retained messages and persistent sessions when moving over (`midge import-mosquitto`).
 *
 * The file: a 15-byte magic `00 B5 00 "mosquitto db"`, a u32 CRC (always 0), a u32 db version,
 * then chunks, each `{u32 type, u32 length}` followed by `length` bytes. Lengths and the small
 * fields are big-endian. The 64-bit fields (message store ids, absolute expiry times in seconds,
 * the last store id) are written in the byte order of the machine that wrote the file, and each
 * chunk's fixed part is a C struct with its padding. Little-endian is assumed unless the CFG
 * chunk's last store id only makes sense big-endian (Mosquitto on a big-endian router).
 *
 * Chunks: 1 CFG (last store id, dbid size), 2 MSG_STORE (one message body, shared by every
 * queue and the retained tree), 3 CLIENT_MSG (a message queued for or in flight to/from a
 * client), 4 RETAIN (a store id), 5 SUB (a client's subscription), 6 CLIENT (a persistent
 * session). Mosquitto 2.0 does not write wills, shared subscriptions or retain handling.
 */
import type { Properties, ProtocolVersion, QoS } from "../codec/types.ts";
import { forwardedProperties, type Message } from "../broker/message.ts";
import { NEVER_EXPIRES } from "../broker/session.ts";
import type { Store, StoredClientMessage, StoredSession, StoredSubscription } from "./types.ts";

/** A file that is not a Mosquitto db we can read; the message names the offset and chunk. */
export class MosquittoDbError extends Error {
  constructor(
    message: string,
    /** Byte offset in the file where the problem was found. */
    readonly offset: number,
    /** The chunk being read ("MSG_STORE chunk at offset 123"), if any. */
    readonly chunk?: string,
  ) {
    super(`offset ${offset}${chunk ? ` (${chunk})` : ""}: ${message}`);
  }
}

/** One message body (MSG_STORE chunk). */
export interface MosquittoMessage {
  storeId: bigint;
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  /** v5 properties of the PUBLISH as Mosquitto kept them (no message expiry: see expiryTime). */
  properties?: Properties;
  /** Absolute expiry in seconds since the epoch; 0 = never. */
  expiryTime: number;
  /** Client id and user name of the publisher ("" / undefined when Mosquitto itself). */
  sourceId: string;
  sourceUsername?: string;
}

/** Mosquitto's per-client message states (lib/mosquitto_internal.h). */
export const MOSQ_STATE: Record<number, string> = {
  0: "invalid",
  1: "publish_qos0",
  2: "publish_qos1",
  3: "wait_for_puback",
  4: "publish_qos2",
  5: "wait_for_pubrec",
  6: "resend_pubrel",
  7: "wait_for_pubrel",
  8: "resend_pubcomp",
  9: "wait_for_pubcomp",
  10: "send_pubrec",
  11: "queued",
};

/** A message queued for, or in flight to or from, one client (CLIENT_MSG chunk). */
export interface MosquittoClientMessage {
  storeId: bigint;
  /** Packet id (assigned even while queued). */
  mid: number;
  /** QoS of this delivery (the subscription may have downgraded it). */
  qos: QoS;
  /** A MOSQ_STATE key. */
  state: number;
  retain: boolean;
  dup: boolean;
  /** "out": broker → client; "in": client → broker (QoS 2 waiting for PUBREL). */
  direction: "in" | "out";
  /** Per-delivery properties: the subscription identifiers. */
  properties?: Properties;
}

export interface MosquittoSubscription {
  filter: string;
  qos: QoS;
  /** Subscription identifier; 0 = none. */
  identifier: number;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: number;
}

/** A persistent session (CLIENT chunk) with what belongs to it. */
export interface MosquittoSession {
  clientId: string;
  username?: string;
  /** Seconds; 0xFFFFFFFF = never expires (every MQTT 3.1/3.1.1 session). */
  expiryInterval: number;
  /** Absolute expiry in seconds since the epoch; 0 = not counting (never expires). */
  expiryTime: number;
  lastMid: number;
  /** The listener port the client was connected to (v6 only; 0 unknown). */
  listenerPort: number;
  subscriptions: MosquittoSubscription[];
  messages: MosquittoClientMessage[];
  /** False when the file has subscriptions or messages for it but no CLIENT chunk. */
  hasClientChunk: boolean;
}

export interface MosquittoDb {
  /** The db format version (5 or 6). */
  version: number;
  lastDbId: bigint;
  /** Whether Mosquitto wrote the file on shutdown (not an autosave). */
  shutdown: boolean;
  littleEndian: boolean;
  /** Every message body, by store id. */
  messages: Map<bigint, MosquittoMessage>;
  /** Retained messages, in file order. */
  retained: MosquittoMessage[];
  sessions: MosquittoSession[];
  /** Things read but not understood (unknown chunks, dangling references). */
  warnings: string[];
}

const MAGIC = new Uint8Array([0x00, 0xb5, 0x00, ...new TextEncoder().encode("mosquitto db")]);
const CHUNK_NAMES: Record<number, string> = {
  1: "CFG",
  2: "MSG_STORE",
  3: "CLIENT_MSG",
  4: "RETAIN",
  5: "SUB",
  6: "CLIENT",
};
const HEADER = 15 + 4 + 4;

const utf8 = new TextDecoder();

/** Bounds-checked reads inside one chunk (or the file header). */
class Cursor {
  pos: number;
  constructor(
    readonly b: Uint8Array,
    readonly view: DataView,
    start: number,
    readonly end: number,
    readonly where: string | undefined,
    readonly le: boolean,
  ) {
    this.pos = start;
  }
  fail(msg: string, at = this.pos): never {
    throw new MosquittoDbError(msg, at, this.where);
  }
  need(n: number, what: string): void {
    if (this.pos + n > this.end) {
      const past = this.end === this.b.length ? "the end of the file" : "the end of the chunk";
      this.fail(`${what}: ${n} bytes needed, ${this.end - this.pos} left before ${past}`);
    }
  }
  u8(what: string): number {
    this.need(1, what);
    return this.b[this.pos++];
  }
  u16(what: string): number {
    this.need(2, what);
    const v = this.view.getUint16(this.pos);
    this.pos += 2;
    return v;
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }
  /** A 64-bit field in the writer's byte order. */
  u64(what: string): bigint {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos, this.le);
    this.pos += 8;
    return v;
  }
  i64(what: string): number {
    this.need(8, what);
    const v = this.view.getBigInt64(this.pos, this.le);
    this.pos += 8;
    return Number(v);
  }
  skip(n: number, what: string): void {
    this.need(n, what);
    this.pos += n;
  }
  bytes(n: number, what: string): Uint8Array {
    this.need(n, what);
    // A copy (Buffer#slice would be a view pinning the whole file).
    const v = new Uint8Array(n);
    v.set(this.b.subarray(this.pos, this.pos + n));
    this.pos += n;
    return v;
  }
  str(n: number, what: string): string {
    this.need(n, what);
    const v = utf8.decode(this.b.subarray(this.pos, this.pos + n));
    this.pos += n;
    return v;
  }
  varint(what: string): number {
    let v = 0;
    for (let i = 0, mul = 1; i < 4; i++, mul *= 128) {
      const byte = this.u8(what);
      v += (byte & 0x7f) * mul;
      if (!(byte & 0x80)) return v;
    }
    this.fail(`${what}: variable byte integer longer than 4 bytes`);
  }
  left(): number {
    return this.end - this.pos;
  }
}

type PropKind = "byte" | "u16" | "u32" | "varint" | "string" | "binary" | "pair";
const PROPS: Record<number, [keyof Properties, PropKind]> = {
  0x01: ["payloadFormatIndicator", "byte"],
  0x02: ["messageExpiryInterval", "u32"],
  0x03: ["contentType", "string"],
  0x08: ["responseTopic", "string"],
  0x09: ["correlationData", "binary"],
  0x0b: ["subscriptionIdentifier", "varint"],
  0x11: ["sessionExpiryInterval", "u32"],
  0x12: ["assignedClientIdentifier", "string"],
  0x13: ["serverKeepAlive", "u16"],
  0x15: ["authenticationMethod", "string"],
  0x16: ["authenticationData", "binary"],
  0x17: ["requestProblemInformation", "byte"],
  0x18: ["willDelayInterval", "u32"],
  0x19: ["requestResponseInformation", "byte"],
  0x1a: ["responseInformation", "string"],
  0x1c: ["serverReference", "string"],
  0x1f: ["reasonString", "string"],
  0x21: ["receiveMaximum", "u16"],
  0x22: ["topicAliasMaximum", "u16"],
  0x23: ["topicAlias", "u16"],
  0x24: ["maximumQoS", "byte"],
  0x25: ["retainAvailable", "byte"],
  0x26: ["userProperties", "pair"],
  0x27: ["maximumPacketSize", "u32"],
  0x28: ["wildcardSubscriptionAvailable", "byte"],
  0x29: ["subscriptionIdentifiersAvailable", "byte"],
  0x2a: ["sharedSubscriptionAvailable", "byte"],
};

/**
 * The rest of a chunk as an MQTT v5 property block (variable byte integer length, then the
 * properties), the way Mosquitto writes a message's properties; undefined when nothing is left.
 */
function readProperties(c: Cursor): Properties | undefined {
  if (c.left() === 0) return undefined;
  const len = c.varint("property length");
  if (len !== c.left()) {
    c.fail(`property length ${len} does not match the ${c.left()} bytes left in the chunk`);
  }
  const out: Record<string, unknown> = {};
  while (c.left() > 0) {
    const at = c.pos;
    const id = c.varint("property identifier");
    const def = PROPS[id];
    if (!def) c.fail(`unknown property identifier 0x${id.toString(16)}`, at);
    const [name, kind] = def;
    let v: unknown;
    if (kind === "byte") v = c.u8(name);
    else if (kind === "u16") v = c.u16(name);
    else if (kind === "u32") v = c.u32(name);
    else if (kind === "varint") v = c.varint(name);
    else if (kind === "string") v = c.str(c.u16(name), name);
    else if (kind === "binary") v = c.bytes(c.u16(name), name);
    else v = [c.str(c.u16(name), name), c.str(c.u16(name), name)];
    if (kind === "pair") ((out[name] ??= []) as unknown[]).push(v);
    else if (name === "subscriptionIdentifier" && out[name] !== undefined) {
      out[name] = ([] as number[]).concat(out[name] as number, v as number);
    } else out[name] = v;
  }
  return out as Properties;
}

function qosOf(c: Cursor, v: number, at: number): QoS {
  if (v > 2) c.fail(`QoS ${v} is not 0, 1 or 2`, at);
  return v as QoS;
}

/**
 * Parse a whole `mosquitto.db` (db version 5 or 6). Pure: no I/O, no clock. Throws
 * MosquittoDbError naming the offset (and chunk) of the first thing that does not fit.
 */
export function parseMosquittoDb(bytes: Uint8Array): MosquittoDb {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length === 0) throw new MosquittoDbError("the file is empty", 0);
  for (let i = 0; i < MAGIC.length; i++) {
    if (bytes[i] !== MAGIC[i]) {
      throw new MosquittoDbError(
        i >= bytes.length
          ? "the file ends inside the Mosquitto header"
          : 'not a Mosquitto persistence file (expected the magic 00 B5 00 "mosquitto db")',
        Math.min(i, bytes.length),
      );
    }
  }
  const head = new Cursor(bytes, view, MAGIC.length, bytes.length, "file header", true);
  head.u32("CRC");
  const versionAt = head.pos;
  const version = head.u32("db version");
  if (version !== 5 && version !== 6) {
    throw new MosquittoDbError(
      version >= 2 && version <= 4
        ? `db version ${version} (Mosquitto 1.5 or older) is not supported: start Mosquitto 1.6 ` +
          `or 2.0 on it once and stop it, which rewrites the file as version 5 or 6`
        : `unsupported db version ${version} (expected 5 or 6)`,
      versionAt,
      "file header",
    );
  }

  const db: MosquittoDb = {
    version,
    lastDbId: 0n,
    shutdown: false,
    littleEndian: true,
    messages: new Map(),
    retained: [],
    sessions: [],
    warnings: [],
  };
  const sessions = new Map<string, MosquittoSession>();
  const sessionOf = (clientId: string): MosquittoSession => {
    let s = sessions.get(clientId);
    if (!s) {
      s = {
        clientId,
        expiryInterval: NEVER_EXPIRES,
        expiryTime: 0,
        lastMid: 0,
        listenerPort: 0,
        subscriptions: [],
        messages: [],
        hasClientChunk: false,
      };
      sessions.set(clientId, s);
    }
    return s;
  };
  const retainIds: [bigint, number][] = [];

  let pos = HEADER;
  while (pos < bytes.length) {
    const hc = new Cursor(bytes, view, pos, bytes.length, `chunk header at offset ${pos}`, true);
    const type = hc.u32("chunk type");
    const length = hc.u32("chunk length");
    const name = CHUNK_NAMES[type] ?? `type ${type}`;
    const where = `${name} chunk at offset ${pos}`;
    const start = hc.pos;
    const end = start + length;
    if (end > bytes.length) {
      throw new MosquittoDbError(
        `chunk length ${length} runs ${end - bytes.length} bytes past the end of the file ` +
          `(truncated?)`,
        pos + 4,
        where,
      );
    }
    const c = new Cursor(bytes, view, start, end, where, db.littleEndian);
    switch (type) {
      case 1: {
        c.need(10, "CFG (last_db_id, shutdown, dbid_size)");
        // The last store id decides the byte order of every 64-bit field: ids count up from 1,
        // so read the wrong way round it is astronomically large.
        const le = view.getBigUint64(start, true);
        const be = view.getBigUint64(start, false);
        db.littleEndian = !(le >= 1n << 48n && be < 1n << 48n);
        db.lastDbId = db.littleEndian ? le : be;
        c.skip(8, "last_db_id");
        db.shutdown = c.u8("shutdown") !== 0;
        const at = c.pos;
        const dbidSize = c.u8("dbid_size");
        if (dbidSize !== 8) {
          c.fail(`store ids of ${dbidSize} bytes are not supported (expected 8)`, at);
        }
        break;
      }
      case 2: {
        const storeId = c.u64("store_id");
        const expiryTime = c.i64("expiry_time");
        const payloadLen = c.u32("payloadlen");
        c.u16("source_mid");
        const sourceIdLen = c.u16("source_id_len");
        const sourceUserLen = c.u16("source_username_len");
        const topicLen = c.u16("topic_len");
        c.u16("source_port");
        const qosAt = c.pos;
        const qos = qosOf(c, c.u8("qos"), qosAt);
        const retain = c.u8("retain") !== 0;
        const sourceId = c.str(sourceIdLen, "source client id");
        const sourceUsername = sourceUserLen ? c.str(sourceUserLen, "source username") : undefined;
        if (topicLen === 0) c.fail("empty topic");
        const topic = c.str(topicLen, "topic");
        const payload = c.bytes(payloadLen, "payload");
        const properties = readProperties(c);
        db.messages.set(storeId, {
          storeId,
          topic,
          payload,
          qos,
          retain,
          properties,
          expiryTime,
          sourceId,
          sourceUsername,
        });
        break;
      }
      case 3: {
        const storeId = c.u64("store_id");
        const mid = c.u16("mid");
        const idLen = c.u16("id_len");
        const qosAt = c.pos;
        const qos = qosOf(c, c.u8("qos"), qosAt);
        const state = c.u8("state");
        const retainDup = c.u8("retain_dup");
        const dirAt = c.pos;
        const direction = c.u8("direction");
        if (direction > 1) c.fail(`direction ${direction} is neither 0 (in) nor 1 (out)`, dirAt);
        if (idLen === 0) c.fail("empty client id");
        const clientId = c.str(idLen, "client id");
        const properties = readProperties(c);
        sessionOf(clientId).messages.push({
          storeId,
          mid,
          qos,
          state,
          retain: (retainDup & 0xf0) !== 0,
          dup: (retainDup & 0x0f) !== 0,
          direction: direction === 1 ? "out" : "in",
          properties,
        });
        break;
      }
      case 4:
        retainIds.push([c.u64("store_id"), pos]);
        break;
      case 5: {
        const identifier = c.u32("identifier");
        const idLen = c.u16("id_len");
        const topicLen = c.u16("topic_len");
        const qosAt = c.pos;
        const qos = qosOf(c, c.u8("qos"), qosAt);
        const options = c.u8("options");
        c.skip(2, "padding");
        if (idLen === 0) c.fail("empty client id");
        if (topicLen === 0) c.fail("empty topic filter");
        const clientId = c.str(idLen, "client id");
        const filter = c.str(topicLen, "topic filter");
        sessionOf(clientId).subscriptions.push({
          filter,
          qos,
          identifier,
          noLocal: (options & 0x04) !== 0,
          retainAsPublished: (options & 0x08) !== 0,
          retainHandling: (options >> 4) & 0x03,
        });
        break;
      }
      case 6: {
        const expiryTime = c.i64("session_expiry_time");
        const expiryInterval = c.u32("session_expiry_interval");
        const lastMid = c.u16("last_mid");
        const idLen = c.u16("id_len");
        let listenerPort = 0;
        let userLen = 0;
        if (version === 6) {
          listenerPort = c.u16("listener_port");
          userLen = c.u16("username_len");
          c.skip(4, "padding");
        }
        if (idLen === 0) c.fail("empty client id");
        const clientId = c.str(idLen, "client id");
        const username = userLen ? c.str(userLen, "username") : undefined;
        const s = sessionOf(clientId);
        Object.assign(s, { expiryTime, expiryInterval, lastMid, listenerPort, username });
        s.hasClientChunk = true;
        break;
      }
      default:
        db.warnings.push(`unknown ${where} (${length} bytes) ignored`);
        c.pos = end;
    }
    // A fixed-size chunk may carry more than it is known to hold; anything left over in a
    // variable-size chunk has already been taken as properties.
    pos = end;
  }

  for (const [id, at] of retainIds) {
    const m = db.messages.get(id);
    if (m) db.retained.push(m);
    else {db.warnings.push(
        `RETAIN chunk at offset ${at} names store id ${id}, which is not in the file`,
      );}
  }
  db.sessions = [...sessions.values()];
  return db;
}

/** A session as it will be written to Midge's store. */
export interface ImportedSession {
  session: StoredSession;
  subscriptions: StoredSubscription[];
  messages: Omit<StoredClientMessage, "seq">[];
}

/** What to write into Midge's store, with everything left out and why. */
export interface ImportPlan {
  retained: Message[];
  sessions: ImportedSession[];
  /** Reason → count, for the report. */
  skipped: Map<string, number>;
  /** Warnings from the parser. */
  warnings: string[];
}

/**
 * Map a parsed file onto Midge's model at time `now` (ms since the epoch). Left out (and
 * counted in `skipped`): expired messages and sessions (Mosquitto would drop them on start too),
 * `$SYS` retained messages, sessions with a session expiry of 0, messages the client sent that
 * wait for PUBREL (Midge delivers a QoS 2 message when it arrives, not on PUBREL), and queue
 * entries whose message body is missing or whose state Midge has no equivalent for.
 */
export function planImport(db: MosquittoDb, now: number): ImportPlan {
  const skipped = new Map<string, number>();
  const skip = (reason: string) => skipped.set(reason, (skipped.get(reason) ?? 0) + 1);
  const nowS = now / 1000;
  const bodies = new Map<bigint, Message>();
  const body = (m: MosquittoMessage): Message => {
    let b = bodies.get(m.storeId);
    if (!b) {
      b = {
        topic: m.topic,
        payload: m.payload,
        qos: m.qos,
        retain: m.retain,
        properties: forwardedProperties(m.properties),
        expiresAt: m.expiryTime > 0 ? m.expiryTime * 1000 : 0,
        origin: m.sourceId,
      };
      bodies.set(m.storeId, b);
    }
    return b;
  };
  const expired = (m: MosquittoMessage) => m.expiryTime > 0 && m.expiryTime <= nowS;

  const retained: Message[] = [];
  for (const m of db.retained) {
    if (m.topic.startsWith("$SYS/")) skip("$SYS retained messages (the broker's own status)");
    else if (expired(m)) skip("retained messages past their message expiry");
    else retained.push({ ...body(m), retain: true });
  }

  const sessions: ImportedSession[] = [];
  for (const s of db.sessions) {
    if (!s.hasClientChunk) {
      skip("sessions with subscriptions or messages but no CLIENT chunk (corrupt file?)");
      continue;
    }
    if (s.expiryInterval === 0) {
      skip("sessions with session expiry 0 (they end with their connection)");
      continue;
    }
    const counts = s.expiryInterval !== NEVER_EXPIRES && s.expiryTime > 0;
    if (counts && s.expiryTime <= nowS) {
      skip("sessions past their session expiry");
      continue;
    }
    const session: StoredSession = {
      clientId: s.clientId,
      // Mosquitto does not keep the protocol version; every 3.1/3.1.1 session never expires.
      // The version is replaced by the client's own when it reconnects.
      version: (s.expiryInterval === NEVER_EXPIRES ? 4 : 5) as ProtocolVersion,
      expiryInterval: s.expiryInterval,
      // Mosquitto keeps the absolute expiry time; the session expiry clock started at
      // disconnection (the shutdown, for a client that was connected then).
      disconnectedAt: counts ? (s.expiryTime - s.expiryInterval) * 1000 : now,
      will: null,
      willDelay: 0,
      username: s.username,
    };
    const subscriptions: StoredSubscription[] = s.subscriptions.map((x) => ({
      filter: x.filter,
      qos: x.qos,
      nl: x.noLocal,
      rap: x.retainAsPublished,
      rh: x.retainHandling,
      subId: x.identifier,
    }));
    const messages: Omit<StoredClientMessage, "seq">[] = [];
    const used = new Set<number>();
    for (const cm of s.messages) {
      if (cm.direction === "in") {
        skip(
          "QoS 2 messages received from a client and waiting for its PUBREL (Midge delivers " +
            "QoS 2 messages on arrival; the publisher's PUBREL gets its PUBCOMP)",
        );
        continue;
      }
      const m = db.messages.get(cm.storeId);
      if (!m) {
        skip("queued messages whose message body is not in the file (expired)");
        continue;
      }
      if (expired(m)) {
        skip("queued messages past their message expiry");
        continue;
      }
      // Mosquitto states → Midge: 0 queued (sent fresh), 1 PUBLISH sent, 2 PUBREL sent.
      let state: 0 | 1 | 2;
      if ([1, 2, 4, 11].includes(cm.state)) state = 0;
      else if (cm.state === 3 || cm.state === 5) state = 1;
      else if (cm.state === 6 || cm.state === 9) state = 2;
      else {
        skip(`outgoing messages in state ${MOSQ_STATE[cm.state] ?? cm.state}`);
        continue;
      }
      if (state !== 0 && (cm.mid === 0 || used.has(cm.mid))) {
        if (state === 2) {
          skip("outgoing QoS 2 messages in PUBREL state without a usable packet id");
          continue;
        }
        state = 0; // send it again as new
      }
      if (state !== 0) used.add(cm.mid);
      const ids = cm.properties?.subscriptionIdentifier;
      messages.push({
        msg: body(m),
        qos: cm.qos,
        retain: cm.retain,
        subIds: ids === undefined ? undefined : ([] as number[]).concat(ids),
        state,
        packetId: state === 0 ? 0 : cm.mid,
      });
    }
    sessions.push({ session, subscriptions, messages });
  }
  return { retained, sessions, skipped, warnings: db.warnings };
}

/**
 * Write a plan into `store` (queued; the caller flushes). A session with the same client id
 * already in the store is replaced; so is a retained message on the same topic. Call
 * `store.load()` first so that new rows get fresh sequence numbers.
 */
export function writeImport(store: Store, plan: ImportPlan): void {
  for (const m of plan.retained) store.setRetained(m);
  for (const { session, subscriptions, messages } of plan.sessions) {
    store.deleteSession(session.clientId);
    store.saveSession(session);
    for (const sub of subscriptions) store.saveSubscription(session.clientId, sub);
    for (const m of messages) store.addClientMessage(session.clientId, m);
  }
}
