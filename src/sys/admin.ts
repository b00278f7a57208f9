/**
 * The read-only admin API (JSON over the HTTP listener, behind `admin_token`):
 *   GET /api/clients[?limit=N&offset=N&search=S&state=connected|offline]
 *                                                clients: connected ones and offline sessions
 *   GET /api/clients/<client id>                 one client in detail, with its subscriptions,
 *                                                in-flight messages and queue (the first 100)
 *   GET /api/clients/<client id>/subscriptions   one client's subscriptions (id URL-encoded)
 *   GET /api/retained?filter=a/%23[&limit=N]     retained topics matching a filter, with sizes
 *   GET /api/retained/message?topic=a/b          one retained message with its payload (base64)
 * A client on a listener with a mount_point is found with ?mount_point=<prefix> added: sessions
 * are kept per mount point, so one client id may be listed once for each.
 * Nothing here changes broker state; the writes are in admin_write.ts. Authentication (Bearer
 * token or console session) is checked by the HTTP layer (http.ts, console_auth.ts).
 */
import { Buffer } from "node:buffer";
import { createHash, timingSafeEqual } from "node:crypto";
import type { Broker } from "../broker/broker.ts";
import type { ListenerConfig } from "../config/schema.ts";
import type { Session } from "../broker/session.ts";
import { Connection } from "../broker/connection.ts";
import { NEVER_EXPIRES, sessionKey } from "../broker/session.ts";
import { validTopicFilter } from "../broker/topic.ts";

/** An answer: HTTP status and a JSON-serialisable body. */
export interface ApiResponse {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

const DEFAULT_CLIENTS = 1000;
const DEFAULT_RETAINED = 100;
/** Upper bound of `limit`, so one request cannot make the broker build a huge answer. */
export const MAX_LIMIT = 10000;

function sha256(s: string): Uint8Array {
  return createHash("sha256").update(s).digest();
}

/**
 * Whether an `Authorization` header carries `Bearer <token>`. Both sides are hashed first, so the
 * comparison takes the same time whatever the given token's length and content.
 */
export function tokenMatches(header: string | undefined, token: string): boolean {
  if (!token) return false;
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? "");
  const same = timingSafeEqual(sha256(m ? m[1] : ""), sha256(token));
  return m !== null && same;
}

/** An error answer: `{"error": message}`. */
export function apiError(
  status: number,
  message: string,
  headers?: Record<string, string>,
): ApiResponse {
  return { status, body: { error: message }, headers };
}

/** Parses `limit`/`offset`-style parameters: an integer in [min, max], or the default. */
function intParam(
  q: URLSearchParams,
  name: string,
  dflt: number,
  min: number,
  max: number,
): number | string {
  const v = q.get(name);
  if (v === null || v === "") return dflt;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    return `${name}: expected an integer ${min}-${max}, got ${JSON.stringify(v)}`;
  }
  return Number(v);
}

/** Answer one authenticated GET; `parts` is the decoded path (["api", …]). */
export function adminRead(broker: Broker, parts: string[], query: URLSearchParams): ApiResponse {
  const pathname = "/" + parts.join("/");
  if (parts.length === 2 && parts[1] === "clients") return listClients(broker, query);
  if (parts.length === 3 && parts[1] === "clients") {
    return clientDetail(broker, parts[2], query);
  }
  if (parts.length === 3 && parts[1] === "retained" && parts[2] === "message") {
    return retainedMessage(broker, query.get("topic") ?? "");
  }
  if (parts.length === 4 && parts[1] === "clients" && parts[3] === "subscriptions") {
    return subscriptions(broker, parts[2], query);
  }
  if (parts.length === 2 && parts[1] === "retained") return retained(broker, query);
  return apiError(404, `no such endpoint: ${pathname}`);
}

