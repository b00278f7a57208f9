/**
 * The HTTP listener (`http_listener`): the web console at `/` (its files under `/console/`),
 * Prometheus `/metrics`, and the admin API under `/api/` (admin.ts reads, admin_write.ts writes,
 * console_api.ts the console's own reads and message stream). Built on node:http (node:https
 * with `http_certfile`/`http_keyfile`), which Deno and Bun both provide.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import type { Broker } from "../broker/broker.ts";
import { adminRead, apiError, type ApiResponse } from "./admin.ts";
import { adminWrite } from "./admin_write.ts";
import {
  type Caller,
  COOKIE,
  CSRF_HEADER,
  type PasswordSignIn,
  passwordSignInOf,
  sameSecret,
} from "./console_auth.ts";
import { consoleRead, ConsoleState, messageStream } from "./console_api.ts";
import { consoleAssets } from "./console_assets.generated.ts";
import { type LagSampler, METRICS_CONTENT_TYPE, renderMetrics } from "./metrics.ts";

/** A bound HTTP listener. */
export interface HttpListener {
  readonly host: string;
  readonly port: number;
  /** Whether it speaks HTTPS. */
  readonly tls: boolean;
  close(): Promise<void>;
}

/** Certificate and key files (PEM) to serve HTTPS with. */
export interface HttpTls {
  certfile: string;
  keyfile: string;
}

/** Largest request body the API reads, bytes (a publish carries at most 256 KB of payload). */
export const MAX_BODY = 512 * 1024;

/** Whether `host` is a loopback address (plain HTTP there is not seen by the network). */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The warning logged when the listener serves plain HTTP on a non-loopback address. */
export function plainHttpWarning(host: string, port: number, tls: boolean): string | undefined {
  if (tls || isLoopbackHost(host)) return undefined;
  return `http_listener ${host}:${port} serves plain HTTP on a non-loopback address: the admin ` +
    `token and console sessions cross the network unencrypted (set http_certfile and ` +
    `http_keyfile for HTTPS).`;
}

/**
 * Start the HTTP listener on `host:port` (port 0 = chosen by the OS). `state` is the console's
 * (made here when not given); `tls` serves HTTPS.
 */
export function startHttp(
  broker: Broker,
  host: string,
  port: number,
  lag?: LagSampler,
  state?: ConsoleState,
  tls?: HttpTls,
): Promise<HttpListener> {
  const st = state ?? new ConsoleState(broker, lag);
  const ctx: Ctx = { broker, lag, st, tls: tls !== undefined, token: broker.config.admin_token };
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    handle(ctx, req, res).catch((e) => {
      broker.log.error(`HTTP ${req.method} ${req.url}: ${e}`);
      if (!res.headersSent) send(res, req, 500, "text/plain; charset=utf-8", "internal error\n");
      else res.destroy();
    });
  };
  const server = tls
    ? createTlsServer({ cert: readFileSync(tls.certfile), key: readFileSync(tls.keyfile) }, handler)
    : createServer(handler);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      server.on("error", (e) => broker.log.error(`HTTP listener: ${e}`));
      const bound = (server.address() as AddressInfo).port;
      const warning = plainHttpWarning(host, bound, tls !== undefined);
      if (warning) broker.log.warning(warning);
      resolve({
        host,
        port: bound,
        tls: tls !== undefined,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            // Scrapers keep connections alive and streams stay open; do not wait for them.
            (server as { closeAllConnections?: () => void }).closeAllConnections?.();
          }),
      });
    });
  });
}

interface Ctx {
  broker: Broker;
  lag: LagSampler | undefined;
  st: ConsoleState;
  tls: boolean;
  /** The admin token the sessions were made under (they end when it changes on reload). */
  token: string;
}

/** Headers of every console file and API answer: nothing from another host, no framing. */
const SECURITY_HEADERS: Record<string, string> = {
  "Content-Security-Policy": "default-src 'self'; style-src 'self'; " +
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; " +
    "form-action 'self'",
  "X-Content-Type-Options": "nosniff",
  "X-Frame-Options": "DENY",
  "Referrer-Policy": "no-referrer",
};

function send(
  res: ServerResponse,
  req: IncomingMessage,
  status: number,
  type: string,
  body: string | Uint8Array,
  headers: Record<string, string> = {},
): void {
  const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
  res.writeHead(status, {
    "Content-Type": type,
    "Content-Length": String(bytes.length),
    "Cache-Control": "no-store",
    ...headers,
  });
  res.end(req.method === "HEAD" ? undefined : bytes);
}

/** JSON answers larger than this are gzipped for clients that accept it (the 15-minute history). */
const GZIP_JSON_BYTES = 8 * 1024;

function sendJson(res: ServerResponse, req: IncomingMessage, r: ApiResponse): void {
  const text = JSON.stringify(r.body) + "\n";
  const headers = { ...SECURITY_HEADERS, ...r.headers };
  if (text.length > GZIP_JSON_BYTES && /\bgzip\b/.test(String(req.headers["accept-encoding"]))) {
    const body = new Uint8Array(gzipSync(new TextEncoder().encode(text), { level: 6 }));
    send(res, req, r.status, "application/json", body, {
      ...headers,
      "Content-Encoding": "gzip",
      Vary: "Accept-Encoding",
    });
    return;
  }
  send(res, req, r.status, "application/json", text, headers);
}

