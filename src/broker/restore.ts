/**
 * Start-up: rebuild retained messages and persistent sessions (subscriptions, queued and
 * in-flight messages, QoS 2 state, pending wills) from the store. Session and message expiry go
 * on counting from the times stored, so a restart does not extend anyone's lifetime.
 */
import type { Broker } from "./broker.ts";
import { outgoing, Session, type SubscriptionEntry } from "./session.ts";
import { parseShared } from "./topic.ts";
import type { Snapshot } from "../store/types.ts";

/** Restore a snapshot into an empty broker; returns what was restored. */
export function restore(
  broker: Broker,
  snap: Snapshot,
): { sessions: number; retained: number; messages: number } {
  const now = Date.now();
  let retained = 0;
  for (const m of snap.retained) {
    if (m.expiresAt && m.expiresAt <= now) {
      broker.store?.deleteRetained(m.topic);
      continue;
    }
    broker.retained.set(m);
    retained++;
  }
  let messages = 0;
  for (const { session: st, subscriptions, messages: msgs, incomingQos2 } of snap.sessions) {
    const s = new Session(st.clientId);
    s.protocolVersion = st.version;
    s.expiryInterval = st.expiryInterval;
    // A session that was connected when the broker stopped was disconnected then; the store
    // does not know when, so its clocks start now.
    s.disconnectedAt = st.disconnectedAt || now;
    s.will = st.will;
    s.willDelay = st.willDelay;
    s.username = st.username;
    broker.sessions.set(s.clientId, s);
    broker.auth.bind(s);
    for (const sub of subscriptions) {
      const shared = safeShared(sub.filter);
      const entry: SubscriptionEntry = {
        session: s,
        filter: sub.filter,
        topicFilter: sub.topicFilter ?? (shared ? shared.filter : sub.filter),
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
      const o = outgoing(m.msg, m.qos, m.retain, m.subIds, m.seq);
      if (m.state === 0) {
        s.enqueue(o, 0, 0);
      } else {
        if (m.state === 2) o.state = "pubrel";
        s.setInflight(m.packetId, o);
      }
      messages++;
    }
    if (incomingQos2.length) s.incomingQos2 = new Set(incomingQos2);
    broker.goOffline(s);
  }
  return { sessions: snap.sessions.length, retained, messages };
}

function safeShared(filter: string): { group: string; filter: string } | null {
  try {
    return parseShared(filter);
  } catch {
    return null;
  }
}
