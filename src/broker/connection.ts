/**
 * One client connection, the delivery sink of its session: bytes in through the WASM decoder,
 * packets out through a per-connection queue that is flushed once per read batch (write
 * coalescing; see ARCHITECTURE.md), keep-alive, and the dispatch of each packet to its handler
 * in ./handlers/.
 */
import { publishSummary, receivedLines, sentAckLine, sentLine } from "./packet_log.ts";
import { Decoder } from "../codec/decoder.ts";
import {
  encode,
  type PreparedPublish,
  preparePublish,
  writeAck,
  writePrepared,
} from "../codec/encoder.ts";
import type { Packet, Properties, ProtocolVersion, PublishPacket } from "../codec/types.ts";
import { ConnackCodeV3, ReasonCode } from "../codec/types.ts";
import type { SocketHandlers, TransportSocket } from "../transport/types.ts";
import type { ListenerConfig } from "../config/schema.ts";
import type { BrokerCore } from "./core.ts";
import type { Session } from "./session.ts";
import type { Outgoing } from "./outgoing.ts";
import { type ClientTerms, DEFAULT_TERMS } from "./terms.ts";
import type { DeliverySink } from "./sink.ts";
import { remainingExpiry } from "./message.ts";
import { errorText } from "./guard.ts";

/**
 * A queued write, in a flat list without an object per packet: plain bytes; prepared PUBLISH
 * bytes, always followed by the packet id to patch in; or, as a number on its own, an
 * acknowledgement (`ackWord`).
 */
type Pending = Uint8Array | PreparedPublish | number;

/**
 * A PUBACK/PUBREC/PUBREL/PUBCOMP as one number: first byte, reason code, packet id. It fits in
 * 31 bits, so the engine keeps it unboxed: queueing an acknowledgement allocates nothing.
 */
function ackWord(first: number, id: number, rc: number): number {
  return first * 0x1000000 + rc * 0x10000 + id;
}

/** v5 topic aliases: set by the client, alias → topic; and the broker's own, topic → alias. */
interface Aliases {
  in: Map<number, string> | null;
  out: Map<string, number> | null;
}

/**
 * Encodings of a message kept on it for every receiver at the same version, QoS and retain flag:
 * the first inline (usually the only one), others in a map. No map per message: in
 * JavaScriptCore a Map and its entry are a few hundred bytes of garbage per message.
 */
interface EncodingCache {
  encKey?: number;
  enc?: PreparedPublish;
  encMore?: Map<number, PreparedPublish>;
}

/** Packets held while a CONNECT is authenticated, their payload bytes, and whether to keep them. */
interface Held {
  packets: Packet[];
  bytes: number;
  keep: boolean;
  /** Holds not settled yet. */
  waiting: number;
}

const dirty: Connection[] = [];
/** Emptied pending lists for reuse: a list per busy connection per batch is not made anew. */
const spareLists: Pending[][] = [];
let flushScheduled = false;
function flushAll(): void {
  flushScheduled = false;
  for (let i = 0; i < dirty.length; i++) {
    const c = dirty[i];
    try {
      c.flush();
    } catch (e) {
      // A write that throws ends that client, not the batch or the process.
      c.fail(e, "write");
    }
  }
  dirty.length = 0;
}

/** The buffer batches are assembled in for transports with `writeFrom` (larger ones get their own). */
const SCRATCH_BYTES = 256 * 1024;
const scratch = new Uint8Array(SCRATCH_BYTES);

/** Empty a flushed list and keep it for the next connection that has something to send. */
function recycle(pend: Pending[]): void {
  pend.length = 0;
  if (spareLists.length < 256) spareLists.push(pend);
}

/**
 * Bytes a socket may hold unsent before QoS 0 messages to it are dropped: the slow-reader
 * bound. QoS 1/2 are bounded by the inflight window and the session queue instead.
 */
export const SLOW_READER_BYTES = 4 * 1024 * 1024;

/** Packets a client may send after CONNECT before the CONNACK while its login is checked. */
const MAX_HELD = 100;
/**
 * Packets held for a connected client while an authorizer asks a remote service (or a
 * re-authentication is checked); beyond this, or SLOW_READER_BYTES of payload, it is closed.
 */
const MAX_HELD_OPEN = 10_000;

