/**
 * SUBSCRIBE → SUBACK, then the retained messages each new subscription asks for.
 * Shared subscriptions `$share/<group>/<filter>`, subscription identifiers, No Local, Retain As
 * Published and Retain Handling 0/1/2.
 */
import type { SubscribePacket } from "../../codec/types.ts";
import { ReasonCode } from "../../codec/types.ts";
import type { Connection } from "../connection.ts";
import type { SubscriptionEntry } from "../session.ts";
import { outgoing } from "../outgoing.ts";
import { fitsWithPrefix, parseShared, utf8Length, validTopicFilter } from "../topic.ts";
import type { QoS } from "../../codec/types.ts";
import type { Message } from "../message.ts";

export function handleSubscribe(conn: Connection, p: SubscribePacket): void {
  const subId = p.properties?.subscriptionIdentifier;
  if (subId !== undefined && (typeof subId !== "number" || subId === 0)) {
    conn.protocolError(ReasonCode.ProtocolError, "subscription identifier 0 (MQTT 5.0 §3.8.2.1.2)");
    return;
  }
  // The auth chain's answer for each filter; a remote authorizer's answers are waited for, and
  // this client's later packets with them.
  const auth = conn.broker.auth;
  const s = conn.session!;
  let waiting = false;
  const may = p.subscriptions.map((sub) => {
    const f = checkedFilter(conn, sub.topic);
    if (f === null) return true;
    const m = auth.canSubscribe(s, f, sub.qos);
    if (m instanceof Promise) waiting = true;
    return m;
  });
  if (waiting) {
    conn.hold(Promise.all(may).then((answers) => subscribe(conn, p, answers)));
  } else subscribe(conn, p, may as boolean[]);
}

/** The filter the auth chain is asked about (mount point added, share prefix removed), or null. */
function checkedFilter(conn: Connection, filter: string): string | null {
  let f = filter;
  try {
    const shared = parseShared(filter);
    if (shared) f = shared.filter;
  } catch {
    return null;
  }
  return validTopicFilter(f) ? conn.mountPoint + f : null;
}

