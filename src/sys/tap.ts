/**
 * An internal subscription: the broker routes messages to it as to any subscriber (through the
 * router, at QoS 0, so nothing in the hot path changes), and it hands each one to a callback.
 * The web console's live message view and its topic statistics are fed this way. It is not a
 * client: it has no socket, is not listed among the sessions, is never persisted, is not counted
 * as a receiver (a v5 PUBACK still says "no matching subscribers"), and a message routed to it
 * costs one call. Whatever it keeps is bounded by its owner.
 */
import type { Broker } from "../broker/broker.ts";
import type { DeliverySink } from "../broker/sink.ts";
import { DEFAULT_TERMS } from "../broker/terms.ts";
import type { Message } from "../broker/message.ts";
import { Session, type SubscriptionEntry } from "../broker/session.ts";
import type { Outgoing } from "../broker/outgoing.ts";
import { validTopicFilter } from "../broker/topic.ts";
import { Buffer } from "node:buffer";

/** Receives each message routed to the tap, its retain flag as published. */
export type TapReceiver = (msg: Message) => void;

let taps = 0;

/** The session behind a tap: internal, so the broker does not count it as a receiver. */
class TapSession extends Session {
  override get internal(): boolean {
    return true;
  }
}

/** A message as the console shows it: the payload copied (at most `maxBytes`). */
export interface TappedMessage {
  time: number;
  topic: string;
  qos: number;
  retain: boolean;
  /** Payload bytes published. */
  bytes: number;
  /** The payload, or its first `maxBytes` bytes. */
  payload: Uint8Array;
  properties?: Record<string, unknown>;
}

/** Copy what the console needs of `msg` now (the decoder may reuse the payload's memory). */
export function snapshot(msg: Message, maxBytes: number): TappedMessage {
  const p = msg.properties;
  let properties: Record<string, unknown> | undefined;
  if (p) {
    properties = {};
    if (p.payloadFormatIndicator !== undefined) {
      properties.payloadFormatIndicator = p.payloadFormatIndicator;
    }
    if (p.contentType !== undefined) properties.contentType = p.contentType;
    if (p.responseTopic !== undefined) properties.responseTopic = p.responseTopic;
    if (p.correlationData !== undefined) {
      properties.correlationData = Buffer.from(p.correlationData).toString("base64");
    }
    if (p.userProperties !== undefined) properties.userProperties = p.userProperties;
  }
  return {
    time: Date.now(),
    topic: msg.topic,
    qos: msg.qos,
    retain: msg.retain,
    bytes: msg.payload.length,
    payload: msg.payload.slice(0, maxBytes),
    properties,
  };
}

/** An internal subscription to one topic filter. */
export class Tap {
  readonly filter: string;
  readonly #broker: Broker;
  readonly #entry: SubscriptionEntry;
  #open = true;

  /** Subscribe to `filter` (throws on an invalid filter); `receive` gets every message. */
  constructor(broker: Broker, filter: string, receive: TapReceiver) {
    if (!validTopicFilter(filter) || filter.startsWith("$share/")) {
      throw new Error(`invalid topic filter ${JSON.stringify(filter)}`);
    }
    this.filter = filter;
    this.#broker = broker;
    const session = new TapSession(`$midge/console/${++taps}`);
    // Subscribed at QoS 0: the broker's delivery path only ever calls sendPublish.
    const sink: DeliverySink = {
      state: "open",
      congested: false,
      quiet: false,
      terms: DEFAULT_TERMS,
      listener: undefined,
      sendPublish(o: Outgoing): boolean {
        try {
          receive(o.msg);
        } catch (e) {
          // The console's trouble must never reach the publisher or the other receivers.
          broker.log.error(`Internal subscription on ${filter}: ${e}`);
        }
        return true;
      },
      sendAck() {},
      awaitRoom() {},
      close() {},
    };
    session.connection = sink;
    this.#entry = {
      session,
      filter,
      topicFilter: filter,
      qos: 0,
      nl: false,
      rap: true,
      rh: 0,
      subId: 0,
      group: "",
    };
    broker.router.add(this.#entry);
  }

  /** Unsubscribe. */
  close(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#broker.router.remove(this.#entry);
  }
}
