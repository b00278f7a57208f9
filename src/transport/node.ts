/** TCP listener over `node:net`, used on Deno (and on Bun when Bun.listen is unavailable). */
import { createServer, type Socket } from "node:net";
import type {
  AcceptFn,
  Listener,
  ListenOptions,
  SocketHandlers,
  TransportSocket,
} from "./types.ts";
import { LINGER_MS } from "./types.ts";

/** Listen for TCP connections with node:net. */
export function listenNode(opts: ListenOptions, accept: AcceptFn): Promise<Listener> {
  const sockets = new Set<Socket>();
  const server = createServer({ noDelay: true }, (sock) => {
    sockets.add(sock);
    const ts: TransportSocket = {
      write: (d) => void sock.write(d),
      get bufferedAmount() {
        return sock.writableLength;
      },
      // Half-close (FIN) and read on until the peer closes, at most LINGER_MS: a full close while
      // the client still sends would reset the connection (see bun.ts); a client that never
      // closes its side is dropped.
      end: () => {
        sock.end();
        const t = setTimeout(() => sock.destroy(), LINGER_MS);
        sock.once("close", () => clearTimeout(t));
      },
      destroy: () => sock.destroy(),
      remoteAddress: sock.remoteAddress ?? "",
      remotePort: sock.remotePort ?? 0,
      protocol: "mqtt",
    };
    let handlers: SocketHandlers | null = null;
    try {
      handlers = accept(ts);
    } catch {
      handlers = null;
    }
    if (!handlers) {
      sock.destroy();
      sockets.delete(sock);
      return;
    }
    const h = handlers;
    let closed = false;
    const onClose = () => {
      if (closed) return;
      closed = true;
      sockets.delete(sock);
      h.onClose();
    };
    sock.on("data", (d: Uint8Array) => h.onData(d));
    sock.on("drain", () => h.onDrain?.());
    sock.on("error", () => sock.destroy());
    sock.on("close", onClose);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      const addr = server.address();
      const port = typeof addr === "object" && addr ? addr.port : opts.port;
      resolve({
        port,
        host: opts.host,
        close: () =>
          new Promise<void>((res) => {
            for (const s of sockets) s.destroy();
            server.close(() => res());
          }),
      });
    });
  });
}
