/**
 * What a client connection and the packet handlers use of the broker. `Broker` (./broker.ts)
 * implements it for its `Connection`s (./connection.ts), and the handlers (./handlers/) reach it
 * as `conn.broker`. Declared here, importing neither of those files, so that the broker, the
 * connection and the handlers do not know each other's types in a circle: the broker makes
 * connections, a connection hands each packet to `handlePacket` (./handlers/dispatch.ts), and
 * the handlers act on this interface.
 */
import type { Config } from "../config/schema.ts";
import type { Auth } from "../auth/auth.ts";
import type { ControlHandler } from "../auth/chain_types.ts";
import type { Packet } from "../codec/types.ts";
import type { Logger } from "../sys/log.ts";
import type { Store, StoredClientMessage } from "../store/types.ts";
import type { SessionRecord } from "../store/types.ts";
import type { Clock } from "./clock.ts";
import type { Fabric } from "./fabric.ts";
import type { Message } from "./message.ts";
import type { Outgoing } from "./outgoing.ts";
import type { SessionRegistry } from "./registry.ts";
import type { RetainedStore } from "./retained.ts";
import type { Session, SubscriptionEntry } from "./session.ts";
import type { DeliverySink } from "./sink.ts";
import type { SessionTable } from "./tables.ts";

/** Counters behind $SYS and metrics (src/sys/). Mosquitto's meanings: "messages" are packets. */
export interface Stats {
  bytesReceived: number;
  bytesSent: number;
  /** MQTT packets of every type received / sent. */
  messagesReceived: number;
  messagesSent: number;
  /** PUBLISH packets received from clients / sent to clients. */
  publishReceived: number;
  publishSent: number;
  publishDropped: number;
  /** Payload bytes of those PUBLISH packets. */
  publishBytesReceived: number;
  publishBytesSent: number;
  protocolErrors: number;
  /** Sockets accepted. */
  connectionsTotal: number;
  /** CONNECTs accepted. */
  connects: number;
  /** Offline sessions ended by their expiry. */
  clientsExpired: number;
}

/**
 * The broker as its connections of type `C` and their packet handlers see it. Each member is the
 * `Broker` member of the same name; see there for what it does.
 */
export interface BrokerCore<C> {
  readonly config: Config;
  readonly log: Logger;
  /** The time keep-alive, expiry and will delays read, and their timers. */
  readonly clock: Clock;
  readonly stats: Stats;
  readonly sessions: SessionTable<Session>;
  readonly registry: SessionRegistry;
  readonly retained: RetainedStore;
  readonly fabric: Fabric;
  readonly auth: Auth;
  /** The persistent store, or null when `persistence = false`. */
  readonly store: Store | null;
  /** Control topics (`$CONTROL/…`) → their handlers. */
  readonly controls: ReadonlyMap<string, ControlHandler>;
  /** Set while the process is over `memory_limit`: PUBLISH is refused. */
  readonly memoryOver: boolean;

  /** Handles one packet a client sent (the packet handlers of ./handlers/). */
  handlePacket(conn: C, p: Packet): void;
  /** Called once when a connection is gone, whatever the cause. */
  connectionClosed(conn: C): void;
  /** Hands a PUBLISH to a control topic's handler and publishes its answer. */
  control(handler: ControlHandler, payload: Uint8Array, conn: C): void;
  /** Sends an acknowledgement once what it acknowledges is durable; `fail` runs if it cannot be. */
  ackAfter(
    conn: C,
    first: number,
    id: number,
    rc: number,
    fail: ((conn: C, first: number, id: number) => void) | null,
  ): void;
  /** `ackAfter`, and in a cluster once the QoS 2 state of the persistent session `s` is kept too. */
  ackAfterKept(
    conn: C,
    s: Session,
    first: number,
    id: number,
    rc: number,
    fail: ((conn: C, first: number, id: number) => void) | null,
  ): void;
  /** A client id for a client that sent none. */
  assignClientId(): string;

  /** Publishes a message; returns its local receivers. */
  publish(msg: Message): number;
  /** Sends retained message `o` to `s` within the session's limits. */
  replayRetained(s: Session, o: Outgoing): void;
  /** Ends the outgoing QoS `qos` exchange `id` of `s`; false when none was in flight. */
  completeOutgoing(s: Session, id: number, qos: 1 | 2): boolean;
  /** Drops the stored copy of a message that is done with. */
  forget(s: Session, o: Outgoing): void;
  /** Sends what waits for `s`, within its windows. */
  pump(s: Session): void;
  /** Resends what a resumed session left unacknowledged, then its queue. */
  resume(s: Session, conn: DeliverySink): void;
  /** Adds or replaces a subscription of `s`; returns the one it replaced. */
  subscribe(s: Session, entry: SubscriptionEntry): SubscriptionEntry | undefined;
  /** Removes the subscription of `s` to `filter`; false when there was none. */
  unsubscribe(s: Session, filter: string): boolean;
  /** Records a session's state in the store (when it is persistent), or removes it. */
  saveSession(s: Session): void;
  /** In a cluster: stores what should outlive this node of `s`; null on a single node. */
  keepSession(s: Session): Promise<void> | null;
  /** A session without a connection: its will and its end, now or later. */
  goOffline(s: Session): void;
  /** Publishes and forgets the session's will. */
  publishWill(s: Session): void;
  /** Drops a session and its subscriptions. */
  endSession(s: Session): void;
  /** A session handed over by another node, rebuilt here. */
  adoptSession(rec: SessionRecord): Session;
  /** Adds the messages the previous owner queued for an adopted session after recording it. */
  mergeMoved(session: Session | string, at: number, delta: StoredClientMessage[]): void;
}
