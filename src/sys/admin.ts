/**
 * The read-only admin API (JSON over the HTTP listener, behind `admin_token`):
 *   GET /api/clients[?limit=N&offset=N]          clients: connected ones and offline sessions
 *   GET /api/clients/<client id>/subscriptions   one client's subscriptions (id URL-encoded)
 *   GET /api/retained?filter=a/%23[&limit=N]     retained topics matching a filter, with sizes
 * Nothing here changes broker state.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { Broker } from "../broker/broker.ts";
import type { Session } from "../broker/session.ts";
import { NEVER_EXPIRES } from "../broker/session.ts";
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

function error(status: number, message: string, headers?: Record<string, string>): ApiResponse {
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

/**
 * Answer one admin request. `authorization` is the request's Authorization header; with no
 * `admin_token` configured the API is off (404) and nothing is revealed.
 */
export function adminRequest(
  broker: Broker,
  method: string,
  pathname: string,
  query: URLSearchParams,
  authorization: string | undefined,
): ApiResponse {
  const token = broker.config.admin_token;
  if (!token) return error(404, "the admin API is disabled (set admin_token to enable it)");
  if (!tokenMatches(authorization, token)) {
    return error(401, "a valid 'Authorization: Bearer <admin_token>' header is required", {
      "WWW-Authenticate": 'Bearer realm="midge"',
    });
  }
  if (method !== "GET" && method !== "HEAD") {
    return error(405, "the admin API is read-only: GET only", { Allow: "GET, HEAD" });
  }
  let parts: string[];
  try {
    parts = pathname.split("/").slice(1).map(decodeURIComponent);
  } catch {
    return error(400, "malformed path");
  }
  if (parts.length === 2 && parts[1] === "clients") return listClients(broker, query);
  if (parts.length === 4 && parts[1] === "clients" && parts[3] === "subscriptions") {
    return subscriptions(broker, parts[2]);
  }
  if (parts.length === 2 && parts[1] === "retained") return retained(broker, query);
  return error(404, `no such endpoint: ${pathname}`);
}

/** One client as the API shows it. */
function clientInfo(s: Session) {
  const c = s.connection && s.connection.state === "open" ? s.connection : null;
  const sock = c?.socket;
  return {
    id: s.clientId,
    connected: c !== null,
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

function listClients(broker: Broker, q: URLSearchParams): ApiResponse {
  const limit = intParam(q, "limit", DEFAULT_CLIENTS, 1, MAX_LIMIT);
  if (typeof limit === "string") return error(400, limit);
  const offset = intParam(q, "offset", 0, 0, Number.MAX_SAFE_INTEGER);
  if (typeof offset === "string") return error(400, offset);
  const clients = [];
  let i = 0;
  for (const s of broker.sessions.values()) {
    if (i++ < offset) continue;
    if (clients.length >= limit) break;
    clients.push(clientInfo(s));
  }
  const total = broker.sessions.size;
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

function subscriptions(broker: Broker, id: string): ApiResponse {
  const s = broker.sessions.get(id);
  if (!s) return error(404, `no session for client id ${JSON.stringify(id)}`);
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
    return error(400, `invalid topic filter ${JSON.stringify(filter)}`);
  }
  const limit = intParam(q, "limit", DEFAULT_RETAINED, 1, MAX_LIMIT);
  if (typeof limit === "string") return error(400, limit);
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
