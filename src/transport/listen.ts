/**
 * Picks the listener implementation for the runtime and the listener's needs:
 *
 * | listener                               | Bun                | Deno (and others) |
 * |----------------------------------------|--------------------|-------------------|
 * | MQTT over TCP / Unix socket, PROXY     | Bun.listen         | node:net          |
 * | WebSocket (no TLS, no PROXY)           | Bun.serve          | node:net + ws     |
 * | anything with TLS; WebSocket + PROXY   | node:net/tls (+ws) | node:net/tls (+ws)|
 *
 * TLS goes through node:tls on Bun too: Bun.listen and Bun.serve keep their first certificate
 * until restarted (`reload({tls})` does not replace it), and Bun.serve shows no client
 * certificate, which `use_identity_as_username` needs.
 */
import process from "node:process";
import type { Config, ListenerConfig } from "../config/schema.ts";
import { hasBunListen, listenBun } from "./bun.ts";
import { hasBunServe, listenBunWebSocket } from "./bun_ws.ts";
import { listenNode } from "./node.ts";
import type { AcceptFn, Listener, ListenOptions } from "./types.ts";
import { prepareUnixPath } from "./unix.ts";

/**
 * Start a listener. `MIDGE_TRANSPORT=node` forces node:net / node:tls everywhere (for
 * comparisons and tests).
 */
export async function listen(opts: ListenOptions, accept: AcceptFn): Promise<Listener> {
  if (opts.unixPath) {
    if (process.platform === "win32") {
      throw new Error("Unix socket listeners are not available on Windows");
    }
    await prepareUnixPath(opts.unixPath);
  }
  try {
    if (process.env.MIDGE_TRANSPORT !== "node" && !opts.tls) {
      if (!opts.websocket && hasBunListen()) return await listenBun(opts, accept);
      if (opts.websocket && !opts.proxy && hasBunServe()) {
        return await listenBunWebSocket(opts, accept);
      }
    }
    return await listenNode(opts, accept);
  } catch (e) {
    throw bindError(opts, e);
  }
}

/** The causes a bind fails with, by error code, in the words Node and Deno use. */
const BIND_CAUSES: Record<string, string> = {
  EADDRINUSE: "address already in use",
  EADDRNOTAVAIL: "address not available",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ENOENT: "no such file or directory",
  ENOTDIR: "not a directory",
  ENAMETOOLONG: "name too long",
  EAFNOSUPPORT: "address family not supported",
  EINVAL: "invalid argument",
};

/**
 * A failed bind as one line naming the address, the port and the cause, the same on every
 * runtime: `cannot listen on 127.0.0.1:1883: address already in use` (Bun itself says only
 * "Failed to listen at 127.0.0.1"). Errors that are not the operating system's (a certificate
 * that cannot be read) pass unchanged.
 */
export function bindError(opts: ListenOptions, e: unknown): unknown {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code !== "string" || !/^E[A-Z]+$/.test(code)) return e;
  const host = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  const where = opts.unixPath ?? `${host}:${opts.port}`;
  const cause = BIND_CAUSES[code] ?? `${code} (${(e as Error).message})`;
  return new Error(`cannot listen on ${where}: ${cause}`, { cause: e });
}

/** Start a plain MQTT-over-TCP listener (kept for callers that need nothing else). */
export function listenTcp(opts: ListenOptions, accept: AcceptFn): Promise<Listener> {
  return listen(opts, accept);
}

/** The transport options of one [[listener]] table (limits taken from the top level). */
export function listenerOptions(
  l: ListenerConfig,
  global?: Pick<Config, "connect_timeout" | "max_packet_size">,
): ListenOptions {
  const opts: ListenOptions = { host: l.bind_address, port: l.port };
  if (l.unix_socket) opts.unixPath = l.unix_socket;
  if (l.protocol === "websockets") {
    opts.websocket = { path: l.websockets_path, origins: l.websockets_origin };
    if (l.http_dir) opts.websocket.httpDir = l.http_dir;
    // A WebSocket message may hold several MQTT packets; leave room beyond one packet.
    if (global) opts.maxMessageBytes = Math.max(global.max_packet_size * 2, 1 << 20);
  }
  if (l.certfile) {
    opts.tls = {
      certfile: l.certfile,
      keyfile: l.keyfile,
      cafile: l.cafile,
      crlfile: l.crlfile,
      requireCertificate: l.require_certificate,
      identity: l.use_identity_as_username ? "cn" : l.use_subject_as_username ? "subject" : "none",
      ciphers: l.ciphers,
      minVersion: l.tls_version === "tlsv1.3" ? "TLSv1.3" : "TLSv1.2",
    };
  }
  if (l.enable_proxy_protocol !== false) {
    opts.proxy = l.enable_proxy_protocol === true ? "both" : l.enable_proxy_protocol;
  }
  if (global) opts.handshakeTimeoutMs = global.connect_timeout * 1000;
  return opts;
}
