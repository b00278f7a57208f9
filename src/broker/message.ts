/** An application message as the broker holds it between receipt and delivery. */
import type { Properties, QoS } from "../codec/types.ts";
import { SHARE_PAYLOADS } from "../codec/decoder.ts";

export interface Message {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  /**
   * v5 properties forwarded unchanged [MQTT-3.3.2-17..20]: payload format, content type,
   * response topic, correlation data, user properties. Never topic alias or subscription ids.
   */
  properties?: Properties;
  /** Absolute time (ms since epoch) after which the message is dropped [MQTT-3.3.2-5 v5]; 0 = never. */
  expiresAt: number;
  /** Session key of the publisher (for No Local; see `sessionKey`), "" for the broker itself. */
  origin: string;
  /**
   * In a cluster: the message's identity, its origin node and that node's sequence number
   * (`fabricId`), so copies of it can be told apart when a session moves between nodes.
   */
  fid?: number;
  /**
   * In a cluster, for QoS 1/2: when this node got the message (ms since epoch), or when the
   * stream stored it for a message read back from there. A session's cursor is the oldest of
   * these among the messages it still owes (see src/cluster/replay.ts).
   */
  at?: number;
  /**
   * Read back from the cluster's stream for a session whose node died: it may have reached the
   * client already, so it goes out as a re-delivery, with DUP set [MQTT-3.3.1-1].
   */
  replayed?: true;
}

/** Sequence numbers of one node wrap at this (21 bits, so a fabric id fits a double exactly). */
export const FABRIC_SEQ = 0x200000;

/** A message's cluster identity from its origin node's number and sequence number. */
export function fabricId(node: number, seq: number): number {
  return node * FABRIC_SEQ + seq;
}

/** Properties a PUBLISH forwards to subscribers, without the per-hop ones. */
export function forwardedProperties(p: Properties | undefined): Properties | undefined {
  if (!p) return undefined;
  let out: Properties | undefined;
  const copy = <K extends keyof Properties>(k: K) => {
    if (p[k] !== undefined) (out ??= {})[k] = p[k];
  };
  copy("payloadFormatIndicator");
  copy("contentType");
  copy("responseTopic");
  copy("correlationData");
  copy("userProperties");
  return out;
}

/**
 * The Message Expiry Interval to send with a message now: the remaining lifetime in seconds
 * [MQTT-3.3.2-6 v5], or undefined when it never expires; -1 when it has expired.
 */
export function remainingExpiry(m: Message, now: number): number | undefined {
  if (!m.expiresAt) return undefined;
  const left = Math.ceil((m.expiresAt - now) / 1000);
  return left <= 0 ? -1 : left;
}

/** Bytes a message occupies in a queue, for `max_queued_bytes`. */
export function messageBytes(m: Message): number {
  return m.payload.length + m.topic.length;
}

/**
 * Give a message that the broker keeps (retained, queued, in flight) a payload of its own. The
 * decoder may hand out small payloads as views into a shared copy of a whole read (on Deno, where
 * that is much faster); a kept view would pin up to 16 KB of that read.
 */
export function ownPayload(m: Message): void {
  const p = m.payload;
  // On JavaScriptCore, reading `.buffer` of a small typed array makes it allocate an ArrayBuffer
  // (it was 15 % of the broker's CPU in a QoS 1 profile), and the decoder never hands out views
  // there: a view from elsewhere is caught by its offset.
  if (SHARE_PAYLOADS ? p.byteLength !== p.buffer.byteLength : p.byteOffset !== 0) {
    m.payload = p.slice();
  }
}
