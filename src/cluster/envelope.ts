/**
 * A message as it travels between nodes: a small binary envelope in the NATS payload, so that no
 * NATS headers (slow to build and parse) are needed on the hot path.
 *
 * ```
 * byte 0      flags: bits 0-1 QoS, 2 retain, 3 properties, 4 topic included, 5 expiry
 * bytes 1-4   origin node (u32, random per process)
 * bytes 5-8   sequence number of the origin node (21 bits, wraps: see FABRIC_SEQ)
 * [expiry]    f64 absolute expiry time, ms since the epoch
 * [topic]     u32 length + UTF-8 (only when the subject cannot carry it: overflow, KV values)
 * [props]     u32 length + JSON of the forwarded v5 properties
 * [origin id] u16 length + UTF-8 client id of the publisher (for No Local across nodes)
 * payload     the rest
 * ```
 *
 * Several QoS 0 messages published one after the other on one subject travel as one NATS
 * message, a batch (`encodeBatch`): byte 0 is `F_BATCH` (no envelope has that bit), then each
 * envelope as a u32 length and its bytes.
 */
import type { Properties, QoS } from "../codec/types.ts";
import { fabricId, type Message } from "../broker/message.ts";

const F_RETAIN = 4;
const F_PROPS = 8;
const F_TOPIC = 16;
const F_EXPIRY = 32;
const HEADER = 9;
/** Byte 0 of a batch of envelopes. */
const F_BATCH = 128;

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A decoded envelope: the message and where it came from. */
export interface Envelope {
  msg: Message;
  /** The origin node's id. */
  node: number;
  /** The origin node's sequence number of this message. */
  seq: number;
}

/** Forwarded properties as JSON (correlation data as base64). */
function propsJson(p: Properties): string {
  const o: Record<string, unknown> = {};
  if (p.payloadFormatIndicator !== undefined) o.f = p.payloadFormatIndicator;
  if (p.contentType !== undefined) o.c = p.contentType;
  if (p.responseTopic !== undefined) o.r = p.responseTopic;
  if (p.correlationData !== undefined) o.d = btoa(String.fromCharCode(...p.correlationData));
  if (p.userProperties !== undefined) o.u = p.userProperties;
  return JSON.stringify(o);
}

function propsFromJson(s: string): Properties {
  const o = JSON.parse(s);
  const p: Properties = {};
  if (o.f !== undefined) p.payloadFormatIndicator = o.f;
  if (o.c !== undefined) p.contentType = o.c;
  if (o.r !== undefined) p.responseTopic = o.r;
  if (o.d !== undefined) p.correlationData = Uint8Array.from(atob(o.d), (c) => c.charCodeAt(0));
  if (o.u !== undefined) p.userProperties = o.u;
  return p;
}

/**
 * Encodes `msg` from node `node` (its `seq`-th message). `withTopic` puts the topic inside (when
 * the subject cannot carry it, and always in KV values).
 */
export function encodeEnvelope(
  msg: Message,
  node: number,
  seq: number,
  withTopic: boolean,
): Uint8Array {
  const topic = withTopic ? enc.encode(msg.topic) : null;
  const props = msg.properties ? enc.encode(propsJson(msg.properties)) : null;
  const origin = enc.encode(msg.origin);
  const out = new Uint8Array(envelopeSize(msg, topic, props, origin));
  writeEnvelope(out, new DataView(out.buffer), 0, msg, node, seq, topic, props, origin);
  return out;
}

/** The bytes of the envelope of `msg` with these encoded parts. */
function envelopeSize(
  msg: Message,
  topic: Uint8Array | null,
  props: Uint8Array | null,
  origin: Uint8Array,
): number {
  return HEADER + (msg.expiresAt ? 8 : 0) + (topic ? 4 + topic.length : 0) +
    (props ? 4 + props.length : 0) + 2 + origin.length + msg.payload.length;
}

