/** PINGREQ → PINGRESP [MQTT-3.12.4-1]. */
import type { Connection } from "../connection.ts";

const PINGRESP = new Uint8Array([0xd0, 0x00]);

export function handlePingreq(conn: Connection): void {
  conn.sendBytes(PINGRESP);
}