/** SUBSCRIBE with the auth chain's answers (`allowed`, one per filter) known. */
function subscribe(conn: Connection, p: SubscribePacket, allowed: boolean[]): void {
  if (conn.closed) return;
  const broker = conn.broker;
  const cfg = broker.config;
  const s = conn.session!;
  const v5 = conn.version === 5;
  const subId = p.properties?.subscriptionIdentifier;
  const sid = typeof subId === "number" ? subId : 0;
  let index = -1;
  const granted: number[] = [];
  // By filter: a filter listed again in the same SUBSCRIBE replaces the earlier one
  // [MQTT-3.8.4-3], and its retained messages are sent once, not once per listing.
  const retainedFor = new Map<string, SubscriptionEntry>();
  /** Filters this packet added that the session did not have before it (for rh 1). */
  const added = new Set<string>();
  for (const sub of p.subscriptions) {
    index++;
    const filter = sub.topic;
    let topicFilter = filter;
    let group = "";
    let shared: ReturnType<typeof parseShared> = null;
    try {
      shared = parseShared(filter);
    } catch {
      granted.push(v5 ? ReasonCode.TopicFilterInvalid : 0x80);
      continue;
    }
    if (shared) {
      // No Local on a shared subscription was refused by the decoder [MQTT-3.8.3-4 v5].
      group = shared.group;
      topicFilter = shared.filter;
    }
    if (!validTopicFilter(topicFilter)) {
      granted.push(v5 ? ReasonCode.TopicFilterInvalid : 0x80);
      continue;
    }
    if (conn.mountPoint) {
      // A filter the listener's mount_point would push past 65,535 bytes [MQTT-4.7.3-3].
      if (!fitsWithPrefix(conn.mountPoint, topicFilter)) {
        granted.push(v5 ? ReasonCode.TopicFilterInvalid : 0x80);
        continue;
      }
      topicFilter = conn.mountPoint + topicFilter;
    }
    if (!allowed[index]) {
      // The auth chain refused it (acl_file: nothing it matches may be read). v5 0x87 Not
      // authorized, v3 0x80.
      granted.push(v5 ? ReasonCode.NotAuthorized : 0x80);
      if (broker.log.on("debug")) {
        broker.log.debug(`Denied SUBSCRIBE from ${conn.clientId} to ${filter}.`);
      }
      continue;
    }
    const existing = s.subscriptions.get(filter);
    if (!existing) added.add(filter);
    if (
      !existing && cfg.max_subscriptions_per_client > 0 &&
      s.subscriptions.size >= cfg.max_subscriptions_per_client
    ) {
      granted.push(v5 ? ReasonCode.QuotaExceeded : 0x80);
      continue;
    }
    // The filters' total size is bounded too: 10000 filters of 64 KB would be over 1 GB.
    const maxBytes = cfg.max_subscription_bytes_per_client;
    if (
      !existing && maxBytes > 0 && s.subscriptionBytes + utf8Length(filter) > maxBytes
    ) {
      granted.push(v5 ? ReasonCode.QuotaExceeded : 0x80);
      continue;
    }
    const qos = Math.min(sub.qos, cfg.max_qos) as QoS;
    const entry: SubscriptionEntry = {
      session: s,
      filter,
      topicFilter,
      qos,
      // A bridge (try_private) never gets its own messages back, as with No Local.
      nl: !!sub.nl || conn.terms.bridgeMode,
      // Bridges (try_private) get the retain flag as published, as Mosquitto does.
      rap: !!sub.rap || conn.terms.bridgeMode,
      rh: sub.rh ?? 0,
      subId: sid,
      group,
    };
    // A subscription with the same filter replaces the old one [MQTT-3.8.4-3].
    broker.subscribe(s, entry);
    granted.push(qos);
    if (broker.log.on("subscribe")) {
      broker.log.log("subscribe", `${conn.clientId} ${qos} ${filter}`);
    }
    // Retained messages: rh 0 always, rh 1 only for a new subscription, rh 2 never
    // [MQTT-3.3.1-9 v5][MQTT-3.3.1-10 v5][MQTT-3.3.1-11 v5]; never for shared subscriptions.
    retainedFor.delete(filter);
    if (!group && (entry.rh === 0 || (entry.rh === 1 && added.has(filter)))) {
      retainedFor.set(filter, entry);
    }
  }
  // In a cluster, the SUBACK waits until every node knows the new interest (so nothing
  // published anywhere after it is missed) and this node has every retained message
  // acknowledged anywhere; later packets of this client wait with it.
  // A persistent session's subscriptions are kept where another node finds them, should this
  // one die, before the SUBACK.
  const fabric = broker.fabric.barrier();
  const retained = retainedFor.size ? broker.retained.sync?.() ?? null : null;
  const kept = s.persistent ? broker.keepSession(s) : null;
  if (fabric || retained || kept) {
    conn.hold(
      Promise.all([fabric, retained, kept]).then(() => suback(conn, p, granted, retainedFor)),
    );
  } else {
    suback(conn, p, granted, retainedFor);
  }
}

/** Sends the SUBACK, then the retained messages of the subscriptions that asked for them. */
function suback(
  conn: Connection,
  p: SubscribePacket,
  granted: number[],
  retainedFor: Map<string, SubscriptionEntry>,
): void {
  const broker = conn.broker;
  const s = conn.session!;
  const now = broker.clock.now();
  conn.send({ cmd: "suback", messageId: p.messageId, granted });
  for (const e of retainedFor.values()) {
    for (const m of broker.retained.match(e.topicFilter, now)) {
      // The auth chain: a retained message goes only to a client that may read its topic.
      const may = broker.auth.canRead(s, m.topic);
      if (may === true) sendRetained(conn, e, m);
      else if (may !== false) {
        // .catch: an error in the sending closes this client, never goes unhandled.
        may.then((ok) => {
          if (ok && !conn.closed) sendRetained(conn, e, m);
        }).catch((err) => conn.fail(err, "a retained message after its read check"));
      }
    }
  }
}

/** Sends one retained message for a new subscription. */
function sendRetained(conn: Connection, e: SubscriptionEntry, m: Message): void {
  // Retained messages are sent with the retain flag set [MQTT-3.3.1-8 v3.1.1], within the limits
  // of any delivery: inflight window, slow-reader bound, session queue.
  const o = outgoing(m, Math.min(m.qos, e.qos) as QoS, true, e.subId ? [e.subId] : undefined);
  conn.broker.replayRetained(e.session, o);
}
