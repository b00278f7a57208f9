/**
 * MQTT over WebSocket with `Bun.serve` (plain `ws://`, TCP or Unix socket). TLS and PROXY
 * listeners use node.ts instead: Bun.serve cannot change its certificate while running, shows
 * no client certificate, and reads HTTP from the first byte.
 *
 * Bun's `sendBinary` drops a message outright once the socket holds more than its
 * backpressure limit (it returns 0). What it refuses is kept here, in order, and sent again on
 * drain, so a slow reader loses nothing and `bufferedAmount` counts it.
 */
import { LINGER_MS } from "./types.ts";
import type {
  AcceptFn,
  Listener,
  ListenOptions,
  SocketHandlers,
  TransportSocket,
} from "./types.ts";
import { checkUpgrade, type RequestHead, wantsFile } from "./upgrade.ts";
import { staticFile } from "./http_dir.ts";
import { removeSocketFile } from "./unix.ts";

// deno-lint-ignore no-explicit-any
type BunWebSocket = any;

interface WsData {
  address: string;
  port: number;
  /** The broker's side, once the socket is open. */
  sock: WsSocket | null;
}

/** Bytes Bun holds for a WebSocket before `sendBinary` starts refusing (Bun's default). */
const BACKPRESSURE_LIMIT = 16 * 1024 * 1024;

/**
 * One open WebSocket as the broker sees it: methods on the prototype, so an idle connection
 * carries no closures.
 */
export class WsSocket implements TransportSocket {
  readonly ws: BunWebSocket;
  readonly remoteAddress: string;
  readonly remotePort: number;
  h: SocketHandlers | null = null;
  closed = false;
  /** Messages Bun refused (over its backpressure limit), to send on drain; null when none. */
  pending: Uint8Array[] | null = null;
  pendingBytes = 0;
  /** `end()` was called while messages were pending: close once they are out. */
  ending = false;

  constructor(ws: BunWebSocket, address: string, port: number) {
    this.ws = ws;
    this.remoteAddress = address;
    this.remotePort = port;
  }

  get protocol(): string {
    return "ws";
  }

  write(bytes: Uint8Array): void {
    if (this.closed) return;
    // sendBinary: > 0 sent, -1 queued by Bun (backpressure), 0 refused (over its limit).
    if (this.pending === null) {
      if (this.ws.sendBinary(bytes) !== 0) return;
      this.pending = [bytes];
    } else {
      this.pending.push(bytes);
    }
    this.pendingBytes += bytes.length;
  }

  /** Send what Bun refused before, in order, until it refuses again; true when none is left. */
  flushPending(): boolean {
    const pending = this.pending;
    if (pending === null) return true;
    let i = 0;
    while (i < pending.length && !this.closed) {
      if (this.ws.sendBinary(pending[i]) === 0) break;
      this.pendingBytes -= pending[i].length;
      i++;
    }
    if (i === pending.length) {
      this.pending = null;
      this.pendingBytes = 0;
      return true;
    }
    pending.splice(0, i);
    return false;
  }

  get bufferedAmount(): number {
    return this.closed ? 0 : this.ws.getBufferedAmount() + this.pendingBytes;
  }

  /** Bun's drain: send what waits, close if `end()` asked for it meanwhile, tell the broker. */
  drained(): void {
    if (this.closed) return;
    if (this.flushPending() && this.ending) this.ws.close(1000);
    this.h?.onDrain?.();
  }

  /** The socket closed, by either side: what waits is dropped, the broker told once. */
  gone(): void {
    if (this.closed) return;
    this.closed = true;
    this.pending = null;
    this.pendingBytes = 0;
    this.h?.onClose();
  }

  end(): void {
    if (this.closed || this.ending) return;
    this.ending = true;
    // What is pending goes first (see drain); the close frame follows it.
    if (this.pending === null) this.ws.close(1000);
    setTimeout(() => {
      if (!this.closed) this.ws.terminate();
    }, LINGER_MS);
  }

  destroy(): void {
    this.ws.terminate();
  }
}

const DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024;

/** True when running on Bun with Bun.serve available. */
export function hasBunServe(): boolean {
  // deno-lint-ignore no-explicit-any
  return typeof (globalThis as any).Bun?.serve === "function";
}

/** Listen for MQTT over WebSocket with Bun.serve. */
export function listenBunWebSocket(opts: ListenOptions, accept: AcceptFn): Promise<Listener> {
  // deno-lint-ignore no-explicit-any
  const Bun = (globalThis as any).Bun;
  const settings = opts.websocket!;
  const open = new Set<BunWebSocket>();
  const where = opts.unixPath ? { unix: opts.unixPath } : { hostname: opts.host, port: opts.port };
  const server = Bun.serve({
    ...where,
    // deno-lint-ignore no-explicit-any
    fetch(req: Request, srv: any): Response | undefined {
      const url = new URL(req.url);
      const head: RequestHead = {
        method: req.method,
        url: url.pathname + url.search,
        version: "1.1",
        headers: Object.fromEntries(req.headers),
      };
      const ip = srv.requestIP(req);
      const address = opts.unixPath ?? ip?.address ?? "";
      const port = ip?.port ?? 0;
      const check = checkUpgrade(head, settings);
      if (!check.ok && wantsFile(head, settings, check.code)) {
        // http_dir: a plain GET is answered with a file.
        const a = staticFile(settings.httpDir!, head.url);
        return new Response(req.method === "HEAD" ? null : (a.body as Uint8Array<ArrayBuffer>), {
          status: a.status,
          headers: { "Content-Type": a.type, Connection: "close" },
        });
      }
      if (!check.ok) {
        opts.onRefused?.(`${address}:${port}`, `WebSocket upgrade refused: ${check.reason}`);
        return new Response(null, { status: check.code, headers: { Connection: "close" } });
      }
      const data: WsData = { address, port, sock: null };
      const headers = check.protocol ? { "Sec-WebSocket-Protocol": check.protocol } : undefined;
      if (srv.upgrade(req, { headers, data })) return undefined;
      return new Response(null, { status: 400, headers: { Connection: "close" } });
    },
    websocket: {
      maxPayloadLength: opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE,
      perMessageDeflate: false,
      // MQTT keep-alive decides when an idle client is gone, not the WebSocket layer.
      idleTimeout: 0,
      sendPings: false,
      // A slow reader is the broker's to handle (its inflight window and slow-reader bound see
      // `bufferedAmount`): past the limit, messages wait in WsSocket rather than close the socket.
      backpressureLimit: BACKPRESSURE_LIMIT,
      closeOnBackpressureLimit: false,
      open(ws: BunWebSocket) {
        open.add(ws);
        const d: WsData = ws.data;
        const sock = new WsSocket(ws, d.address, d.port);
        d.sock = sock;
        try {
          sock.h = accept(sock);
        } catch {
          sock.h = null;
        }
        if (!sock.h) ws.terminate();
      },
      message(ws: BunWebSocket, msg: string | Uint8Array) {
        const sock = (ws.data as WsData).sock;
        if (!sock || sock.closed) return;
        if (typeof msg === "string") {
          // [MQTT-6.0.0-1] MQTT travels in binary frames; any other data frame closes the connection.
          opts.onRefused?.(`${sock.remoteAddress}:${sock.remotePort}`, "WebSocket text frame");
          ws.terminate();
          return;
        }
        sock.h?.onData(msg);
      },
      drain(ws: BunWebSocket) {
        (ws.data as WsData).sock?.drained();
      },
      close(ws: BunWebSocket) {
        open.delete(ws);
        (ws.data as WsData).sock?.gone();
      },
    },
  });
  return Promise.resolve({
    port: opts.unixPath ? 0 : server.port,
    host: opts.unixPath ?? opts.host,
    reload: () => Promise.resolve(),
    close() {
      for (const ws of open) ws.terminate();
      server.stop(true);
      if (opts.unixPath) removeSocketFile(opts.unixPath);
      return Promise.resolve();
    },
  });
}