/** Writes the envelope of `msg` into `out` at `at` (room checked by the caller); returns its end. */
function writeEnvelope(
  out: Uint8Array,
  view: DataView,
  at: number,
  msg: Message,
  node: number,
  seq: number,
  topic: Uint8Array | null,
  props: Uint8Array | null,
  origin: Uint8Array,
): number {
  out[at] = msg.qos | (msg.retain ? F_RETAIN : 0) | (props ? F_PROPS : 0) |
    (topic ? F_TOPIC : 0) | (msg.expiresAt ? F_EXPIRY : 0);
  view.setUint32(at + 1, node >>> 0);
  view.setUint32(at + 5, seq >>> 0);
  at += HEADER;
  if (msg.expiresAt) {
    view.setFloat64(at, msg.expiresAt);
    at += 8;
  }
  if (topic) {
    view.setUint32(at, topic.length);
    out.set(topic, at + 4);
    at += 4 + topic.length;
  }
  if (props) {
    view.setUint32(at, props.length);
    out.set(props, at + 4);
    at += 4 + props.length;
  }
  view.setUint16(at, origin.length);
  out.set(origin, at + 2);
  at += 2 + origin.length;
  out.set(msg.payload, at);
  return at + msg.payload.length;
}

/**
 * The text of the last topic and origin decoded, reused when the next envelope has the same bytes
 * (the messages of a batch mostly come from one publisher on one topic).
 */
export class DecodeCache {
  readonly topic = new LastText();
  readonly origin = new LastText();
}

/** The text of the last bytes decoded at one place in an envelope. */
class LastText {
  #bytes = new Uint8Array(0);
  #text = "";

