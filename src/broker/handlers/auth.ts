/**
 * AUTH: Midge supports no enhanced authentication method, so a CONNECT carrying one is refused
 * (see connect.ts) and any AUTH packet is a protocol error (MQTT 5.0 §4.12).
 */
import type { AuthPacket } from "../../codec/types.ts";
import { ReasonCode } from "../../codec/types.ts";
import type { Connection } from "../connection.ts";

export function handleAuth(conn: Connection, _p: AuthPacket): void {
  conn.protocolError(
    ReasonCode.ProtocolError,
    "AUTH without an authentication method [MQTT-4.12.0-1]",
  );
}
