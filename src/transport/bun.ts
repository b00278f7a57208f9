/**
 * Plain MQTT listener (TCP or Unix socket, optional PROXY header) over `Bun.listen`: about half the memory per idle connection of node:net on Bun
 * (see ../../DESIGN notes). Bun's socket.write may take only part of the bytes; the rest is kept
 * here and written on drain.
 */
import type {
  AcceptFn,
  Listener,
  ListenOptions,
  SocketHandlers,
  TransportSocket,
} from "./types.ts";
import { LINGER_MS } from "./types.ts";
import { removeSocketFile } from "./unix.ts";
import { parseProxyHeader } from "./proxy.ts";

// deno-lint-ignore no-explicit-any
type BunSocket = any;

/**
 * One Bun socket: its state and, once admitted, the `TransportSocket` the broker writes to — one
 * object with methods on its prototype, so an idle connection carries no closures.
 */
class State implements TransportSocket {
  readonly s: BunSocket;
  h: SocketHandlers | null = null;
  /** Bytes Bun's write did not take yet; null when nothing is pending. */
  pending: Uint8Array[] | null = null;
  pendingBytes = 0;
  closed = false;
  linger: ReturnType<typeof setTimeout> | null = null;
  /** Bytes of a PROXY header read so far; null once it is read (or when none is expected). */
  proxyBuf: Uint8Array | null = null;
  proxyTimer: ReturnType<typeof setTimeout> | null = null;
  /** Set by end() while bytes are still pending: a timer that gives up waiting for drain. */
  endTimer: ReturnType<typeof setTimeout> | null = null;
  remoteAddress = "";
  remotePort = 0;
  readonly protocol = "mqtt";

  constructor(s: BunSocket) {
    this.s = s;
  }

  write(d: Uint8Array): void {
    if (this.closed) return;
    if (this.pending === null) {
      const n = this.s.write(d);
      if (n === d.length) return;
      const rest = d.subarray(n < 0 ? 0 : n);
      this.pending = [rest];
      this.pendingBytes += rest.length;
    } else {
      this.pending.push(d);
      this.pendingBytes += d.length;
    }
  }

  get bufferedAmount(): number {
    return this.pendingBytes;
  }

  /** Write what Bun did not take before; true when nothing is left. */
  flushPending(): boolean {
    const pending = this.pending;
    while (pending && pending.length) {
      const buf = pending[0];
      const n = this.s.write(buf);
      if (n < 0) return false;
      this.pendingBytes -= n;
      if (n < buf.length) {
        pending[0] = buf.subarray(n);
        return false;
      }
      pending.shift();
    }
    this.pending = null;
    return true;
  }

  end(): void {
    if (this.pending === null) closeGracefully(this.s, this);
    else if (!this.endTimer) {
      // Close once the pending bytes are out (or give up after a while).
      this.endTimer = setTimeout(() => closeGracefully(this.s, this), 2000);
    }
  }

  destroy(): void {
    this.s.terminate();
  }
}

/**
 * Close our side only (FIN) and keep reading until the peer closes too, at most LINGER_MS.
 * Closing fully while the client is still sending makes the kernel answer its next packets with
 * a reset, and a reset can make the client discard what we sent last (a v5 DISCONNECT with its
 * reason code) and fail its own writes: the Paho test_flow_control2 client saw EPIPE instead of
 * DISCONNECT 0x93.
 */
function closeGracefully(s: BunSocket, st: State): void {
  if (st.closed || st.linger) return;
  s.shutdown();
  st.linger = setTimeout(() => {
    if (!st.closed) s.terminate();
  }, LINGER_MS);
}

/** True when running on Bun with Bun.listen available. */
export function hasBunListen(): boolean {
  // deno-lint-ignore no-explicit-any
  return typeof (globalThis as any).Bun?.listen === "function";
}

/** Listen for plain MQTT connections (TCP or Unix socket, optionally behind PROXY) with Bun.listen. */
export function listenBun(opts: ListenOptions, accept: AcceptFn): Promise<Listener> {
  // deno-lint-ignore no-explicit-any
  const Bun = (globalThis as any).Bun;
  const where = opts.unixPath ? { unix: opts.unixPath } : { hostname: opts.host, port: opts.port };
  const server = Bun.listen({
    ...where,
    socket: {
      open(s: BunSocket) {
        const st = new State(s);
        s.data = st;
        const peer = opts.unixPath
          ? { address: opts.unixPath, port: 0 }
          : { address: s.remoteAddress ?? "", port: s.remotePort ?? 0 };
        if (!opts.proxy) {
          admit(s, st, peer);
          return;
        }
        // PROXY protocol: the header comes first; the client is admitted once it is read.
        st.proxyBuf = new Uint8Array(0);
        st.proxyTimer = setTimeout(() => {
          opts.onRefused?.(`${peer.address}:${peer.port}`, "PROXY header not received in time");
          s.terminate();
        }, opts.handshakeTimeoutMs ?? 10_000);
      },
      data(s: BunSocket, d: Uint8Array) {
        const st: State = s.data;
        if (st.proxyBuf === null) {
          st.h?.onData(d);
          return;
        }
        const buf = concat(st.proxyBuf, d);
        const r = parseProxyHeader(buf, opts.proxy);
        if (r.status === "more") {
          st.proxyBuf = buf;
          return;
        }
        clearTimeout(st.proxyTimer!);
        st.proxyBuf = null;
        const peer = { address: s.remoteAddress ?? "", port: s.remotePort ?? 0 };
        if (r.status === "error") {
          opts.onRefused?.(`${peer.address}:${peer.port}`, r.reason);
          s.terminate();
          return;
        }
        admit(s, st, r.source ?? (opts.unixPath ? { address: opts.unixPath, port: 0 } : peer));
        if (st.h && buf.length > r.length) st.h.onData(buf.subarray(r.length));
      },
      drain(s: BunSocket) {
        const st: State = s.data;
        if (st.flushPending() && st.endTimer) {
          clearTimeout(st.endTimer);
          st.endTimer = null;
          closeGracefully(s, st);
        }
        st.h?.onDrain?.();
      },
      close(s: BunSocket) {
        const st: State = s.data;
        if (!st || st.closed) return;
        st.closed = true;
        if (st.linger) clearTimeout(st.linger);
        if (st.proxyTimer) clearTimeout(st.proxyTimer);
        if (st.endTimer) clearTimeout(st.endTimer);
        st.pending = null;
        st.pendingBytes = 0;
        st.h?.onClose();
      },
      error(s: BunSocket) {
        s.terminate();
      },
    },
  });
  return Promise.resolve({
    port: opts.unixPath ? 0 : server.port,
    host: opts.unixPath ?? opts.host,
    reload: () => Promise.resolve(),
    close() {
      // stop(true) also closes every open connection (their close handlers run).
      server.stop(true);
      if (opts.unixPath) removeSocketFile(opts.unixPath);
      return Promise.resolve();
    },
  });

  /** Hand a connection to the broker as a TransportSocket. */
  function admit(s: BunSocket, st: State, peer: { address: string; port: number }): void {
    st.remoteAddress = peer.address;
    st.remotePort = peer.port;
    try {
      st.h = accept(st);
    } catch {
      st.h = null;
    }
    if (!st.h) s.terminate();
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
