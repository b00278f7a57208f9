/**
 * Outgoing plain TCP connections for the load generator (`midge bench`): `Bun.connect` on Bun
 * (about half the memory and CPU per socket of node:net there, which matters with 100k idle
 * connections), `node:net` elsewhere. Unlike the client's streams (src/client/transport.ts), a
 * write here never keeps the caller's buffer: the caller may refill it as soon as `write` returns.
 */
import { connect as netConnect } from "node:net";

/** What the caller does with the socket's events. */
export interface DialHandlers {
  onData(chunk: Uint8Array): void;
  /** Called once, however the socket closed. */
  onClose(): void;
  /** Everything written so far has been handed to the OS. */
  onDrain?(): void;
}

/** An open outgoing connection. */
export interface DialSocket {
  /** Send bytes; what the OS does not take now is copied and sent later. */
  write(data: Uint8Array): void;
  /** Bytes written but not yet taken by the OS. */
  readonly bufferedAmount: number;
  /** Close after what is queued. */
  end(): void;
  /** Close at once. */
  destroy(): void;
}

/** Where to connect. */
export interface DialOptions {
  host: string;
  port: number;
  /** Source address (e.g. one of several 127.0.0.x, to use more than one ephemeral port range). */
  localAddress?: string;
}

// deno-lint-ignore no-explicit-any
type Any = any;

/** Connect; resolves once the connection is open, rejects when it cannot be made. */
export function dialTcp(opts: DialOptions, h: DialHandlers): Promise<DialSocket> {
  const Bun = (globalThis as Any).Bun;
  if (typeof Bun?.connect === "function") return dialBun(Bun, opts, h);
  return dialNode(opts, h);
}

function dialBun(Bun: Any, opts: DialOptions, h: DialHandlers): Promise<DialSocket> {
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  let sock: Any = null;
  let closed = false;
  let ending = false;
  const flush = () => {
    while (pending.length) {
      const buf = pending[0];
      const n = sock.write(buf);
      if (n < 0) return;
      pendingBytes -= n;
      if (n < buf.length) {
        pending[0] = buf.subarray(n);
        return;
      }
      pending.shift();
    }
    if (ending) sock.end();
  };
  const ds: DialSocket = {
    write(d) {
      if (closed) return;
      if (pending.length === 0) {
        const n = sock.write(d);
        if (n === d.length) return;
        const rest = d.slice(n < 0 ? 0 : n);
        pending.push(rest);
        pendingBytes += rest.length;
      } else {
        pending.push(d.slice());
        pendingBytes += d.length;
      }
    },
    get bufferedAmount() {
      return pendingBytes;
    },
    end() {
      if (closed) return;
      ending = true;
      if (pending.length === 0) sock.end();
    },
    destroy() {
      if (!closed) sock.terminate();
    },
  };
  return Bun.connect({
    hostname: opts.host,
    port: opts.port,
    ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    socket: {
      open(s: Any) {
        sock = s;
        s.setNoDelay?.(true);
      },
      data(_s: Any, d: Uint8Array) {
        h.onData(d);
      },
      drain() {
        flush();
        if (pending.length === 0) h.onDrain?.();
      },
      close() {
        if (closed) return;
        closed = true;
        pending = [];
        pendingBytes = 0;
        h.onClose();
      },
      error(s: Any) {
        s.terminate();
      },
    },
  }).then((s: Any) => {
    sock = s;
    return ds;
  });
}

function dialNode(opts: DialOptions, h: DialHandlers): Promise<DialSocket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({
      host: opts.host,
      port: opts.port,
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    });
    s.setNoDelay(true);
    let open = false;
    let closed = false;
    s.on("connect", () => {
      open = true;
      resolve({
        write(d) {
          if (!closed) s.write(d.slice());
        },
        get bufferedAmount() {
          return s.writableLength;
        },
        end() {
          s.end();
        },
        destroy() {
          s.destroy();
        },
      });
    });
    s.on("data", (d: Uint8Array) => h.onData(d));
    s.on("drain", () => h.onDrain?.());
    s.on("error", (e) => {
      if (!open) reject(e);
    });
    s.on("close", () => {
      if (closed) return;
      closed = true;
      if (open) h.onClose();
    });
  });
}