  /** The text of `data[from, to)`, decoded again only when the bytes differ from the last. */
  decode(data: Uint8Array, from: number, to: number): string {
    if (same(this.#bytes, data, from, to)) return this.#text;
    this.#text = dec.decode(data.subarray(from, to));
    this.#bytes = data.slice(from, to);
    return this.#text;
  }
}

/** The text of `data[from, to)`, through `last` when there is one. */
function textAt(data: Uint8Array, from: number, to: number, last: LastText | undefined): string {
  return last ? last.decode(data, from, to) : dec.decode(data.subarray(from, to));
}

function same(a: Uint8Array, data: Uint8Array, from: number, to: number): boolean {
  if (a.length !== to - from) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== data[from + i]) return false;
  return true;
}

/**
 * Decodes an envelope; `topic` is used when the envelope does not carry one. Throws on garbage.
 * With a `cache`, a topic or origin equal to the last one's is not decoded again.
 */
export function decodeEnvelope(
  data: Uint8Array,
  topic: string | null,
  cache?: DecodeCache,
): Envelope {
  if (data.length < HEADER + 2) throw new Error("cluster envelope too short");
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const flags = data[0];
  let at = HEADER;
  let expiresAt = 0;
  if (flags & F_EXPIRY) {
    expiresAt = view.getFloat64(at);
    at += 8;
  }
  if (flags & F_TOPIC) {
    const n = view.getUint32(at);
    const from = at + 4, to = from + n;
    if (to > data.length) throw new Error("cluster envelope truncated");
    topic = textAt(data, from, to, cache?.topic);
    at = to;
  }
  if (topic === null) throw new Error("cluster envelope without a topic");
  let properties: Properties | undefined;
  if (flags & F_PROPS) {
    const n = view.getUint32(at);
    properties = propsFromJson(dec.decode(data.subarray(at + 4, at + 4 + n)));
    at += 4 + n;
  }
  const on = view.getUint16(at);
  const origin = on ? textAt(data, at + 2, at + 2 + on, cache?.origin) : "";
  at += 2 + on;
  if (at > data.length) throw new Error("cluster envelope truncated");
  return {
    msg: {
      topic,
      payload: data.subarray(at),
      qos: (flags & 3) as QoS,
      retain: (flags & F_RETAIN) !== 0,
      properties,
      expiresAt,
      origin,
      fid: fabricId(view.getUint32(1), view.getUint32(5)),
    },
    node: view.getUint32(1),
    seq: view.getUint32(5),
  };
}

/** Whether `data` is a batch of envelopes (`encodeBatch`) rather than one. */
export function isBatch(data: Uint8Array): boolean {
  return data.length > 0 && data[0] === F_BATCH;
}

/** One NATS payload holding `parts` (envelopes, `bytes` long together), in order. */
export function encodeBatch(parts: Uint8Array[], bytes: number): Uint8Array {
  const out = new Uint8Array(1 + 4 * parts.length + bytes);
  const view = new DataView(out.buffer);
  out[0] = F_BATCH;
  let at = 1;
  for (const p of parts) {
    view.setUint32(at, p.length);
    out.set(p, at + 4);
    at += 4 + p.length;
  }
  return out;
}

/** The envelopes of a batch, as views into it. Throws when it is cut short. */
export function splitBatch(data: Uint8Array): Uint8Array[] {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out: Uint8Array[] = [];
  let at = 1;
  while (at < data.length) {
    if (at + 4 > data.length) throw new Error("cluster batch truncated");
    const n = view.getUint32(at);
    if (at + 4 + n > data.length) throw new Error("cluster batch truncated");
    out.push(data.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return out;
}

/** The origin node of an envelope, read without decoding it (0 when it is too short). */
export function envelopeNode(data: Uint8Array): number {
  if (data.length < HEADER) return 0;
  return ((data[1] << 24) | (data[2] << 16) | (data[3] << 8) | data[4]) >>> 0;
}

/**
 * Builds a batch in one reused buffer: each envelope (with its topic inside) is written where it
 * goes, and the bytes of a topic and origin equal to the last message's are not encoded again.
 */
export class BatchWriter {
  #buf = new Uint8Array(16 * 1024);
  #view = new DataView(this.#buf.buffer);
  /** End of what is written (byte 0 is the batch flag). */
  #end = 1;
  /** Where the last envelope's length starts. */
  #last = 1;
  #count = 0;
  #topic = "";
  #topicBytes = new Uint8Array(0);
  #origin = "";
  #originBytes = new Uint8Array(0);

  /** Envelopes written since the last `take`. */
  get count(): number {
    return this.#count;
  }

  /** Bytes the batch would have now. */
  get size(): number {
    return this.#end;
  }

  /** Writes the envelope of `msg`, from node `node` (its `seq`-th message). */
  add(msg: Message, node: number, seq: number): void {
    if (msg.topic !== this.#topic) {
      this.#topic = msg.topic;
      this.#topicBytes = enc.encode(msg.topic);
    }
    if (msg.origin !== this.#origin) {
      this.#origin = msg.origin;
      this.#originBytes = enc.encode(msg.origin);
    }
    const topic = this.#topicBytes;
    const origin = this.#originBytes;
    const props = msg.properties ? enc.encode(propsJson(msg.properties)) : null;
    const size = envelopeSize(msg, topic, props, origin);
    this.#room(4 + size);
    const at = this.#end;
    this.#last = at;
    this.#view.setUint32(at, size);
    this.#end = writeEnvelope(this.#buf, this.#view, at + 4, msg, node, seq, topic, props, origin);
    this.#count++;
  }

  /**
   * The batch as a new array (a lone envelope as itself), and starts over; with `keepLast`, the
   * last envelope stays as the start of the next batch.
   */
  take(keepLast = false): Uint8Array {
    const upTo = keepLast ? this.#last : this.#end;
    const n = keepLast ? this.#count - 1 : this.#count;
    let out: Uint8Array;
    if (n === 1) out = this.#buf.slice(5, upTo);
    else {
      out = this.#buf.slice(0, upTo);
      out[0] = F_BATCH;
    }
    if (keepLast) {
      this.#buf.copyWithin(1, this.#last, this.#end);
      this.#end = 1 + this.#end - this.#last;
      this.#last = 1;
      this.#count = 1;
    } else {
      this.#end = 1;
      this.#last = 1;
      this.#count = 0;
      if (this.#buf.length > 256 * 1024) {
        // A large message passed: the buffer does not stay that large.
        this.#buf = new Uint8Array(16 * 1024);
        this.#view = new DataView(this.#buf.buffer);
      }
    }
    return out;
  }

  #room(n: number): void {
    if (this.#end + n <= this.#buf.length) return;
    let len = this.#buf.length * 2;
    while (len < this.#end + n) len *= 2;
    const next = new Uint8Array(len);
    next.set(this.#buf.subarray(0, this.#end));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }
}