/** One client as the API shows it. */
function clientInfo(s: Session) {
  const c = clientOf(s);
  const sock = c?.socket;
  return {
    id: s.clientId,
    mount_point: s.mountPoint,
    connected: s.connection !== null && s.connection.state === "open",
    address: sock
      ? `${
        sock.remoteAddress.includes(":") ? `[${sock.remoteAddress}]` : sock.remoteAddress
      }:${sock.remotePort}`
      : null,
    transport: sock?.protocol ?? null,
    protocol_version: c ? c.version : s.protocolVersion,
    username: c?.username ?? null,
    keepalive: c ? c.keepalive : null,
    session_expiry: s.expiryInterval === NEVER_EXPIRES ? "never" : s.expiryInterval,
    connected_since: c ? new Date(c.openedAt).toISOString() : null,
    disconnected_at: c || !s.disconnectedAt ? null : new Date(s.disconnectedAt).toISOString(),
    subscriptions: s.subscriptions.size,
    queued: s.queue.length,
    queued_bytes: s.queuedBytes,
    inflight: s.inflight.size,
    dropped: s.dropped,
  };
}

/**
 * The session's client connection while it is open; null when it is offline or delivers to
 * something else (a bridge's link to its remote).
 */
function clientOf(s: Session): Connection | null {
  const c = s.connection;
  return c instanceof Connection && c.state === "open" ? c : null;
}

/** Whether a session matches a client-list search (id, user name or address, any case). */
function matches(s: Session, needle: string): boolean {
  if (s.clientId.toLowerCase().includes(needle)) return true;
  const c = s.connection instanceof Connection ? s.connection : null;
  const u = c?.username ?? s.username;
  if (u !== undefined && u.toLowerCase().includes(needle)) return true;
  const a = c?.socket.remoteAddress;
  return a !== undefined && a.includes(needle);
}

function listClients(broker: Broker, q: URLSearchParams): ApiResponse {
  const limit = intParam(q, "limit", DEFAULT_CLIENTS, 1, MAX_LIMIT);
  if (typeof limit === "string") return apiError(400, limit);
  const offset = intParam(q, "offset", 0, 0, Number.MAX_SAFE_INTEGER);
  if (typeof offset === "string") return apiError(400, offset);
  const needle = (q.get("search") ?? "").toLowerCase();
  const state = q.get("state") ?? "";
  if (!["", "connected", "offline"].includes(state)) {
    return apiError(400, 'state: expected "connected" or "offline"');
  }
  const clients = [];
  let i = 0;
  let total = broker.sessions.size;
  if (needle === "" && state === "") {
    for (const s of broker.sessions.values()) {
      if (i++ < offset) continue;
      if (clients.length >= limit) break;
      clients.push(clientInfo(s));
    }
  } else {
    // One pass over every session (a substring test each: a few ms for 100k sessions).
    total = 0;
    for (const s of broker.sessions.values()) {
      const on = s.connection !== null && s.connection.state === "open";
      if (state === "connected" ? !on : state === "offline" ? on : false) continue;
      if (needle && !matches(s, needle)) continue;
      if (total++ < offset || clients.length >= limit) continue;
      clients.push(clientInfo(s));
    }
  }
  return {
    status: 200,
    body: {
      total,
      offset,
      count: clients.length,
      truncated: offset + clients.length < total,
      clients,
    },
  };
}

/** Up to this many in-flight and queued messages are listed in a client's detail. */
const DETAIL_MESSAGES = 100;

function clientDetail(broker: Broker, id: string, query: URLSearchParams): ApiResponse {
  const s = findSession(broker, id, query);
  if (!s) return apiError(404, `no session for client id ${JSON.stringify(id)}`);
  const c = clientOf(s);
  const l = c?.listener;
  const proto = c?.socket.protocol ?? null;
  const inflight = [];
  for (const [packetId, f] of s.inflight) {
    if (inflight.length >= DETAIL_MESSAGES) break;
    inflight.push({
      packet_id: packetId,
      topic: f.msg.topic,
      qos: f.qos,
      bytes: f.msg.payload.length,
      state: f.state,
    });
  }
  const queue = s.queue.slice(0, DETAIL_MESSAGES).map((o) => ({
    topic: o.msg.topic,
    qos: o.qos,
    bytes: o.msg.payload.length,
  }));
  return {
    status: 200,
    body: {
      ...clientInfo(s),
      username: c?.username ?? s.username ?? null,
      listener: l ? listenerName(broker, l) : null,
      tls: proto === null ? null : proto === "mqtts" || proto === "wss",
      subscription_list: (subscriptions(broker, id, query).body as { subscriptions: unknown[] })
        .subscriptions,
      inflight_list: inflight,
      queue_list: queue,
    },
  };
}