/** A console file, plain and gzipped, with its ETag; made on first use. */
interface Asset {
  type: string;
  plain: Uint8Array;
  gzip: Uint8Array;
  etag: string;
}
const assets = new Map<string, Asset>();

function asset(path: string): Asset | undefined {
  let a = assets.get(path);
  if (a) return a;
  const src = consoleAssets[path];
  if (!src) return undefined;
  const plain = new TextEncoder().encode(src.text);
  a = {
    type: src.type,
    plain,
    gzip: new Uint8Array(gzipSync(plain, { level: 9 })),
    etag: `"${createHash("sha256").update(plain).digest("base64url").slice(0, 20)}"`,
  };
  assets.set(path, a);
  return a;
}

function serveAsset(req: IncomingMessage, res: ServerResponse, a: Asset): void {
  const headers: Record<string, string> = {
    ...SECURITY_HEADERS,
    "Cache-Control": "no-cache",
    ETag: a.etag,
    Vary: "Accept-Encoding",
  };
  if (req.headers["if-none-match"] === a.etag) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  const gz = /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""));
  if (gz) headers["Content-Encoding"] = "gzip";
  send(res, req, 200, a.type, gz ? a.gzip : a.plain, headers);
}

async function handle(ctx: Ctx, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? "/", "http://localhost");
  const path = url.pathname;
  const method = req.method ?? "GET";
  if (path === "/api" || path.startsWith("/api/")) {
    const r = await api(ctx, req, res, method, path, url.searchParams);
    if (r) sendJson(res, req, r);
    return;
  }
  if (path === "/metrics") {
    if (method !== "GET" && method !== "HEAD") {
      send(res, req, 405, "text/plain; charset=utf-8", "GET only\n", { Allow: "GET, HEAD" });
      return;
    }
    send(
      res,
      req,
      200,
      METRICS_CONTENT_TYPE,
      renderMetrics(ctx.broker, ctx.lag) + (ctx.st.cluster?.metrics() ?? ""),
    );
    return;
  }
  const a = asset(path === "/index.html" ? "/" : path);
  if (a) {
    if (method !== "GET" && method !== "HEAD") {
      send(res, req, 405, "text/plain; charset=utf-8", "GET only\n", { Allow: "GET, HEAD" });
      return;
    }
    serveAsset(req, res, a);
    return;
  }
  send(res, req, 404, "text/plain; charset=utf-8", "not found: try /, /metrics or /api/clients\n");
}

/** The remote address of a request, for the log. */
function remote(req: IncomingMessage): string {
  const a = req.socket.remoteAddress ?? "?";
  return a.includes(":") ? `[${a}]` : a;
}

/** Reads a JSON body (at most MAX_BODY bytes); an ApiResponse says what is wrong. */
async function jsonBody(req: IncomingMessage): Promise<unknown | ApiResponse> {
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Uint8Array).length;
    if (n > MAX_BODY) return { status: 413, body: { error: `body over ${MAX_BODY} bytes` } };
    chunks.push(c as Uint8Array);
  }
  if (n === 0) return undefined;
  const buf = new Uint8Array(n);
  let o = 0;
  for (const c of chunks) {
    buf.set(c, o);
    o += c.length;
  }
  try {
    return { json: JSON.parse(new TextDecoder().decode(buf)) };
  } catch {
    return apiError(400, "the body is not valid JSON");
  }
}

/** Whether a value read by `jsonBody` is an error answer. */
function isAnswer(v: unknown): v is ApiResponse {
  return typeof v === "object" && v !== null && "status" in v;
}

function cookieHeader(id: string, maxAge: number, secure: boolean): string {
  return `${COOKIE}=${id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${
    secure ? "; Secure" : ""
  }`;
}

const UNAUTHORIZED = {
  status: 401,
  body: { error: "sign in, or send 'Authorization: Bearer <admin_token>'" },
  headers: { "WWW-Authenticate": 'Bearer realm="midge"' },
};

/** Whether a write came from a page of this listener (an Origin header, when sent, must match). */
function sameOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

