/**
 * A session: the state the broker keeps for one client id, connected or not [MQTT-4.1.0-1] —
 * subscriptions, QoS 1/2 messages in flight both ways, the queue of messages not yet sent, the
 * will, and the expiry.
 */
import type { AuthChain, SessionAuth } from "../auth/chain.ts";
import type { ProtocolVersion, QoS, Will } from "../codec/types.ts";
import { messageBytes, ownPayload } from "./message.ts";
import type { Inflight, Outgoing } from "./outgoing.ts";
import type { Clock, ClockTimer } from "./clock.ts";
import type { DeliverySink } from "./sink.ts";
import { utf8Length } from "./topic.ts";

/** One subscription of one session (or of a shared group's member). */
export interface SubscriptionEntry {
  session: Session;
  /** The filter as the client sent it, e.g. "$share/g/a/#" or "a/#"; the session's map key. */
  filter: string;
  /** The part that is matched against topics ("a/#"). */
  topicFilter: string;
  qos: QoS;
  /** v5 No Local [MQTT-3.8.3-3 v5]. */
  nl: boolean;
  /** v5 Retain As Published [MQTT-3.3.1-12 v5]. */
  rap: boolean;
  /** v5 Retain Handling. */
  rh: number;
  /** v5 Subscription Identifier, 0 = none. */
  subId: number;
  /** Shared subscription group name, "" when not shared. */
  group: string;
}

/**
 * An empty map shared by every session that has nothing of a kind yet, so an idle connection
 * carries no map of its own. Reading, deleting and clearing it are harmless; adding to it would
 * leak into every session, so `set` throws (sessions add through their own methods).
 */
class NoEntries<K, V> extends Map<K, V> {
  override set(_k: K, _v: V): this {
    throw new Error("internal: add through the Session method, not the shared empty map");
  }
}
const NO_SUBSCRIPTIONS: Map<string, SubscriptionEntry> = new NoEntries();
const NO_INFLIGHT: Map<number, Inflight> = new NoEntries();
const NO_QUEUE: Outgoing[] = Object.freeze([]) as unknown as Outgoing[];

/**
 * The key of a session: its client id, preceded by its listener's mount point and a NUL when it
 * has one. A session belongs to its mount point: a client on one listener cannot resume or take
 * over a session made on another. (NUL cannot occur in a client id [MQTT-1.5.4-2 v5] nor in a
 * mount point, so keys cannot collide.)
 */
export function sessionKey(mountPoint: string, clientId: string): string {
  return mountPoint ? mountPoint + "\u0000" + clientId : clientId;
}

/** The mount point and client id of a session key (see `sessionKey`). */
export function splitSessionKey(key: string): { mountPoint: string; clientId: string } {
  const i = key.indexOf("\u0000");
  return i < 0
    ? { mountPoint: "", clientId: key }
    : { mountPoint: key.slice(0, i), clientId: key.slice(i + 1) };
}

/** Session expiry value meaning "never". */
export const NEVER_EXPIRES = 0xffffffff;

export class Session {
  readonly clientId: string;
  /** Subscriptions by filter as sent. */
  /** Subscriptions by filter; a shared empty map until the first one (see addSubscription). */
  subscriptions: Map<string, SubscriptionEntry> = NO_SUBSCRIPTIONS;
  /** UTF-8 bytes of the filters in `subscriptions` (max_subscription_bytes_per_client). */
  subscriptionBytes = 0;
  /** Where the session delivers to while its client is connected: a connection, a bridge link. */
  connection: DeliverySink | null = null;
  protocolVersion: ProtocolVersion = 4;
  /** Seconds the session outlives its connection; 0 = ends with it; NEVER_EXPIRES = never. */
  expiryInterval = 0;
  /** When the session was last disconnected (ms), for expiry. */
  disconnectedAt = 0;
  /** Ends the offline session when its expiry has passed (a timer of the broker's clock). */
  expiryTimer: ClockTimer | null = null;

  /** Outgoing QoS 1/2 messages in flight, by packet id. */
  /** Outgoing QoS 1/2 in flight by packet id; a shared empty map until the first (see setInflight). */
  inflight: Map<number, Inflight> = NO_INFLIGHT;
  /** Messages waiting for an inflight slot or for the client to come back. */
  /** Messages waiting; a shared frozen empty list until the first (pushing to it would throw). */
  queue: Outgoing[] = NO_QUEUE;
  queuedBytes = 0;
  /** Messages dropped because the queue was full. */
  dropped = 0;
  #nextId = 1;

  /**
   * Packet ids of in-flight messages to resend, oldest first, that did not fit in the window of
   * the client that resumed the session (its Receive Maximum [MQTT-3.3.4-9 v5]); they go out as
   * acknowledgements free slots. Null when there are none.
   */
  unsent: number[] | null = null;

  /** Incoming QoS 2 packet ids received (PUBREC sent) and not yet released [MQTT-4.3.3-10 v5]. */
  incomingQos2: Set<number> | null = null;

  /** User name of the last connection (kept with the session for ACL checks after a restart). */
  username: string | undefined;
  /**
   * Authorization state, set once a client (or the store) has said who this session belongs to:
   * see `Auth.bind`. Undefined until then, null when the session may do anything.
   */
  auth: SessionAuth | AuthChain | null | undefined = undefined;
  /** The will of the current connection, and its delay in seconds (v5). */
  will: Will | null = null;
  willDelay = 0;
  /** Publishes a delayed will (a timer of the broker's clock). */
  willTimer: ClockTimer | null = null;

