/** UNSUBSCRIBE → UNSUBACK [MQTT-3.10.4-4]; v5 reason 0x11 for a filter that was not subscribed. */
import type { UnsubscribePacket } from "../../codec/types.ts";
import { ReasonCode } from "../../codec/types.ts";
import type { Connection } from "../connection.ts";

export function handleUnsubscribe(conn: Connection, p: UnsubscribePacket): void {
  const broker = conn.broker;
  const s = conn.session!;
  const codes: number[] = [];
  for (const filter of p.unsubscriptions) {
    if (broker.unsubscribe(s, filter)) {
      codes.push(ReasonCode.Success);
      if (broker.log.on("unsubscribe")) broker.log.log("unsubscribe", `${conn.clientId} ${filter}`);
    } else {
      codes.push(ReasonCode.NoSubscriptionExisted);
    }
  }
  conn.send({
    cmd: "unsuback",
    messageId: p.messageId,
    granted: conn.version === 5 ? codes : undefined,
  });
}
