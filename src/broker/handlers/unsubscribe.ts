/** UNSUBSCRIBE → UNSUBACK [MQTT-3.10.4-4]; v5 reason 0x11 for a filter that was not subscribed. */
import type { UnsubscribePacket } from "../../codec/types.ts";
import { ReasonCode } from "../../codec/types.ts";
import type { Connection } from "../connection.ts";
import { parseShared } from "../topic.ts";

export function handleUnsubscribe(conn: Connection, p: UnsubscribePacket): void {
  const broker = conn.broker;
  const s = conn.session!;
  const codes: number[] = [];
  for (const filter of p.unsubscriptions) {
    if (broker.auth.dynsec !== null && !broker.auth.canUnsubscribe(s, aclFilter(conn, filter))) {
      // Dynamic security's unsubscribe ACLs: refused, the subscription stays (v5 0x87).
      codes.push(ReasonCode.NotAuthorized);
      continue;
    }
    if (broker.unsubscribe(s, filter)) {
      codes.push(ReasonCode.Success);
      if (broker.log.on("unsubscribe")) broker.log.log("unsubscribe", `${conn.clientId} ${filter}`);
    } else {
      codes.push(ReasonCode.NoSubscriptionExisted);
    }
  }
  // In a cluster a persistent session is kept without these subscriptions from now on.
  if (s.persistent) void broker.keepSession(s);
  conn.send({
    cmd: "unsuback",
    messageId: p.messageId,
    granted: conn.version === 5 ? codes : undefined,
  });
}

/** The filter the ACLs see: without a `$share/<group>/` prefix, with the mount point. */
function aclFilter(conn: Connection, filter: string): string {
  let f = filter;
  try {
    f = parseShared(filter)?.filter ?? filter;
  } catch {
    // A malformed shared filter is checked as written.
  }
  return conn.mountPoint + f;
}