/** The admin API: authentication, CSRF, then reads or writes. */
async function api(
  ctx: Ctx,
  req: IncomingMessage,
  res: ServerResponse,
  method: string,
  path: string,
  q: URLSearchParams,
): Promise<ApiResponse | undefined> {
  const { broker, st } = ctx;
  const token = broker.config.admin_token;
  if (!token) return apiError(404, "the admin API is disabled (set admin_token to enable it)");
  if (token !== ctx.token) {
    // admin_token changed on reload: sessions made with the old one end.
    st.sessions.clear();
    ctx.token = token;
  }
  let parts: string[];
  try {
    parts = path.split("/").slice(1).map(decodeURIComponent);
  } catch {
    return apiError(400, "malformed path");
  }
  const write = method !== "GET" && method !== "HEAD";
  if (write) {
    if (!sameOrigin(req)) return apiError(403, "cross-origin request refused");
    const type = String(req.headers["content-type"] ?? "");
    if (
      req.headers["content-length"] !== "0" && req.headers["content-length"] !== undefined &&
      !/^application\/json\b/i.test(type)
    ) {
      return apiError(415, "the body must be application/json");
    }
  }

  if (parts.length === 2 && parts[1] === "session") return await session(ctx, req, method);

  const caller: Caller | null = st.sessions.authenticate(
    token,
    req.headers.authorization,
    req.headers.cookie,
  );
  if (!caller) return UNAUTHORIZED;
  if (!write) {
    if (parts.length === 3 && parts[1] === "messages" && parts[2] === "stream") {
      return messageStream(st, req, res, q);
    }
    if (st.cluster && parts.length === 2 && parts[1] === "clients" && q.get("cluster") === "1") {
      return await st.cluster.clients(q);
    }
    return consoleRead(st, parts, q) ?? adminRead(broker, parts, q);
  }
  if (!st.sessions.csrfOk(caller, headerOf(req, CSRF_HEADER))) {
    return apiError(403, `a write needs the session's CSRF token in the ${CSRF_HEADER} header`);
  }
  if (method !== "POST" && method !== "DELETE") {
    return apiError(405, "methods: GET, HEAD, POST, DELETE", { Allow: "GET, HEAD, POST, DELETE" });
  }
  const body = await jsonBody(req);
  if (isAnswer(body)) return body;
  return await adminWrite(
    broker,
    { who: caller.who, from: remote(req) },
    method,
    parts,
    q,
    (body as { json?: unknown } | undefined)?.json,
  );
}

function headerOf(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * `/api/session`: POST signs in ({"token": …}, or {"username", "password"} when dynamic
 * security lets its admins in) and sets the session cookie; GET tells who is signed in (and the
 * CSRF token, which the page keeps in memory); DELETE signs out.
 */
async function session(
  ctx: Ctx,
  req: IncomingMessage,
  method: string,
): Promise<ApiResponse> {
  const { broker, st } = ctx;
  const sessions = st.sessions;
  const signInFn = passwordSignInOf(broker, sessions);
  const passwords = signInFn !== null;
  if (method === "GET" || method === "HEAD") {
    const s = sessions.lookup(req.headers.cookie);
    if (!s) {
      return { ...UNAUTHORIZED, body: { ...UNAUTHORIZED.body, password_sign_in: passwords } };
    }
    return { status: 200, body: { who: s.who, csrf: s.csrf } };
  }
  if (method === "DELETE") {
    const s = sessions.lookup(req.headers.cookie);
    if (!s) return UNAUTHORIZED;
    if (!sameSecret(headerOf(req, CSRF_HEADER) ?? "", s.csrf)) {
      return apiError(403, `a write needs the session's CSRF token in the ${CSRF_HEADER} header`);
    }
    sessions.end(s.id);
    broker.log.notice(`Admin API: ${s.who} from ${remote(req)}: signed out of the console.`);
    return {
      status: 200,
      body: { signed_out: true },
      headers: { "Set-Cookie": cookieHeader("", 0, ctx.tls) },
    };
  }
  if (method !== "POST") {
    return apiError(405, "GET, POST or DELETE", { Allow: "GET, POST, DELETE" });
  }
  if (!sessions.beginSignIn()) {
    return apiError(429, "too many sign-ins at once; try again in a few seconds", {
      "Retry-After": "2",
    });
  }
  try {
    return await signIn(ctx, req, signInFn);
  } finally {
    sessions.endSignIn();
  }
}

/** Checks a sign-in request and makes the session (see `session`). */
async function signIn(
  ctx: Ctx,
  req: IncomingMessage,
  signInFn: PasswordSignIn | null,
): Promise<ApiResponse> {
  const { broker, st } = ctx;
  const sessions = st.sessions;
  const passwords = signInFn !== null;
  const body = await jsonBody(req);
  if (isAnswer(body)) return body;
  const b = (body as { json?: Record<string, unknown> } | undefined)?.json ?? {};
  let who: string | null = null;
  if (typeof b.token === "string") {
    who = sameSecret(b.token, broker.config.admin_token) ? "admin_token" : null;
  } else if (typeof b.username === "string" && typeof b.password === "string" && passwords) {
    who = await signInFn!(b.username, b.password);
  } else {
    return apiError(
      400,
      passwords ? 'expected {"token"} or {"username","password"}' : 'expected {"token"}',
    );
  }
  if (!who) {
    broker.log.notice(`Admin API: console sign-in from ${remote(req)} refused.`);
    // A refused guess costs the guesser a second.
    await new Promise((r) => setTimeout(r, 1000));
    return apiError(401, "wrong token or credentials");
  }
  const s = sessions.create(who);
  broker.log.notice(`Admin API: ${who} from ${remote(req)}: signed in to the console.`);
  return {
    status: 200,
    body: { who, csrf: s.csrf },
    headers: { "Set-Cookie": cookieHeader(s.id, 8 * 3600, ctx.tls) },
  };
}
