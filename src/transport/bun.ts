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

/** Where a client is, when Bun's own remote address does not say: a Unix path, a PROXY source. */
interface Peer {
  readonly address: string;
  readonly port: number;
}

/** A socket's life: open; ending (bytes still pending); lingering (FIN sent); closed. */
const OPEN = 0, ENDING = 1, LINGERING = 2, CLOSED = 3;

/**
 * One Bun socket: its state and, once admitted, the `TransportSocket` the broker writes to — one
 * object with methods on its prototype, so an idle connection carries no closures, and eight
 * fields (an 80-byte object in JavaScriptCore; every field more is memory per idle connection).
 */
export class State implements TransportSocket {
  readonly s: BunSocket;
  h: SocketHandlers | null = null;
  /** Bytes Bun's write did not take yet; null when nothing is pending. */
  pending: Uint8Array[] | null = null;
  pendingBytes = 0;
  phase = OPEN;
  /**
   * The deadline for a PROXY header while one is expected; then, once closing, the wait for
   * pending bytes (ENDING) or for the peer's FIN (LINGERING).
   */
  timer: ReturnType<typeof setTimeout> | null = null;
  /** The client's address when it is not the socket's own (Unix socket, PROXY header). */
  peer: Peer | null = null;
  /** Bytes of a PROXY header read so far; null once it is read (or when none is expected). */
  proxyBuf: Uint8Array | null = null;

  constructor(s: BunSocket) {
    this.s = s;
  }

  get remoteAddress(): string {
    return this.peer ? this.peer.address : this.s.remoteAddress ?? "";
  }

  get remotePort(): number {
    return this.peer ? this.peer.port : this.s.remotePort ?? 0;
  }

  get protocol(): string {
    return "mqtt";
  }

  write(d: Uint8Array): void {
    this.#send(d, d.length, false);
  }

  writeFrom(buf: Uint8Array, length: number): void {
    this.#send(buf, length, true);
  }

  /**
   * Write the first `length` bytes of `buf`; what Bun does not take is kept for drain, as a copy
   * when the caller reuses `buf` (`writeFrom`), else as a view.
   */
  #send(buf: Uint8Array, length: number, copy: boolean): void {
    if (this.phase === CLOSED) return;
    let rest = buf;
    if (this.pending === null) {
      const n = this.s.write(buf, 0, length);
      if (n === length) return;
      const from = n < 0 ? 0 : n;
      rest = copy ? buf.slice(from, length) : buf.subarray(from);
      this.pending = [rest];
    } else {
      // `write` always passes the whole buffer, so it is kept as it is.
      rest = copy ? buf.slice(0, length) : buf;
      this.pending.push(rest);
    }
    this.pendingBytes += rest.length;
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
    if (this.phase !== OPEN) return;
    if (this.pending === null) {
      this.linger();
    } else {
      // Close once the pending bytes are out (see drain), or give up after a while.
      this.phase = ENDING;
      this.timer = setTimeout(() => this.linger(), 2000);
    }
  }

  /**
   * Close our side only (FIN) and keep reading until the peer closes too, at most LINGER_MS.
   * Closing fully while the client is still sending makes the kernel answer its next packets
   * with a reset, and a reset can make the client discard what we sent last (a v5 DISCONNECT with
   * its reason code) and fail its own writes: the Paho test_flow_control2 client saw EPIPE
   * instead of DISCONNECT 0x93.
   */
  linger(): void {
    if (this.phase >= LINGERING) return;
    if (this.timer) clearTimeout(this.timer);
    this.phase = LINGERING;
    this.s.shutdown();
    this.timer = setTimeout(() => {
      if (this.phase !== CLOSED) this.s.terminate();
    }, LINGER_MS);
  }

  destroy(): void {
    this.s.terminate();
  }
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
  /** Every client of a Unix socket listener is "at" its path (shared: no object per client). */
  const unixPeer: Peer | null = opts.unixPath ? { address: opts.unixPath, port: 0 } : null;
  const server = Bun.listen({
    ...where,
    socket: {
      open(s: BunSocket) {
        const st = new State(s);
        s.data = st;
        st.peer = unixPeer;
        if (!opts.proxy) {
          admit(s, st);
          return;
        }
        // PROXY protocol: the header comes first; the client is admitted once it is read.
        st.proxyBuf = new Uint8Array(0);
        st.timer = setTimeout(() => {
          opts.onRefused?.(
            `${st.remoteAddress}:${st.remotePort}`,
            "PROXY header not received in time",
          );
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
        clearTimeout(st.timer!);
        st.timer = null;
        st.proxyBuf = null;
        if (r.status === "error") {
          opts.onRefused?.(`${st.remoteAddress}:${st.remotePort}`, r.reason);
          s.terminate();
          return;
        }
        if (r.source) st.peer = r.source;
        admit(s, st);
        if (st.h && buf.length > r.length) st.h.onData(buf.subarray(r.length));
      },
      drain(s: BunSocket) {
        const st: State = s.data;
        if (st.flushPending() && st.phase === ENDING) st.linger();
        st.h?.onDrain?.();
      },
      close(s: BunSocket) {
        const st: State = s.data;
        if (!st || st.phase === CLOSED) return;
        st.phase = CLOSED;
        if (st.timer) clearTimeout(st.timer);
        st.timer = null;
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
  function admit(s: BunSocket, st: State): void {
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