/** A listener as bound ("127.0.0.1:1883 (mqtt)"), with the port the OS chose for port 0. */
function listenerName(broker: Broker, l: ListenerConfig): string {
  if (l.unix_socket) return `unix:${l.unix_socket} (${l.protocol})`;
  const bound = broker.listeners[broker.config.listeners.indexOf(l)];
  return `${l.bind_address}:${bound?.port ?? l.port} (${l.protocol})`;
}

function retainedMessage(broker: Broker, topic: string): ApiResponse {
  const now = Date.now();
  const m = topic && !/[+#]/.test(topic) ? broker.retained.match(topic, now)[0] : undefined;
  if (!m) return apiError(404, `no retained message on ${JSON.stringify(topic)}`);
  const p = m.properties;
  return {
    status: 200,
    body: {
      topic: m.topic,
      qos: m.qos,
      bytes: m.payload.length,
      expires_in: m.expiresAt ? Math.max(0, Math.ceil((m.expiresAt - now) / 1000)) : null,
      payload: Buffer.from(m.payload.subarray(0, MAX_PREVIEW)).toString("base64"),
      truncated: m.payload.length > MAX_PREVIEW,
      properties: p
        ? {
          payloadFormatIndicator: p.payloadFormatIndicator,
          contentType: p.contentType,
          responseTopic: p.responseTopic,
          userProperties: p.userProperties,
        }
        : null,
    },
  };
}

/** Payload bytes a retained-message preview carries at most. */
export const MAX_PREVIEW = 64 * 1024;

function subscriptions(broker: Broker, id: string, query: URLSearchParams): ApiResponse {
  const s = findSession(broker, id, query);
  if (!s) return apiError(404, `no session for client id ${JSON.stringify(id)}`);
  const subs = [...s.subscriptions.values()].map((e) => ({
    filter: e.filter,
    qos: e.qos,
    no_local: e.nl,
    retain_as_published: e.rap,
    retain_handling: e.rh,
    subscription_identifier: e.subId || null,
    share_group: e.group || null,
  }));
  return { status: 200, body: { id, count: subs.length, subscriptions: subs } };
}

function retained(broker: Broker, q: URLSearchParams): ApiResponse {
  const filter = q.get("filter") ?? "#";
  if (!validTopicFilter(filter)) {
    return apiError(400, `invalid topic filter ${JSON.stringify(filter)}`);
  }
  const limit = intParam(q, "limit", DEFAULT_RETAINED, 1, MAX_LIMIT);
  if (typeof limit === "string") return apiError(400, limit);
  const now = Date.now();
  const all = broker.retained.match(filter, now);
  all.sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0));
  const messages = all.slice(0, limit).map((m) => ({
    topic: m.topic,
    bytes: m.payload.length,
    qos: m.qos,
    expires_in: m.expiresAt ? Math.max(0, Math.ceil((m.expiresAt - now) / 1000)) : null,
  }));
  return {
    status: 200,
    body: {
      filter,
      total: all.length,
      count: messages.length,
      truncated: all.length > limit,
      messages,
    },
  };
}

/** The session of client `id` under the query's `mount_point` (none by default). */
export function findSession(
  broker: Broker,
  id: string,
  query: URLSearchParams,
): Session | undefined {
  return broker.sessions.get(sessionKey(query.get("mount_point") ?? "", id));
}
