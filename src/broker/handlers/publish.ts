/**
 * PUBLISH from a client: topic aliases, limits, QoS 0/1/2 receipt with the QoS 2 packet-id state
 * machine (method A: deliver on PUBLISH, remember the id until PUBREL) [MQTT-4.3.3].
 */
import type { PublishPacket } from "../../codec/types.ts";
import { ReasonCode } from "../../codec/types.ts";
import type { Connection } from "../connection.ts";
import type { Clock } from "../clock.ts";
import { PUBACK, PUBREC } from "../../codec/encoder.ts";
import { fitsWithPrefix, sysTopicDenied, validTopicName } from "../topic.ts";
import { forwardedProperties, type Message } from "../message.ts";

export function handlePublish(conn: Connection, p: PublishPacket): void {
  const broker = conn.broker;
  const cfg = broker.config;
  const s = conn.session!;
  broker.stats.publishReceived++;
  broker.stats.publishBytesReceived += p.payload.length;
  let topic = p.topic;

  // Topic aliases [MQTT-3.3.2-7..12].
  const alias = p.properties?.topicAlias;
  if (alias !== undefined) {
    if (alias === 0 || alias > cfg.max_topic_alias) {
      conn.protocolError(
        ReasonCode.TopicAliasInvalid,
        `topic alias ${alias} out of range [MQTT-3.3.2-8 v5][MQTT-3.3.2-9 v5]`,
      );
      return;
    }
    if (topic === "") {
      const t = conn.aliasIn(alias);
      if (t === undefined) {
        conn.protocolError(ReasonCode.ProtocolError, `unknown topic alias ${alias}`);
        return;
      }
      topic = t;
    } else {
      conn.setAliasIn(alias, topic);
    }
  }
  // The decoder has refused an empty topic without a topic alias, and wildcards in any topic.

  // The listener's mount_point goes in front; a topic it would push past 65,535 bytes
  // [MQTT-4.7.3-3] is refused below with 0x90 Topic Name invalid.
  let fits = true;
  if (conn.mountPoint) {
    fits = fitsWithPrefix(conn.mountPoint, topic);
    if (fits) topic = conn.mountPoint + topic;
  }

  const rt = p.properties?.responseTopic;
  if (rt !== undefined && !validTopicName(rt)) {
    // [MQTT-3.3.2-14 v5] the Response Topic is a Topic Name: no wildcards.
    conn.protocolError(ReasonCode.ProtocolError, "wildcard in Response Topic [MQTT-3.3.2-14 v5]");
    return;
  }

  if (p.qos > cfg.max_qos) {
    // [MQTT-3.2.2-11 v5] a QoS above Maximum QoS is a protocol violation.
    conn.protocolError(ReasonCode.QoSNotSupported, `QoS ${p.qos} over max_qos ${cfg.max_qos}`);
    return;
  }
  if (p.retain && !cfg.retain_available) {
    conn.protocolError(ReasonCode.RetainNotSupported, "retain not available [MQTT-3.2.2-14 v5]");
    return;
  }

  const id = p.messageId ?? 0;
  if (p.qos === 2 && s.incomingQos2?.has(id)) {
    // A resend of a QoS 2 message already received: acknowledge, never deliver twice
    // [MQTT-4.3.3-10 v5].
    broker.ackAfter(conn, PUBREC, id, 0, null);
    return;
  }
  if (
    p.qos === 2 && conn.version === 5 &&
    (s.incomingQos2?.size ?? 0) >= receiveMaximum(cfg.max_inflight_messages)
  ) {
    conn.protocolError(
      ReasonCode.ReceiveMaximumExceeded,
      "receive maximum exceeded [MQTT-3.3.4-7 v5]",
    );
    return;
  }

  let rc: number = ReasonCode.Success;
  if (!fits) {
    broker.stats.publishDropped++;
    if (p.qos === 0) {
      // No acknowledgement to carry the refusal: v5 is told by DISCONNECT, v3 loses the message.
      if (conn.version === 5) {
        conn.close(
          ReasonCode.TopicNameInvalid,
          "topic too long with the listener's mount_point [MQTT-4.7.3-3]",
        );
      }
      return;
    }
    rc = ReasonCode.TopicNameInvalid;
  } else if (cfg.message_size_limit > 0 && p.payload.length > cfg.message_size_limit) {
    rc = ReasonCode.PacketTooLarge;
    broker.stats.publishDropped++;
  } else if (broker.memoryOver) {
    // memory_limit: nothing more is taken in until memory use is below it again.
    rc = ReasonCode.QuotaExceeded;
    broker.stats.publishDropped++;
  } else if (sysTopicDenied(topic)) {
    // Clients cannot publish into the broker's own tree, except bridge connection states
    // ($SYS/broker/connection/<id>/state), which bridges publish on the brokers they connect to.
    rc = ReasonCode.NotAuthorized;
  } else {
    // The auth chain (acl_file, a token's acl claim, …) decides whether this client may write.
    const may = broker.auth.canPublish(s, topic, p.qos, p.retain);
    if (may instanceof Promise) {
      // A remote authorizer: this client's later packets wait for its answer, in order.
      conn.hold(may.then((ok) => finish(conn, p, topic, ok ? rc : denied(conn, topic))));
      return;
    }
    if (!may) rc = denied(conn, topic);
  }
  finish(conn, p, topic, rc);
}

