/** PINGREQ → PINGRESP [MQTT-3.12.4-1]. */
import type { Connection } from "../connection.ts";

const PINGRESP = new Uint8Array([0xd0, 0x00]);

export function handlePingreq(conn: Connection): void {
  if (conn.broker.log.debugging) conn.broker.log.debug(`Sending PINGRESP to ${conn.clientId}`);
  conn.sendBytes(PINGRESP);
}