  /** The mount point of the listener the session was made on ("" for none). */
  readonly mountPoint: string;
  /** Its key in the broker's session table and in the store: see `sessionKey`. */
  readonly key: string;

  constructor(clientId: string, mountPoint = "") {
    this.clientId = clientId;
    this.mountPoint = mountPoint;
    this.key = sessionKey(mountPoint, clientId);
  }

  /** A packet id not in use by an outgoing message [MQTT-2.2.1-3 v5]; 0 when all 65535 are busy. */
  allocateId(): number {
    for (let i = 0; i < 65535; i++) {
      const id = this.#nextId;
      this.#nextId = id === 65535 ? 1 : id + 1;
      if (!this.inflight.has(id)) return id;
    }
    return 0;
  }

  /**
   * Queue a message; false (and counted as dropped) when `max_queued_messages` or
   * `max_queued_bytes` would be exceeded. 0 means unlimited.
   */
  enqueue(o: Outgoing, maxMessages: number, maxBytes: number): boolean {
    const size = messageBytes(o.msg);
    if (
      (maxMessages > 0 && this.queue.length >= maxMessages) ||
      (maxBytes > 0 && this.queuedBytes + size > maxBytes)
    ) {
      this.dropped++;
      return false;
    }
    ownPayload(o.msg);
    if (this.queue === NO_QUEUE) this.queue = [];
    this.queue.push(o);
    this.queuedBytes += size;
    return true;
  }

  /**
   * Put a message at `index` of the queue, whatever the limits (a message already accepted
   * elsewhere, such as one handed over by another node).
   */
  enqueueAt(index: number, o: Outgoing): void {
    ownPayload(o.msg);
    if (this.queue === NO_QUEUE) this.queue = [];
    this.queue.splice(index, 0, o);
    this.queuedBytes += messageBytes(o.msg);
  }

  /** Add or replace a subscription (the map is made on the first one). */
  addSubscription(filter: string, entry: SubscriptionEntry): void {
    if (this.subscriptions === NO_SUBSCRIPTIONS) this.subscriptions = new Map();
    if (!this.subscriptions.has(filter)) this.subscriptionBytes += utf8Length(filter);
    this.subscriptions.set(filter, entry);
  }

  /** Remove the subscription to `filter`; returns it, or undefined when there was none. */
  removeSubscription(filter: string): SubscriptionEntry | undefined {
    const e = this.subscriptions.get(filter);
    if (!e) return undefined;
    this.subscriptions.delete(filter);
    this.subscriptionBytes -= utf8Length(filter);
    return e;
  }

  /** Forget every subscription (the caller has removed them from the router). */
  clearSubscriptions(): void {
    this.subscriptions = NO_SUBSCRIPTIONS;
    this.subscriptionBytes = 0;
  }

  /** An in-flight message is acknowledged by the client: if it was waiting to be resent, no more. */
  settle(id: number, f: Inflight): void {
    if (f.state !== "unsent" || this.unsent === null) return;
    const i = this.unsent.indexOf(id);
    if (i >= 0) this.unsent.splice(i, 1);
    if (this.unsent.length === 0) this.unsent = null;
  }

  /** Record a message in flight (the map is made on the first one). */
  setInflight(id: number, f: Inflight): void {
    if (this.inflight === NO_INFLIGHT) this.inflight = new Map();
    this.inflight.set(id, f);
  }

  /**
   * True for the broker's own internal subscriptions (src/sys/tap.ts), which are not counted as
   * receivers. A getter on the prototype, so sessions carry no field for it.
   */
  get internal(): boolean {
    return false;
  }

  /** True when the session outlives its connection (it is then kept in the store). */
  get persistent(): boolean {
    return this.expiryInterval > 0;
  }

  /** Drop every queued message. */
  clearQueue(): void {
    this.queue = NO_QUEUE;
    this.queuedBytes = 0;
  }

  /**
   * Remove `gone` from the queue and from the messages in flight that are not released yet (a
   * PUBREL sent stays); returns what was removed, so that their stored copies can be deleted.
   */
  discard(gone: Set<Outgoing>): Outgoing[] {
    if (gone.size === 0) return [];
    const dropped: Outgoing[] = [];
    if (this.queue.length) {
      const kept = this.queue.filter((o) => !gone.has(o) || (dropped.push(o), false));
      for (const o of dropped) this.queuedBytes -= messageBytes(o.msg);
      this.queue = kept.length ? kept : NO_QUEUE;
    }
    for (const [id, f] of this.inflight) {
      if (f.state !== "pubrel" && gone.has(f)) {
        this.inflight.delete(id);
        dropped.push(f);
      }
    }
    return dropped;
  }

  /** Take the oldest queued message. */
  dequeue(): Outgoing | undefined {
    const o = this.queue.shift();
    if (o) this.queuedBytes -= messageBytes(o.msg);
    return o;
  }

  /** Cancel the expiry and will timers (set on `clock`). */
  clearTimers(clock: Clock): void {
    if (this.expiryTimer) clock.clearTimeout(this.expiryTimer);
    if (this.willTimer) clock.clearTimeout(this.willTimer);
    this.expiryTimer = null;
    this.willTimer = null;
  }
}