/**
 * What a connection's login said that lasts: when its credentials expire, and the v5
 * authentication method a re-authentication must use [MQTT-4.12.1-1 v5]. Only clients that have
 * either carry one.
 */
export interface ConnLogin {
  /** ms since the epoch; 0 = never. */
  expiresAt: number;
  /** The CONNECT's Authentication Method, if any. */
  method: string | undefined;
}

export class Connection implements SocketHandlers, DeliverySink {
  readonly broker: BrokerCore<Connection>;
  readonly socket: TransportSocket;
  readonly decoder: Decoder;
  /** "new" until CONNECT is accepted, then "open"; "closed" once gone. */
  state: "new" | "open" | "closed" = "new";
  version: ProtocolVersion = 4;
  session: Session | null = null;
  clientId = "";
  username: string | undefined;
  keepalive = 0;
  /** Time of the last packet received (ms), for keep-alive [MQTT-3.1.2-24 v3.1.1][MQTT-3.1.2-22 v5]. */
  lastRx: number;
  readonly openedAt: number;
  /** What the CONNECT asked for beyond the defaults (v5 limits, bridge mode); shared when nothing. */
  terms: ClientTerms = DEFAULT_TERMS;
  /** v5 topic aliases both ways; null until the first (most clients never use them). */
  #aliases: Aliases | null = null;
  /** Packets queued since the last flush; null when none (no array kept per idle connection). */
  #pending: Pending[] | null = null;
  #pendingBytes = 0;
  /** Queued messages wait until the socket has room (see `awaitRoom`). */
  #awaitingRoom = false;

  /**
   * The configuration of the listener this client came through (allow_anonymous, mount_point,
   * max_connections, …); undefined for a bridge's local side.
   */
  readonly listener: ListenerConfig | undefined;
  /** Expiry and method of the login, or null (no expiry, no authentication method). */
  login: ConnLogin | null = null;
  /** Packets that arrived while CONNECT was being authenticated, or null when not waiting. */
  #held: Held | null = null;
  /** This connection's place in `broker.connections` (see ConnectionList). */
  slot = -1;

  constructor(broker: BrokerCore<Connection>, socket: TransportSocket, listener?: ListenerConfig) {
    this.broker = broker;
    this.socket = socket;
    this.listener = listener;
    this.openedAt = this.lastRx = broker.clock.now();
    this.decoder = new Decoder({ maxPacketSize: broker.config.max_packet_size, fromClient: true });
  }

  /** The listener's mount_point: prefixed to every topic this client uses [mosquitto]. */
  get mountPoint(): string {
    return this.listener?.mount_point ?? "";
  }

  /** The topic a v5 client set for an incoming topic alias [MQTT-3.3.2-12 v5], if any. */
  aliasIn(alias: number): string | undefined {
    return this.#aliases?.in?.get(alias);
  }

  /** Records an incoming topic alias [MQTT-3.3.2-12 v5]. */
  setAliasIn(alias: number, topic: string): void {
    const a = this.#aliases ??= { in: null, out: null };
    (a.in ??= new Map()).set(alias, topic);
  }

  /** True once the connection is gone (a getter, so checks after calls are not narrowed away). */
  get closed(): boolean {
    return this.state === "closed";
  }

  /** Label for log lines. */
  get label(): string {
    return `${this.clientId || "<unknown>"} (${this.socket.remoteAddress})`;
  }

  onData(chunk: Uint8Array): void {
    if (this.state === "closed") return;
    try {
      this.#read(chunk);
    } catch (e) {
      // An error in this client's path closes this client only, with one log line.
      this.fail(e, "packet handling");
    }
  }

