/**
 * Start-up: rebuild retained messages and persistent sessions (subscriptions, queued and
 * in-flight messages, QoS 2 state, pending wills) from the store. Session and message expiry go
 * on counting from the times stored, so a restart does not extend anyone's lifetime.
 */
import type { Auth } from "../auth/auth.ts";
import type { Logger } from "../sys/log.ts";
import type { RetainedStore } from "./retained.ts";
import type { Router } from "./router.ts";
import type { SessionTable } from "./tables.ts";
import type { Store } from "../store/types.ts";
import type { Outgoing } from "./outgoing.ts";
import { Session, splitSessionKey, type SubscriptionEntry } from "./session.ts";
import { outgoing } from "./outgoing.ts";
import { parseShared, validTopicFilter, validTopicName } from "./topic.ts";
import type { SessionRecord, Snapshot, StoredClientMessage } from "../store/types.ts";

/** What restoring sessions needs of the broker (the broker is one). */
export interface RestoreTarget {
  readonly log: Logger;
  readonly sessions: SessionTable<Session>;
  readonly auth: Pick<Auth, "bind">;
  readonly router: Pick<Router, "add">;
  readonly retained: RetainedStore;
  readonly store: Store | null;
  /** Starts the will and expiry clocks of a session restored without its client. */
  goOffline(s: Session): void;
}

/** Restore a snapshot into an empty broker; returns what was restored. */
export function restore(
  broker: RestoreTarget,
  snap: Snapshot,
): { sessions: number; retained: number; messages: number } {
  const now = Date.now();
  const log = broker.log;
  let retained = 0;
  for (const m of snap.retained) {
    if (m.expiresAt && m.expiresAt <= now) {
      broker.store?.deleteRetained(m.topic);
      continue;
    }
    if (!validTopicName(m.topic)) {
      // A row no client could have made (an earlier version let a mount_point push a topic past
      // 65,535 bytes): it would reset every subscriber it matched. Dropped, and said so.
      log.warning(`Persistence: retained message on an invalid topic (${brief(m.topic)}) dropped.`);
      broker.store?.deleteRetained(m.topic);
      continue;
    }
    if (broker.retained.restored) broker.retained.restored(m);
    else broker.retained.set(m);
    retained++;
  }
  let messages = 0;
  for (const rec of snap.sessions) {
    const s = restoreSession(broker, rec, now);
    messages += s.inflight.size + s.queue.length;
    broker.goOffline(s);
  }
  return { sessions: snap.sessions.length, retained, messages };
}

/** One session as a store or another node keeps it (defined with the store's types). */
export type { SessionRecord };

/**
 * Rebuild one session from its record into the broker's table and router (its clocks start at
 * `now` if it was connected when recorded). Rows on invalid topics are dropped and logged. The
 * caller decides what happens next (`goOffline`, or a client resuming it).
 */
export function restoreSession(broker: RestoreTarget, rec: SessionRecord, now: number): Session {
  const log = broker.log;
  const { session: st, subscriptions, messages: msgs, incomingQos2 } = rec;
  // The stored id is the session key: mount point and client id (see sessionKey).
  const { mountPoint, clientId } = splitSessionKey(st.clientId);
  const s = new Session(clientId, mountPoint);
  s.protocolVersion = st.version;
  s.expiryInterval = st.expiryInterval;
  // A session that was connected when it was recorded was disconnected then; the record does
  // not say when, so its clocks start now.
  s.disconnectedAt = st.disconnectedAt || now;
  s.will = st.will;
  if (s.will && !validTopicName(s.will.topic)) {
    log.warning(`Persistence: will of ${clientId} on an invalid topic dropped.`);
    s.will = null;
  }
  s.willDelay = st.willDelay;
  s.username = st.username;
  broker.sessions.set(s.key, s);
  broker.auth.bind(s);
  let dropped = 0;
  for (const sub of subscriptions) {
    const shared = safeShared(sub.filter);
    const topicFilter = sub.topicFilter ?? (shared ? shared.filter : sub.filter);
    if (!validTopicFilter(topicFilter)) {
      broker.store?.deleteSubscription(st.clientId, sub.filter);
      dropped++;
      continue;
    }
    const entry: SubscriptionEntry = {
      session: s,
      filter: sub.filter,
      topicFilter,
      qos: sub.qos,
      nl: sub.nl,
      rap: sub.rap,
      rh: sub.rh,
      subId: sub.subId,
      group: shared ? shared.group : "",
    };
    s.addSubscription(sub.filter, entry);
    broker.router.add(entry);
  }
  for (const m of msgs) {
    if (!validTopicName(m.msg.topic)) {
      broker.store?.deleteClientMessage(st.clientId, m.seq, m.msg);
      dropped++;
      continue;
    }
    const o = outgoing(m.msg, m.qos, m.retain, m.subIds, m.seq);
    if (m.state === 0) {
      s.enqueue(o, 0, 0);
    } else {
      if (m.state === 2) o.state = "pubrel";
      s.setInflight(m.packetId, o);
    }
  }
  if (dropped) {
    log.warning(
      `Persistence: ${dropped} subscriptions or messages of ${clientId} on invalid topics dropped.`,
    );
  }
  if (incomingQos2.length) s.incomingQos2 = new Set(incomingQos2);
  return s;
}

/** One queued (`packetId` 0) or in-flight message as a record holds it. */
export function storedMessage(o: Outgoing, seq: number, packetId = 0): StoredClientMessage {
  const state = packetId === 0 ? 0 : o.state === "pubrel" ? 2 : 1;
  return { seq, msg: o.msg, qos: o.qos, retain: o.retain, subIds: o.subIds, state, packetId };
}

/**
 * The record of a live session: its state, subscriptions, queue, in-flight and QoS 2 ids.
 * `messages`: "all" of them, or "qos2": only the QoS 2 messages in flight (what a cluster keeps
 * of a session: see `Broker.keepSession`).
 */
export function recordSession(s: Session, messages: "all" | "qos2" = "all"): SessionRecord {
  const out: StoredClientMessage[] = [];
  let seq = 0;
  for (const [id, f] of s.inflight) {
    if (messages === "all" || f.qos === 2) out.push(storedMessage(f, ++seq, id));
  }
  if (messages === "all") { for (const o of s.queue) out.push(storedMessage(o, ++seq)); }
  return {
    session: {
      // The session key (mount point and client id), as the store keeps it.
      clientId: s.key,
      version: s.protocolVersion,
      expiryInterval: s.expiryInterval,
      disconnectedAt: s.connection ? 0 : s.disconnectedAt,
      will: s.will,
      willDelay: s.willDelay,
      username: s.username,
    },
    subscriptions: [...s.subscriptions.values()].map((e) => ({
      filter: e.filter,
      topicFilter: e.topicFilter,
      qos: e.qos,
      nl: e.nl,
      rap: e.rap,
      rh: e.rh,
      subId: e.subId,
    })),
    messages: out,
    incomingQos2: s.incomingQos2 ? [...s.incomingQos2] : [],
  };
}

/** The start of a long topic, for a log line. */
function brief(topic: string): string {
  return topic.length > 40 ? `${topic.slice(0, 40)}… (${topic.length} characters)` : topic;
}

function safeShared(filter: string): { group: string; filter: string } | null {
  try {
    return parseShared(filter);
  } catch {
    return null;
  }
}
