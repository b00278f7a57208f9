/**
 * DISCONNECT from the client: a normal one discards the will [MQTT-3.14.4-3], v5 reason 0x04
 * keeps it; v5 may change the session expiry, but not from 0 (MQTT 5.0 §3.14.2.2.2), and not
 * beyond `persistent_client_expiration`, which caps it here as it does at CONNECT.
 */
import type { DisconnectPacket } from "../../codec/types.ts";
import { ReasonCode } from "../../codec/types.ts";
import type { Connection } from "../connection.ts";

export function handleDisconnect(conn: Connection, p: DisconnectPacket): void {
  const s = conn.session!;
  const expiry = p.properties?.sessionExpiryInterval;
  if (expiry !== undefined) {
    // The session's expiry is still the CONNECT's: only DISCONNECT changes it while connected.
    if (s.expiryInterval === 0 && expiry !== 0) {
      conn.protocolError(
        ReasonCode.ProtocolError,
        "session expiry set on DISCONNECT after 0 on CONNECT (MQTT 5.0 §3.14.2.2.2)",
      );
      return;
    }
    const cap = conn.broker.config.persistent_client_expiration;
    s.expiryInterval = cap > 0 && expiry > cap ? cap : expiry;
  }
  // [MQTT-3.14.4-3] the will is discarded, unless v5 reason 0x04 asks for it.
  if ((p.reasonCode ?? 0) !== ReasonCode.DisconnectWithWill) s.will = null;
  conn.close();
}
