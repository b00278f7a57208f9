/**
 * The broker's state in numbers, read on demand by `$SYS` and `/metrics`: the counters kept in
 * `broker.stats` plus gauges computed by walking the sessions (cheap: one pass over the session
 * map, no per-message work except the bounded inflight windows).
 */
import type { Broker } from "../broker/broker.ts";
import { messageBytes } from "../broker/message.ts";

/** Point-in-time figures. Message bytes are payload plus topic, as `max_queued_bytes` counts. */
export interface Gauges {
  /** Sessions known (connected, plus offline persistent ones). */
  sessions: number;
  /** Sessions with an open connection. */
  connected: number;
  /** Open sockets, including those that have not sent CONNECT yet. */
  sockets: number;
  /** Messages waiting in session queues, and their bytes. */
  queued: number;
  queuedBytes: number;
  /** Outgoing QoS 1/2 messages sent and not yet acknowledged, and their bytes. */
  inflight: number;
  inflightBytes: number;
  retained: number;
  retainedBytes: number;
  subscriptions: number;
  sharedSubscriptions: number;
}

/** Compute the gauges now. */
export function gauges(broker: Broker): Gauges {
  let connected = 0, queued = 0, queuedBytes = 0, inflight = 0, inflightBytes = 0;
  for (const s of broker.sessions.values()) {
    if (s.connection && s.connection.state === "open") connected++;
    queued += s.queue.length;
    queuedBytes += s.queuedBytes;
    inflight += s.inflight.size;
    for (const f of s.inflight.values()) inflightBytes += messageBytes(f.msg);
  }
  return {
    sessions: broker.sessions.size,
    connected,
    sockets: broker.connections.size,
    queued,
    queuedBytes,
    inflight,
    inflightBytes,
    retained: broker.retained.size,
    retainedBytes: broker.retained.bytes,
    subscriptions: broker.router.count,
    sharedSubscriptions: broker.router.sharedCount,
  };
}
