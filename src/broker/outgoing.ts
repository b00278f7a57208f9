/**
 * A message on its way to one session: queued, then in flight, one object from delivery to
 * acknowledgement.
 */
import type { QoS } from "../codec/types.ts";
import type { Message } from "./message.ts";

/**
 * A message on its way to a session. Queued, and then in flight, it stays the same object
 * (one allocation per delivery): make it with `outgoing` so that every one has the same shape.
 */
export interface Outgoing {
  msg: Message;
  qos: QoS;
  retain: boolean;
  /** Subscription identifiers to send with it (v5). */
  subIds: number[] | undefined;
  /** Its row in the persistent store, when the session is persistent. */
  seq: number | undefined;
  /**
   * In flight: "publish" while waiting for PUBACK/PUBREC, "pubrel" once PUBREL is sent and
   * PUBCOMP is awaited, "unsent" when sent on an earlier connection and not yet again on this
   * one (held back by the client's Receive Maximum, see `Session.unsent`). Queued: "publish".
   */
  state: "publish" | "pubrel" | "unsent";
}

/** A QoS 1/2 message sent and not yet fully acknowledged. */
export type Inflight = Outgoing;

/** A new delivery of `msg`. */
export function outgoing(
  msg: Message,
  qos: QoS,
  retain: boolean,
  subIds: number[] | undefined,
  seq?: number,
): Outgoing {
  return { msg, qos, retain, subIds, seq, state: "publish" };
}
