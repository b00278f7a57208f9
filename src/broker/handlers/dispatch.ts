/** One packet from a client to the handler of its type, one file per packet type beside this. */
import type { Packet } from "../../codec/types.ts";
import { ReasonCode } from "../../codec/types.ts";
import type { Connection } from "../connection.ts";
import { handleConnect } from "./connect.ts";
import { handlePublish } from "./publish.ts";
import { handleSubscribe } from "./subscribe.ts";
import { handleUnsubscribe } from "./unsubscribe.ts";
import { handlePuback, handlePubcomp, handlePubrec, handlePubrel } from "./acks.ts";
import { handleDisconnect } from "./disconnect.ts";
import { handleAuth } from "./auth.ts";
import { handlePingreq } from "./ping.ts";

/**
 * Handles a packet `conn` has taken (`Connection.dispatch` has already held, logged or left out
 * what it must). A second CONNECT and a packet only a server sends are protocol errors.
 */
export function handlePacket(conn: Connection, p: Packet): void {
  switch (p.cmd) {
    case "connect":
      if (conn.state !== "new") {
        conn.protocolError(ReasonCode.ProtocolError, "second CONNECT [MQTT-3.1.0-2]");
        return;
      }
      handleConnect(conn, p);
      return;
    case "publish":
      handlePublish(conn, p);
      return;
    case "puback":
      handlePuback(conn, p);
      return;
    case "pubrec":
      handlePubrec(conn, p);
      return;
    case "pubrel":
      handlePubrel(conn, p);
      return;
    case "pubcomp":
      handlePubcomp(conn, p);
      return;
    case "subscribe":
      handleSubscribe(conn, p);
      return;
    case "unsubscribe":
      handleUnsubscribe(conn, p);
      return;
    case "pingreq":
      handlePingreq(conn);
      return;
    case "disconnect":
      handleDisconnect(conn, p);
      return;
    case "auth":
      handleAuth(conn, p);
      return;
    default:
      // CONNACK, SUBACK, UNSUBACK, PINGRESP are server-to-client only.
      conn.protocolError(ReasonCode.ProtocolError, `unexpected ${p.cmd} from a client`);
  }
}
