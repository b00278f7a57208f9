/**
 * SUBSCRIBE → SUBACK, then the retained messages each new subscription asks for.
 * Shared subscriptions `$share/<group>/<filter>`, subscription identifiers, No Local, Retain As
 * Published and Retain Handling 0/1/2.
 */
import type { SubscribePacket } from "../../codec/types.ts";
import { ReasonCode } from "../../codec/types.ts";
import type { Connection } from "../connection.ts";
import { outgoing, type SubscriptionEntry } from "../session.ts";
import { fitsWithPrefix, parseShared, utf8Length, validTopicFilter } from "../topic.ts";
import type { QoS } from "../../codec/types.ts";

export function handleSubscribe(conn: Connection, p: SubscribePacket): void {
  const broker = conn.broker;
  const cfg = broker.config;
  const s = conn.session!;
  const v5 = conn.version === 5;
  const subId = p.properties?.subscriptionIdentifier;
  const sid = typeof subId === "number" ? subId : 0;
  if (subId !== undefined && (typeof subId !== "number" || subId === 0)) {
    conn.protocolError(ReasonCode.ProtocolError, "subscription identifier 0 (MQTT 5.0 §3.8.2.1.2)");
    return;
  }
  const granted: number[] = [];
  // By filter: a filter listed again in the same SUBSCRIBE replaces the earlier one
  // [MQTT-3.8.4-3], and its retained messages are sent once, not once per listing.
  const retainedFor = new Map<string, SubscriptionEntry>();
  /** Filters this packet added that the session did not have before it (for rh 1). */
  const added = new Set<string>();
  for (const sub of p.subscriptions) {
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
      if (sub.nl) {
        // [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error.
        conn.protocolError(
          ReasonCode.ProtocolError,
          "no-local on a shared subscription [MQTT-3.8.3-4]",
        );
        return;
      }
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
    if (broker.auth.aclActive && !broker.auth.canSubscribe(s, topicFilter)) {
      // acl_file: nothing this filter matches may be read. v5 0x87 Not authorized, v3 0x80.
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
    // [MQTT-3.3.1-9][MQTT-3.3.1-10][MQTT-3.3.1-11]; never for shared subscriptions.
    retainedFor.delete(filter);
    if (!group && (entry.rh === 0 || (entry.rh === 1 && added.has(filter)))) {
      retainedFor.set(filter, entry);
    }
  }
  // In a cluster, the SUBACK waits until every node knows the new interest (so nothing
  // published anywhere after it is missed) and this node has every retained message
  // acknowledged anywhere; later packets of this client wait with it.
  const fabric = broker.fabric.barrier();
  const retained = retainedFor.size ? broker.retained.sync?.() ?? null : null;
  if (fabric || retained) {
    conn.hold(Promise.all([fabric, retained]).then(() => suback(conn, p, granted, retainedFor)));
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
  const now = Date.now();
  conn.send({ cmd: "suback", messageId: p.messageId, granted });
  for (const e of retainedFor.values()) {
    for (const m of broker.retained.match(e.topicFilter, now)) {
      // acl_file: a retained message goes only to a client that may read its topic.
      if (!broker.auth.canRead(s, m.topic)) continue;
      // Retained messages are sent with the retain flag set [MQTT-3.3.1-8], within the limits
      // of any delivery: inflight window, slow-reader bound, session queue.
      const o = outgoing(m, Math.min(m.qos, e.qos) as QoS, true, e.subId ? [e.subId] : undefined);
      broker.replayRetained(s, o);
    }
  }
}
