/**
 * Finding again what a dead node owed its sessions. Every QoS 1/2 message the cluster
 * acknowledged is in the message stream (`N_msgs`) before its PUBACK/PUBREC left. A session kept
 * in the session bucket has a cursor: a time before which everything it was owed had been
 * delivered and acknowledged. So a surviving node rebuilds the session from its record and reads
 * the stream once from the earliest cursor, giving each session the messages its subscriptions
 * match from its own cursor on, routed as this node routes any message (`Owed`). Messages near the cursor may have reached the client already:
 * they go out again, marked DUP when resent in flight [MQTT-3.3.1-1], at least once.
 */
import { DeliverPolicy } from "@nats-io/jetstream";
import type { Message } from "../broker/message.ts";
import type { StoredClientMessage } from "../store/types.ts";
import { decodeEnvelope, type Envelope, isBatch, splitBatch } from "./envelope.ts";
import type { ClusterNode } from "./node.ts";

/** Messages fetched from the stream per request. */
const BATCH = 256;
/** How long one fetch waits for messages before the replay ends. */
const FETCH_WAIT_MS = 2000;
/**
 * A replay starts this long before a cursor: a message's time in the stream (set by the stream's
 * leader) and the time a node got it differ by the clocks' skew and the transit. Messages in
 * this window may reach a client twice after its node died.
 */
export const REPLAY_MARGIN_MS = 2000;

/** One session to replay into: its key and the time (ms) from which it is owed messages. */
export interface ReplayTarget {
  key: string;
  from: number;
  /** Filled by `replay`: the messages found for it, oldest first. */
  found: StoredClientMessage[];
  /** Messages (`Message.fid`) it has completed already: not found again. */
  done?: Set<number>;
}

/**
 * The QoS 1/2 deliveries of `msg` to the sessions `keys`, by session key, as this node routes
 * messages now (`Broker.owed`): the sessions are rebuilt here before their stream is read.
 */
export type Owed = (keys: ReadonlySet<string>, msg: Message) => [string, StoredClientMessage][];

/**
 * Reads the QoS 1/2 messages the stream stored from `from` (ms) up to its end as it is now,
 * oldest first, handing each (with `Message.at`, its time in the stream) to `each`. Returns how
 * many were read; throws when the stream cannot be read.
 */
export async function readStream(
  node: ClusterNode,
  from: number,
  each: (env: Envelope) => void,
): Promise<number> {
  const stream = `${node.cfg.name}_msgs`;
  const info = await node.jsm.streams.info(stream);
  const last = info.state.last_seq;
  const lastTs = Date.parse(info.state.last_ts);
  if (info.state.messages === 0 || (Number.isFinite(lastTs) && lastTs < from)) return 0;
  const consumer = await node.js.consumers.get(stream, {
    filter_subjects: `${node.data}.q.>`,
    deliver_policy: DeliverPolicy.StartTime,
    opt_start_time: new Date(Math.max(0, from)).toISOString(),
  });
  let read = 0;
  for (let done = false; !done;) {
    const batch = await consumer.fetch({ max_messages: BATCH, expires: FETCH_WAIT_MS });
    let got = 0;
    for await (const m of batch) {
      got++;
      read++;
      if (m.seq >= last) done = true;
      const at = Math.floor(m.info.timestampNanos / 1e6);
      // One stored message may be a batch of envelopes (see src/cluster/fabric.ts).
      let parts: Uint8Array[];
      try {
        parts = isBatch(m.data) ? splitBatch(m.data) : [m.data];
      } catch {
        parts = []; // Not one of ours.
      }
      for (const data of parts) {
        let env: Envelope;
        try {
          env = decodeEnvelope(data, null);
        } catch {
          continue; // Not one of ours.
        }
        env.msg.at = at;
        each(env);
      }
      if (done) break;
    }
    // The stream said it has more: it is not answering (a leader being elected). The caller
    // reads again later.
    if (got === 0 && !done) throw new Error(`the stream stopped answering after ${read} messages`);
  }
  return read;
}

/**
 * Reads the message stream from the earliest target's `from` up to its end as it is now, and
 * gives each target the QoS 1/2 messages it is owed (in `found`). Throws when the stream cannot
 * be read (the caller retries or reports).
 */
export function replay(node: ClusterNode, targets: ReplayTarget[], owed: Owed): Promise<number> {
  if (targets.length === 0) return Promise.resolve(0);
  const now = Date.now();
  const byKey = new Map(targets.map((t) => [t.key, t]));
  const keys = new Set(byKey.keys());
  return readStream(node, Math.min(...targets.map((t) => t.from)), ({ msg }) => {
    if (msg.expiresAt && msg.expiresAt <= now) return;
    msg.replayed = true;
    for (const [key, d] of owed(keys, msg)) {
      const t = byKey.get(key)!;
      if (msg.at! < t.from || (msg.fid !== undefined && t.done?.has(msg.fid))) continue;
      t.found.push(d);
    }
  });
}
