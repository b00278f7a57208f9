/**
 * MQTT over WebSocket with `Bun.serve` (plain `ws://`, TCP or Unix socket). TLS and PROXY
 * listeners use node.ts instead: Bun.serve cannot change its certificate while running, shows
 * no client certificate, and reads HTTP from the first byte.
 */
import { LINGER_MS } from "./types.ts";
import type {
  AcceptFn,
  Listener,
  ListenOptions,
  SocketHandlers,
  TransportSocket,
} from "./types.ts";
import { checkUpgrade, type RequestHead } from "./upgrade.ts";
import { removeSocketFile } from "./unix.ts";

// deno-lint-ignore no-explicit-any
type BunWebSocket = any;

interface WsData {
  address: string;
  port: number;
  h: SocketHandlers | null;
  closed: boolean;
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
      if (!check.ok) {
        opts.onRefused?.(`${address}:${port}`, `WebSocket upgrade refused: ${check.reason}`);
        return new Response(null, { status: check.code, headers: { Connection: "close" } });
      }
      const data: WsData = { address, port, h: null, closed: false };
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
      open(ws: BunWebSocket) {
        open.add(ws);
        const d: WsData = ws.data;
        const ts: TransportSocket = {
          write(bytes: Uint8Array) {
            if (!d.closed) ws.sendBinary(bytes);
          },
          get bufferedAmount() {
            return d.closed ? 0 : ws.getBufferedAmount();
          },
          end() {
            ws.close(1000);
            setTimeout(() => {
              if (!d.closed) ws.terminate();
            }, LINGER_MS);
          },
          destroy() {
            ws.terminate();
          },
          remoteAddress: d.address,
          remotePort: d.port,
          protocol: "ws",
        };
        try {
          d.h = accept(ts);
        } catch {
          d.h = null;
        }
        if (!d.h) ws.terminate();
      },
      message(ws: BunWebSocket, msg: string | Uint8Array) {
        const d: WsData = ws.data;
        if (d.closed) return;
        if (typeof msg === "string") {
          // [MQTT-6.0.0-1] MQTT travels in binary frames; any other data frame closes the connection.
          opts.onRefused?.(`${d.address}:${d.port}`, "WebSocket text frame");
          ws.terminate();
          return;
        }
        d.h?.onData(msg);
      },
      drain(ws: BunWebSocket) {
        (ws.data as WsData).h?.onDrain?.();
      },
      close(ws: BunWebSocket) {
        open.delete(ws);
        const d: WsData = ws.data;
        if (d.closed) return;
        d.closed = true;
        d.h?.onClose();
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
