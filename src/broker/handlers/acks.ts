/**
 * PUBACK, PUBREC, PUBREL and PUBCOMP: the packet-id state machines of QoS 1 and 2 in both
 * directions [MQTT-4.3.2][MQTT-4.3.3].
 */
import type { AckPacket } from "../../codec/types.ts";
import { ReasonCode } from "../../codec/types.ts";
import type { Connection } from "../connection.ts";
import { PUBCOMP, PUBREL } from "../../codec/encoder.ts";

/** PUBACK: a QoS 1 message we sent is done; its slot opens for the queue. */
export function handlePuback(conn: Connection, p: AckPacket): void {
  conn.broker.completeOutgoing(conn.session!, p.messageId, 1);
}

/** PUBREC: answer PUBREL [MQTT-4.3.3-4 v5]; an error reason code ends the exchange (v5). */
export function handlePubrec(conn: Connection, p: AckPacket): void {
  const s = conn.session!;
  const f = s.inflight.get(p.messageId);
  if (f && f.qos === 2) {
    if ((p.reasonCode ?? 0) >= 0x80) {
      conn.broker.completeOutgoing(s, p.messageId, 2);
      return;
    }
    s.settle(p.messageId, f);
    f.state = "pubrel";
    if (f.seq !== undefined) {
      conn.broker.store?.updateClientMessage(s.key, f.seq, 2, p.messageId);
    }
    // PUBREL only once the new state is on disk: after a crash the broker must not send the
    // PUBLISH again for a message the client has already been told to release.
    const id = p.messageId;
    conn.broker.ackAfterKept(conn, s, PUBREL, id, 0, null);
    return;
  }
  // v5: PUBREL with 0x92 for an id we do not know (MQTT 5.0 §3.6.2.1); v3 answers PUBREL anyway.
  conn.sendAck(PUBREL, p.messageId, f ? 0 : ReasonCode.PacketIdentifierNotFound);
}

/** PUBREL from the client: release the QoS 2 id and answer PUBCOMP [MQTT-4.3.3-11 v5]. */
export function handlePubrel(conn: Connection, p: AckPacket): void {
  const s = conn.session!;
  const known = s.incomingQos2?.delete(p.messageId) ?? false;
  if (known && s.persistent) conn.broker.store?.deleteIncomingQos2(s.key, p.messageId);
  // PUBCOMP once the id is released on disk too: the client may reuse it right away.
  const rc = known ? 0 : ReasonCode.PacketIdentifierNotFound;
  conn.broker.ackAfterKept(conn, s, PUBCOMP, p.messageId, rc, notReleased);
}

function notReleased(conn: Connection): void {
  conn.close(undefined, "persistence failed, PUBREL not completed");
}

/** PUBCOMP: a QoS 2 message we sent is done. */
export function handlePubcomp(conn: Connection, p: AckPacket): void {
  conn.broker.completeOutgoing(conn.session!, p.messageId, 2);
}
