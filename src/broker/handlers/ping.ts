/** PINGREQ → PINGRESP [MQTT-3.12.4-1]. */
import type { Connection } from "../connection.ts";
import { PINGRESP } from "../../codec/encoder.ts";

/** Answers a PINGREQ with the shared PINGRESP bytes. */
export function handlePingreq(conn: Connection): void {
  if (conn.broker.log.debugging) conn.broker.log.debug(`Sending PINGRESP to ${conn.clientId}`);
  conn.sendBytes(PINGRESP);
}