  #read(chunk: Uint8Array): void {
    this.broker.stats.bytesReceived += chunk.length;
    const { packets, error } = this.decoder.push(chunk);
    this.broker.stats.messagesReceived += packets.length;
    // One reading of the clock per read: its packets all arrived now.
    if (packets.length) this.lastRx = this.broker.clock.now();
    for (let i = 0; i < packets.length; i++) {
      if (this.closed) return;
      this.dispatch(packets[i]);
    }
    if (error && !this.closed) {
      if (this.state === "new" && this.decoder.awaitingConnect) {
        this.#refuseConnect(error.reasonCode);
      }
      this.protocolError(error.reasonCode, error.message);
    }
  }

  /**
   * The client's first packet failed to decode. A first packet that is not CONNECT gets no
   * answer [MQTT-3.1.0-1]; a CONNECT of an unsupported version gets CONNACK 0x01 in the 3.1.1
   * form [MQTT-3.1.2-2]; a v5 CONNECT gets a CONNACK with the reason code [MQTT-4.13.1-1 v5].
   */
  #refuseConnect(rc: number): void {
    if (this.broker.log.debugging) this.#logSent(`Sending CONNACK to ${this.#logId} (0, ${rc})`);
    if (rc === ReasonCode.UnsupportedProtocolVersion) {
      const v3: Packet = {
        cmd: "connack",
        sessionPresent: false,
        reasonCode: ConnackCodeV3.UnacceptableProtocolVersion,
      };
      this.sendBytes(encode(v3, 4));
    } else if (this.decoder.protocolVersion === 5) {
      this.sendBytes(encode({ cmd: "connack", sessionPresent: false, reasonCode: rc }, 5));
    }
  }

  dispatch(p: Packet): void {
    const held = this.#held;
    if (held) {
      // CONNECT is still being authenticated: keep what follows it, in order, until then.
      held.bytes += p.cmd === "publish" ? p.payload.length : 0;
      const max = this.state === "new" ? MAX_HELD : MAX_HELD_OPEN;
      if (held.packets.length >= max || held.bytes > SLOW_READER_BYTES) {
        this.close(
          undefined,
          this.state === "new" ? "too much sent before CONNACK" : "too much sent while authorizing",
        );
      } else if (held.keep) {
        held.packets.push(p);
      }
      return;
    }
    if (this.broker.log.debugging) this.#logReceived(p);
    // Told to go (see `leave`): only acknowledgements that need no answer are still taken. A
    // PUBLISH is neither taken nor acknowledged, so the client sends it again where it moves to
    // (QoS 1/2) and nothing is delivered twice; nothing more is sent after the DISCONNECT
    // [MQTT-3.14.4-1 v5].
    if (this.#leaving && p.cmd !== "puback" && p.cmd !== "pubcomp") return;
    // Shutting down (see `quiesce`): nothing new is taken, acknowledgements still flow.
    if (this.#quiet && (p.cmd === "publish" || p.cmd === "subscribe" || p.cmd === "unsubscribe")) {
      return;
    }
    this.broker.handlePacket(this, p);
  }

  /**
   * Hold incoming packets until `work` settles (a slow password check, an authorizer asking a
   * remote service), then handle them in order; with `keep` false (a delayed refusal) they are
   * dropped instead. The handlers call this when an auth answer is not ready yet.
   */
  hold(work: Promise<void>, keep = true): void {
    let h = this.#held;
    if (h === null) h = this.#held = { packets: [], bytes: 0, keep, waiting: 0 };
    else if (!keep) h.keep = false;
    // A hold made while another is pending (an authorizer asked during the login's answer)
    // joins it: the packets are released when both have settled.
    h.waiting++;
    const held = h;
    // Whatever the login or the packets held behind it throw ends this client, not the process.
    work.then(() => {
      if (--held.waiting > 0 || this.#held !== held) return;
      this.#held = null;
      const packets = held.packets;
      for (let i = 0; i < packets.length && !this.closed; i++) this.dispatch(packets[i]);
    }).catch((e) => {
      if (this.#held === held) this.#held = null;
      this.fail(e, "an auth check or the packets held behind it");
    });
  }

  /**
   * An unexpected error in this client's path: log one line and close this client (v5 with
   * 0x80 Unspecified error). Never throws.
   */
  fail(e: unknown, where: string): void {
    try {
      this.broker.log.error(`Client ${this.label}: internal error in ${where}: ${errorText(e)}`);
      if (this.state === "closed") return;
      this.close(ReasonCode.UnspecifiedError);
    } catch (e2) {
      // Closing failed too: make sure the socket goes, and say so once.
      this.state = "closed";
      try {
        this.socket.destroy();
      } catch { /* already gone */ }
      this.broker.log.error(`Client ${this.label}: internal error while closing: ${errorText(e2)}`);
    }
  }

  /** Queue a packet for sending (encoded now, written at the end of the batch). */
  send(p: Packet): void {
    if (this.state === "closed" || this.#leaving) return;
    if (this.broker.log.debugging) this.#logSent(sentLine(this.#logId, p));
    this.#queue(encode(p, this.version));
  }

  /** The client as Mosquitto names it in packet logs: its id, or its address before CONNECT. */
  get #logId(): string {
    return this.clientId || this.socket.remoteAddress;
  }

  #logReceived(p: Packet): void {
    for (const line of receivedLines(this.#logId, p)) this.broker.log.debug(line);
  }

  #logSent(line: string | undefined): void {
    if (line !== undefined) this.broker.log.debug(line);
  }

  /** Queue already-encoded bytes. */
  sendBytes(b: Uint8Array): void {
    if (this.state === "closed" || this.#leaving) return;
    this.#queue(b);
  }

  /**
   * Queue a PUBACK, PUBREC, PUBREL or PUBCOMP (`first`: PUBACK … PUBCOMP, from the encoder). The reason code goes
   * out on v5 only, and only when it is not 0 (§3.4.2.1). Nothing is allocated for it.
   */
  sendAck(first: number, id: number, rc: number): void {
    if (this.state === "closed" || this.#leaving) return;
    if (this.broker.log.debugging) this.#logSent(sentAckLine(this.#logId, first, id, rc));
    const v5rc = this.version === 5 ? rc : 0;
    this.#list().push(ackWord(first, id, v5rc));
    this.#pendingBytes += v5rc ? 5 : 4;
    this.broker.stats.messagesSent++;
  }

  #queue(b: Uint8Array): void {
    this.#list().push(b);
    this.#pendingBytes += b.length;
    this.broker.stats.messagesSent++;
  }

  /** The list of packets waiting for this batch's flush. */
  #list(): Pending[] {
    const pend = this.#pending;
    if (pend !== null) return pend;
    // First packet since the last flush: this connection joins the batch's flush list.
    dirty.push(this);
    if (!flushScheduled) {
      flushScheduled = true;
      queueMicrotask(flushAll);
    }
    return (this.#pending = spareLists.pop() ?? []);
  }

  /** True when the socket is too far behind to take more QoS 0 traffic. */
  get congested(): boolean {
    return this.socket.bufferedAmount + this.#pendingBytes > SLOW_READER_BYTES;
  }

  /**
   * The session queue holds messages that wait for the socket to take what it has: the broker
   * pumps the queue again after the next write or when the socket drains, once not congested.
   */
  awaitRoom(): void {
    this.#awaitingRoom = true;
  }

  /** SocketHandlers: the socket took what it held. */
  onDrain(): void {
    if (!this.#awaitingRoom) return;
    try {
      this.#resume();
    } catch (e) {
      this.fail(e, "sending what waited for room");
    }
  }

  #resume(): void {
    const s = this.session;
    if (this.state !== "open" || !s || s.connection !== this || this.congested) return;
    this.#awaitingRoom = false;
    this.broker.pump(s);
  }

  /**
   * Queue a PUBLISH of `o` with packet id `id` (0 for QoS 0). The encoding is shared by every
   * receiver that gets the same bytes. Returns false when the packet exceeds the client's
   * Maximum Packet Size [MQTT-3.1.2-25 v5], or its topic is outside the listener's mount point, and
   * it was not sent.
   */
  sendPublish(o: Outgoing, id: number, dup = false): boolean {
    // Told to go: what is in flight is sent again (DUP) wherever the client moves to.
    if (this.state === "closed" || this.#leaving) return true;
    // The clock is read only for a message that expires (most do not).
    const expiry = o.msg.expiresAt ? remainingExpiry(o.msg, this.broker.clock.now()) : undefined;
    let prep: PreparedPublish;
    const v = this.version === 5 ? 5 : 4;
    const mount = this.mountPoint;
    // The mount point is stripped only where it is: a topic outside it is not this client's to
    // see (nor can it be shown without it), and is discarded like an oversized one.
    if (mount && !o.msg.topic.startsWith(mount)) return false;
    const terms = this.terms;
    const aliases = this.#aliases?.out?.size ?? 0;
    if (!dup && !o.subIds && expiry === undefined && terms.aliasMaxOut === 0 && !this.mountPoint) {
      // The common case: bytes shared by every receiver of this message at this version/QoS/retain.
      const key = v * 8 + o.qos * 2 + (o.retain ? 1 : 0);
      const cache = o.msg as EncodingCache;
      let c = cache.encKey === key ? cache.enc : cache.encMore?.get(key);
      if (!c) {
        c = preparePublish(this.#publishPacket(o, expiry, false), v);
        if (cache.enc === undefined) {
          cache.encKey = key;
          cache.enc = c;
        } else (cache.encMore ??= new Map()).set(key, c);
      }
      prep = c;
    } else {
      prep = preparePublish(this.#publishPacket(o, expiry, dup), v);
    }
    // [MQTT-3.1.2-25 v5] a packet over the client's Maximum Packet Size is discarded, not sent.
    if (terms.maxPacket && prep.bytes.length > terms.maxPacket) {
      // Not sent, so an alias it set up must not be used later.
      const out = this.#aliases?.out;
      if (out && out.size > aliases) out.delete(o.msg.topic.slice(this.mountPoint.length));
      return false;
    }
    if (this.broker.log.debugging) {
      this.#logSent(
        `Sending PUBLISH to ${this.#logId} ${
          publishSummary(
            dup,
            o.qos,
            o.retain,
            id,
            o.msg.topic.slice(mount.length),
            o.msg.payload.length,
          )
        }`,
      );
    }
    this.broker.stats.publishSent++;
    this.broker.stats.publishBytesSent += o.msg.payload.length;
    if (o.qos === 0) this.#queue(prep.bytes);
    else {
      const pend = this.#list();
      pend.push(prep, id);
      this.#pendingBytes += prep.bytes.length;
      this.broker.stats.messagesSent++;
    }
    return true;
  }

  /**
   * v5 topic alias for an outgoing topic, kept with this connection only [MQTT-3.3.2-7 v5]: [alias,
   * topic-to-send]. A new topic takes the next free alias while there is one (up to the client's
   * Topic Alias Maximum [MQTT-3.3.2-11 v5]); after that topics are sent in full.
   */
  #aliasOut(topic: string): [number, string] {
    const map = (this.#aliases ??= { in: null, out: null }).out ??= new Map();
    const known = map.get(topic);
    if (known !== undefined) return [known, ""];
    if (map.size >= this.terms.aliasMaxOut) return [0, topic];
    const a = map.size + 1;
    map.set(topic, a);
    return [a, topic];
  }

  #publishPacket(o: Outgoing, expiry: number | undefined, dup: boolean): PublishPacket {
    const m = o.msg;
    let alias = 0;
    // The listener's mount point is not shown to its clients.
    let topic = this.mountPoint ? m.topic.slice(this.mountPoint.length) : m.topic;
    if (this.terms.aliasMaxOut > 0) [alias, topic] = this.#aliasOut(topic);
    const pkt: PublishPacket = {
      cmd: "publish",
      topic,
      payload: m.payload,
      qos: o.qos,
      retain: o.retain,
      dup,
      messageId: o.qos > 0 ? 1 : undefined,
    };
    if (this.version === 5) {
      let props: Properties | undefined = m.properties ? { ...m.properties } : undefined;
      if (expiry !== undefined && expiry > 0) (props ??= {}).messageExpiryInterval = expiry;
      if (o.subIds?.length) {
        (props ??= {}).subscriptionIdentifier = o.subIds.length === 1 ? o.subIds[0] : o.subIds;
      }
      if (alias) (props ??= {}).topicAlias = alias;
      if (props) pkt.properties = props;
    }
    return pkt;
  }

  /** Write everything queued in one socket write. */
  flush(): void {
    const pend = this.#pending;
    if (pend === null) return;
    this.#pending = null;
    if (pend.length === 0 || this.state === "closed") {
      this.#pendingBytes = 0;
      recycle(pend);
      return;
    }
    const total = this.#pendingBytes;
    const first = pend[0];
    const socket = this.socket;
    let out: Uint8Array;
    // A transport that copies what it cannot send at once gets a batch assembled in one buffer
    // used again and again; others get a buffer of their own.
    let reuse = false;
    if (pend.length === 1 && first instanceof Uint8Array) {
      out = first;
    } else {
      reuse = socket.writeFrom !== undefined && total <= SCRATCH_BYTES;
      out = reuse ? scratch : new Uint8Array(total);
      let pos = 0;
      for (let i = 0; i < pend.length; i++) {
        const p = pend[i];
        if (typeof p === "number") {
          // An acknowledgement (ackWord).
          pos = writeAck(out, pos, p >>> 24, p & 0xffff, (p >>> 16) & 0xff);
        } else if (p instanceof Uint8Array) {
          out.set(p, pos);
          pos += p.length;
        } else {
          // Prepared PUBLISH bytes; its packet id is the next item.
          pos = writePrepared(p, pend[++i] as number, out, pos);
        }
      }
    }
    this.#pendingBytes = 0;
    recycle(pend);
    this.broker.stats.bytesSent += total;
    if (reuse) socket.writeFrom!(out, total);
    else socket.write(out);
    if (this.#awaitingRoom) this.#resume();
  }

  /** Set once the broker has told this client to go (see `leave`). */
  #leaving = false;
  /** Set when the broker stops taking this client's PUBLISH, SUBSCRIBE and UNSUBSCRIBE. */
  #quiet = false;

  /**
   * First step of a shutdown: this client's PUBLISH, SUBSCRIBE and UNSUBSCRIBE packets are no
   * longer taken (nor acknowledged: it sends them again where it goes), while the
   * acknowledgements owed for what was taken still go out.
   */
  quiesce(): void {
    this.#quiet = true;
  }

  /** Whether `quiesce` was called: nothing new is put in flight to this client. */
  get quiet(): boolean {
    return this.#quiet;
  }

  /**
   * Tells the client to go (v5 DISCONNECT `reasonCode` with `props`; v3 clients are sent
   * nothing) but keeps reading its acknowledgements until it closes, at most `graceMs`; PUBLISH
   * packets it still sends are ignored. Resolves once the connection is closed.
   */
  leave(
    reasonCode: number,
    why: string,
    props: Properties | undefined,
    graceMs: number,
  ): Promise<void> {
    if (this.state === "closed") return Promise.resolve();
    if (this.state !== "open") {
      this.close(undefined, why);
      return Promise.resolve();
    }
    if (this.version === 5) {
      const dp: Packet = { cmd: "disconnect", reasonCode };
      if (props) dp.properties = props;
      this.send(dp);
      this.flush();
      this.#leaving = true;
    } else {
      // v3 has no DISCONNECT from the server: closing is the message.
      this.close(undefined, why);
      return Promise.resolve();
    }
    this.broker.log.notice(`Client ${this.label} told to go: ${why}.`);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.close(undefined, `${why} (gone after ${graceMs} ms)`);
        resolve();
      }, graceMs);
      this.#onGone = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Runs once the connection is closed, for `leave`. */
  #onGone: (() => void) | null = null;

  /**
   * Close the connection. With a v5 reason code and an open v5 session, a DISCONNECT with that
   * reason goes first [MQTT-4.13.1-1 v5]. `why` is logged.
   */
  close(reasonCode?: number, why?: string, props?: Properties): void {
    if (this.state === "closed") return;
    if (reasonCode !== undefined && this.version === 5 && this.state === "open") {
      const dp: Packet = { cmd: "disconnect", reasonCode };
      if (props) dp.properties = props;
      this.send(dp);
    }
    if (why) this.broker.log.notice(`Client ${this.label} disconnected: ${why}.`);
    this.flush();
    this.state = "closed";
    this.socket.end();
    this.broker.connectionClosed(this);
    this.#gone();
  }

  #gone(): void {
    const f = this.#onGone;
    this.#onGone = null;
    f?.();
  }

  /** A malformed packet or protocol violation: close (v5 with the reason code) and log one line. */
  protocolError(reasonCode: number, message: string): void {
    this.broker.stats.protocolErrors++;
    this.close(reasonCode, message);
  }

  /** The socket went away (by either side). */
  /** SocketHandlers: the transport saw the socket close. */
  onClose(): void {
    try {
      this.onSocketClose();
    } catch (e) {
      this.broker.log.error(`Client ${this.label}: internal error after close: ${errorText(e)}`);
    }
  }

  onSocketClose(): void {
    if (this.state === "closed") return;
    this.state = "closed";
    if (this.#pending) recycle(this.#pending);
    this.#pending = null;
    this.#pendingBytes = 0;
    this.broker.connectionClosed(this);
    this.#gone();
  }

  /** Reason string property, only when the client did not turn problem information off [MQTT-3.1.2-29 v5]. */
  reason(text: string): Properties | undefined {
    return this.version === 5 && this.terms.problemInfo ? { reasonString: text } : undefined;
  }
}
