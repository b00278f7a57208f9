/**
 * The delivery sink: what a session delivers to while it has someone at the other end. A client's
 * network connection (./connection.ts) is one; a bridge's link to a remote broker
 * (src/bridge/bridge.ts) and the console's internal subscriptions (src/sys/tap.ts) are others;
 * a link to another node of a cluster can be one later. The broker's delivery path
 * (`Broker.deliver`, `pump`, `resume`) knows only this.
 */
import type { ListenerConfig } from "../config/schema.ts";
import type { Outgoing } from "./outgoing.ts";
import type { ClientTerms } from "./terms.ts";

/** Where a session's messages go. */
export interface DeliverySink {
  /** Only an "open" sink is delivered to; "closed" once gone. */
  readonly state: "new" | "open" | "closed";
  /** True while the sink is too far behind to take more QoS 0 traffic. */
  readonly congested: boolean;
  /** Shutting down: nothing new is put in flight to it (see `Connection.quiesce`). */
  readonly quiet: boolean;
  /** What the other end asked for: its Receive Maximum bounds the QoS 1/2 window. */
  readonly terms: ClientTerms;
  /** The listener the client came through; undefined for a bridge or an internal sink. */
  readonly listener: ListenerConfig | undefined;
  /**
   * Send a PUBLISH of `o` with packet id `id` (0 for QoS 0), `dup` when it is sent again. False
   * when it could not be sent and is to be discarded (over the client's Maximum Packet Size).
   * A QoS 1/2 message stays in flight until the other end acknowledges it, which the sink
   * reports through `Broker.completeOutgoing`.
   */
  sendPublish(o: Outgoing, id: number, dup?: boolean): boolean;
  /** Send a PUBACK, PUBREC, PUBREL or PUBCOMP (`first`: its first byte, from the encoder). */
  sendAck(first: number, id: number, rc: number): void;
  /** The session's queue waits for room: pump it again once the sink is not congested. */
  awaitRoom(): void;
  /** End it (a take-over, an administrative kick), with a v5 reason code where it has one. */
  close(reasonCode?: number, why?: string): void;
}