/**
 * Not authorized: not delivered. QoS 0 is dropped silently, QoS 1/2 are acknowledged with 0x87
 * Not authorized (v5) or plainly (v3, which has no reason codes).
 */
function denied(conn: Connection, topic: string): number {
  if (conn.broker.log.on("debug")) {
    conn.broker.log.debug(`Denied PUBLISH from ${conn.clientId} to ${topic}.`);
  }
  return ReasonCode.NotAuthorized;
}

/** Publishes the message when `rc` is a success, then acknowledges it (QoS 1/2). */
function finish(conn: Connection, p: PublishPacket, topic: string, rc: number): void {
  if (conn.closed) return;
  const broker = conn.broker;
  const s = conn.session!;
  if (rc < 0x80) {
    if (broker.controls.size !== 0 && broker.controls.has(topic)) {
      // A control topic (dynamic security's): a command for its handler, not for subscribers.
      broker.control(broker.controls.get(topic)!, p.payload, conn);
    } else if (broker.publish(message(p, topic, s.key, broker.clock)) === 0) {
      rc = ReasonCode.NoMatchingSubscribers;
    }
  }

  if (p.qos === 0) return;
  const id = p.messageId ?? 0;
  const ack = p.qos === 1 ? PUBACK : PUBREC;
  if (p.qos === 2 && rc < 0x80) {
    (s.incomingQos2 ??= new Set()).add(id);
    if (s.persistent) broker.store?.addIncomingQos2(s.key, id);
  }
  // What this message changed must be on disk before it is acknowledged [MQTT-4.3.2-2 v3.1.1][MQTT-4.3.3-2 v3.1.1]
  // (and, in a cluster, a QoS 2 id with the session where another node finds it).
  if (p.qos === 2) broker.ackAfterKept(conn, s, ack, id, rc, notStored);
  else broker.ackAfter(conn, ack, id, rc, notStored);
}

/** The message a PUBLISH carries, for the broker to route. */
function message(p: PublishPacket, topic: string, origin: string, clock: Clock): Message {
  const expiry = p.properties?.messageExpiryInterval;
  return {
    topic,
    payload: p.payload,
    qos: p.qos,
    retain: p.retain,
    properties: forwardedProperties(p.properties),
    expiresAt: expiry ? clock.now() + expiry * 1000 : 0,
    origin,
  };
}

/** The store could not commit: v5 gets 0x80, v3 is disconnected unacknowledged (it resends). */
function notStored(conn: Connection, first: number, id: number): void {
  if (conn.version === 5) conn.sendAck(first, id, ReasonCode.UnspecifiedError);
  else conn.close(undefined, "persistence failed, message not acknowledged");
}

/** Receive Maximum the broker advertises (and enforces) for incoming QoS 2. */
export function receiveMaximum(maxInflight: number): number {
  return maxInflight > 0 && maxInflight < 65535 ? maxInflight : 65535;
}
