/**
 * AUTH: v5 re-authentication (MQTT 5.0 §4.12.1). A client that connected with an
 * Authentication Method a link of its chain takes (OAUTH2-JWT) may send AUTH 0x19 with fresh
 * credentials (a new token) at any time: accepted, the broker answers AUTH 0x00 and the
 * connection goes on with the new expiry and permissions; refused, it is disconnected
 * [MQTT-4.12.1-2 v5]. No method needs more than one step, so an AUTH 0x18 Continue is an error.
 */
import type { AuthPacket } from "../../codec/types.ts";
import { ReasonCode } from "../../codec/types.ts";
import type { LoginResult } from "../../auth/auth.ts";
import type { Connection } from "../connection.ts";

export function handleAuth(conn: Connection, p: AuthPacket): void {
  const method = conn.login?.method;
  if (method === undefined) {
    // AUTH after a CONNECT without an Authentication Method (MQTT 5.0 §3.15).
    conn.protocolError(
      ReasonCode.ProtocolError,
      "AUTH without an authentication method [MQTT-4.12.0-7 v5]",
    );
    return;
  }
  const props = p.properties ?? {};
  if (props.authenticationMethod !== method) {
    // The same method as in CONNECT [MQTT-4.12.1-1 v5].
    conn.protocolError(
      ReasonCode.ProtocolError,
      "re-authentication with another method [MQTT-4.12.1-1 v5]",
    );
    return;
  }
  if (p.reasonCode !== ReasonCode.ReAuthenticate) {
    conn.protocolError(ReasonCode.ProtocolError, "AUTH continue without a challenge");
    return;
  }
  const broker = conn.broker;
  const r = broker.auth.checkLogin(
    conn.listener,
    conn.socket.remoteAddress,
    conn.username,
    undefined,
    {
      clientId: conn.clientId,
      protocolVersion: 5,
      authMethod: method,
      authData: props.authenticationData,
    },
  );
  if (r instanceof Promise) conn.hold(r.then((res) => settle(conn, method, res)));
  else settle(conn, method, r);
}

/** Act on a re-authentication's answer. */
function settle(conn: Connection, method: string, r: LoginResult): void {
  if (conn.closed) return;
  const s = conn.session;
  if (!r.ok || s === null) {
    // [MQTT-4.12.1-2 v5] a failed re-authentication ends the connection.
    conn.close(
      r.ok ? ReasonCode.NotAuthorized : (r.code ?? ReasonCode.NotAuthorized),
      `re-authentication refused: ${r.ok ? "no session" : r.reason}`,
    );
    return;
  }
  // New permissions and a new expiry; answers remembered under the old ones are dropped.
  conn.broker.auth.bind(s, conn.listener, r.answer);
  conn.login = { expiresAt: r.answer?.expiresAt ?? 0, method };
  conn.send({
    cmd: "auth",
    reasonCode: ReasonCode.Success,
    properties: { authenticationMethod: method },
  });
}
