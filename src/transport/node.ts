/**
 * Listeners over node:net and node:tls. On Deno they serve everything; on Bun they serve what
 * Bun.listen and Bun.serve cannot: TLS (Bun cannot swap certificates of a running Bun.listen or
 * Bun.serve, and Bun.serve gives no client certificate) and WebSockets behind a PROXY header.
 *
 * A connection passes through up to four stages, each optional but the last:
 *   PROXY header → TLS handshake → HTTP upgrade to WebSocket (the `ws` package) → MQTT bytes.
 * Everything before MQTT must finish within `handshakeTimeoutMs`.
 */
import { createServer as createNetServer, type Server as NetServer, type Socket } from "node:net";
import { Duplex } from "node:stream";
import {
  createServer as createTlsServer,
  type Server as TlsServer,
  type TLSSocket,
} from "node:tls";
import { type WebSocket, WebSocketServer } from "ws";
import { parseProxyHeader } from "./proxy.ts";
import { type LoadedTls, loadTls, requestsCertificate, verifyPeer } from "./tls.ts";
import type {
  AcceptFn,
  Listener,
  ListenOptions,
  SocketHandlers,
  TransportSocket,
} from "./types.ts";
import { LINGER_MS } from "./types.ts";
import { removeSocketFile } from "./unix.ts";
import {
  checkUpgrade,
  MQTT_SUBPROTOCOLS,
  parseRequestHead,
  refusal,
  wantsFile,
} from "./upgrade.ts";
import { staticFile, staticResponse } from "./http_dir.ts";

/** The client as the broker should see it (the PROXY header's source when there is one). */
interface Peer {
  address: string;
  port: number;
}

type Timer = ReturnType<typeof setTimeout> | null;

const EMPTY: Uint8Array = new Uint8Array(0);
const DEFAULT_HANDSHAKE_MS = 10_000;
const DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024;

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * A stream that yields `first` and then whatever `raw` receives; writes go to `raw` at once, so
 * that what is unsent waits in one place, `raw`, where the broker's slow-reader check sees it.
 */
function prefixed(raw: Socket, first: Uint8Array): Duplex {
  const d = new Duplex({
    read() {
      raw.resume();
    },
    write(chunk, _enc, cb) {
      raw.write(chunk);
      cb();
    },
    final(cb) {
      raw.end();
      cb();
    },
    destroy(err, cb) {
      raw.destroy();
      cb(err);
    },
  });
  if (first.length) d.push(first);
  raw.on("data", (x: Uint8Array) => {
    if (!d.push(x)) raw.pause();
  });
  raw.on("end", () => d.push(null));
  raw.on("close", () => d.destroy());
  return d;
}

/** Runs `accept`, treating a throw as a refusal. */
function safeAccept(accept: AcceptFn, ts: TransportSocket): SocketHandlers | null {
  try {
    return accept(ts);
  } catch {
    return null;
  }
}

/** A WebSocket message as bytes (ws gives a Buffer; other shapes are tolerated). */
function messageBytes(data: unknown): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (Array.isArray(data)) {
    return data.reduce((a: Uint8Array, b: Uint8Array) => concat(a, b), EMPTY);
  }
  return EMPTY;
}

/** Listen with node:net / node:tls; see the module comment for what a connection goes through. */
export function listenNode(opts: ListenOptions, accept: AcceptFn): Promise<Listener> {
  const handshakeMs = opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_MS;
  const live = new Set<{ destroy(): void }>();
  const kind = (opts.websocket ? "ws" : "mqtt") + (opts.tls ? "s" : "");
  let loaded: LoadedTls | null = opts.tls ? loadTls(opts.tls) : null;
  const askCert = opts.tls ? requestsCertificate(opts.tls) : false;
  const tlsOptions = () => ({
    ...loaded!.context,
    requestCert: askCert,
    rejectUnauthorized: askCert,
    handshakeTimeout: handshakeMs,
  });
  const wss = opts.websocket
    ? new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE,
      // [MQTT-6.0.0-4] the server selects "mqtt" (or MQTT 3.1's "mqttv3.1").
      handleProtocols: (offered: Set<string>) =>
        MQTT_SUBPROTOCOLS.find((p) => offered.has(p)) ?? false,
    })
    : null;

  const track = (s: { destroy(): void; once(e: "close", f: () => void): unknown }) => {
    live.add(s);
    s.once("close", () => live.delete(s));
  };
  const refuse = (peer: Peer, reason: string) => {
    opts.onRefused?.(opts.unixPath ?? `${peer.address}:${peer.port}`, reason);
  };
  const peerOf = (s: Socket): Peer =>
    opts.unixPath
      ? { address: opts.unixPath, port: 0 }
      : { address: s.remoteAddress ?? "", port: s.remotePort ?? 0 };
  const deadline = (s: { destroy(): void }, peer: Peer): Timer =>
    setTimeout(() => {
      refuse(peer, "handshake not finished in time");
      s.destroy();
    }, handshakeMs);

  /** Stage 1: every connection of a net.Server listener (PROXY, or no TLS). */
  const onRaw = (raw: Socket) => {
    track(raw);
    raw.on("error", () => raw.destroy());
    const peer = peerOf(raw);
    if (!opts.proxy) {
      afterTls(raw, peer, EMPTY, null, undefined);
      return;
    }
    const timer = deadline(raw, peer);
    raw.once("close", () => clearTimeout(timer!));
    let buf = EMPTY;
    const onData = (d: Uint8Array) => {
      buf = concat(buf, d);
      const r = parseProxyHeader(buf, opts.proxy);
      if (r.status === "more") return;
      raw.off("data", onData);
      if (r.status === "error") {
        refuse(peer, r.reason);
        raw.destroy();
        return;
      }
      raw.pause();
      afterProxy(raw, r.source ?? peer, buf.subarray(r.length), timer);
    };
    raw.on("data", onData);
  };

  /** Stage 2 after a PROXY header: a TLS server of its own for this one connection. */
  const afterProxy = (raw: Socket, peer: Peer, rest: Uint8Array, timer: Timer) => {
    if (!opts.tls) {
      afterTls(raw, peer, rest, timer, undefined);
      return;
    }
    // The bytes after the header go to TLS through a stream (unshifting them onto the socket
    // does not reach the TLS layer on Deno or Bun). One server per connection ties the secure
    // socket to this PROXY source; the server itself never listens.
    const srv = createTlsServer(tlsOptions());
    srv.once("secureConnection", (t: TLSSocket) => {
      track(t);
      onSecure(t, peer, timer, raw);
    });
    srv.once("tlsClientError", (e: Error, t: TLSSocket) => {
      refuse(peer, `TLS handshake failed: ${e.message}`);
      t.destroy();
      raw.destroy();
    });
    srv.emit("connection", prefixed(raw, rest));
  };

  /**
   * The TLS handshake is done: check the client certificate and take its user name. `under` is
   * the raw socket when TLS runs over a stream of its own (after a PROXY header).
   */
  const onSecure = (t: TLSSocket, peer: Peer, timer: Timer, under?: Socket) => {
    t.on("error", () => t.destroy());
    const v = verifyPeer(t, opts.tls!, loaded!.crl);
    if (!v.ok) {
      refuse(peer, v.reason);
      t.destroy();
      return;
    }
    afterTls(t, peer, EMPTY, timer, v.username, under);
  };

  /** Stage 3: the WebSocket upgrade, or straight to MQTT. */
  const afterTls = (
    sock: Socket,
    peer: Peer,
    rest: Uint8Array,
    timer: Timer,
    certUsername: string | undefined,
    under?: Socket,
  ) => {
    if (!opts.websocket) {
      if (timer) clearTimeout(timer);
      startMqtt(sock, peer, rest, certUsername, under);
      return;
    }
    const t = timer ?? deadline(sock, peer);
    sock.once("close", () => clearTimeout(t!));
    let buf = rest;
    const tryUpgrade = (): boolean => {
      const r = parseRequestHead(buf, opts.websocket!.maxHeadBytes);
      if (r.status === "more") return false;
      sock.off("data", onData);
      const check = r.status === "ok"
        ? checkUpgrade(r.head, opts.websocket!)
        : { ok: false as const, code: r.code, reason: r.reason };
      if (r.status === "ok" && !check.ok && wantsFile(r.head, opts.websocket!, check.code)) {
        // http_dir: a plain GET is answered with a file, then the connection closes.
        const answer = staticFile(opts.websocket!.httpDir!, r.head.url);
        sock.end(staticResponse(answer, r.head.method === "HEAD"));
        setTimeout(() => sock.destroy(), LINGER_MS).unref?.();
        return true;
      }
      if (!check.ok || r.status !== "ok") {
        if (!check.ok) refuse(peer, `WebSocket upgrade refused: ${check.reason}`);
        sock.end(refusal(check.ok ? 400 : check.code));
        setTimeout(() => sock.destroy(), LINGER_MS).unref?.();
        return true;
      }
      sock.pause();
      const req = {
        method: r.head.method,
        url: r.head.url,
        httpVersion: r.head.version,
        headers: r.head.headers,
        socket: sock,
      };
      // deno-lint-ignore no-explicit-any
      wss!.handleUpgrade(req as any, sock as any, buf.subarray(r.length) as any, (ws) => {
        clearTimeout(t!);
        startWebSocket(ws, sock, peer, certUsername, under);
      });
      return true;
    };
    const onData = (d: Uint8Array) => {
      buf = concat(buf, d);
      tryUpgrade();
    };
    if (buf.length && tryUpgrade()) return;
    sock.on("data", onData);
    sock.resume();
  };

  /**
   * Stage 4 (bytes): hand the stream to the broker. When TLS runs over a stream of its own,
   * `under` is the raw socket beneath it: what it holds counts as unsent too (on Bun the TLS
   * socket hands everything down at once and shows nothing pending).
   */
  const startMqtt = (
    sock: Socket,
    peer: Peer,
    rest: Uint8Array,
    certUsername?: string,
    under?: Socket,
  ) => {
    sock.setNoDelay?.(true);
    const ts: TransportSocket = {
      write: (d) => void sock.write(d),
      get bufferedAmount() {
        return under ? sock.writableLength + under.writableLength : sock.writableLength;
      },
      // Half-close (FIN) and read on until the peer closes, at most LINGER_MS: a full close
      // while the client still sends would reset the connection (see bun.ts); a client that
      // never closes its side is dropped.
      end: () => {
        sock.end();
        const t = setTimeout(() => sock.destroy(), LINGER_MS);
        sock.once("close", () => clearTimeout(t));
      },
      destroy: () => sock.destroy(),
      remoteAddress: peer.address,
      remotePort: peer.port,
      protocol: kind,
      certUsername,
    };
    const h = safeAccept(accept, ts);
    if (!h) {
      sock.destroy();
      return;
    }
    let closed = false;
    sock.on("data", (d: Uint8Array) => h.onData(d));
    sock.on("drain", () => h.onDrain?.());
    under?.on("drain", () => h.onDrain?.());
    sock.on("error", () => sock.destroy());
    sock.on("close", () => {
      if (closed) return;
      closed = true;
      h.onClose();
    });
    if (rest.length) h.onData(rest);
    sock.resume();
  };

  /** Stage 4 (WebSocket): each binary message is a piece of the MQTT byte stream. */
  const startWebSocket = (
    ws: WebSocket,
    sock: Socket,
    peer: Peer,
    certUsername?: string,
    under?: Socket,
  ) => {
    const ts: TransportSocket = {
      write: (d) => ws.send(d, { binary: true }),
      get bufferedAmount() {
        return under ? ws.bufferedAmount + under.writableLength : ws.bufferedAmount;
      },
      end: () => {
        ws.close(1000);
        const t = setTimeout(() => ws.terminate(), LINGER_MS);
        ws.once("close", () => clearTimeout(t));
      },
      destroy: () => ws.terminate(),
      remoteAddress: peer.address,
      remotePort: peer.port,
      protocol: kind,
      certUsername,
    };
    const h = safeAccept(accept, ts);
    if (!h) {
      ws.terminate();
      return;
    }
    let closed = false;
    ws.on("message", (data: unknown, isBinary: boolean) => {
      if (closed) return;
      if (!isBinary) {
        // [MQTT-6.0.0-1] MQTT travels in binary frames; any other data frame closes the connection.
        refuse(peer, "WebSocket text frame");
        closed = true;
        ws.terminate();
        h.onClose();
        return;
      }
      h.onData(messageBytes(data));
    });
    ws.on("error", () => ws.terminate());
    ws.on("close", () => {
      if (closed) return;
      closed = true;
      h.onClose();
    });
    sock.on("drain", () => h.onDrain?.());
    under?.on("drain", () => h.onDrain?.());
    sock.resume();
  };

  let server: NetServer | TlsServer;
  if (opts.tls && !opts.proxy) {
    const tlsServer = createTlsServer(tlsOptions(), (t: TLSSocket) => {
      track(t);
      onSecure(t, peerOf(t), null);
    });
    tlsServer.on("tlsClientError", (e: Error, t: TLSSocket) => {
      refuse(peerOf(t), `TLS handshake failed: ${e.message}`);
      t.destroy();
    });
    server = tlsServer;
  } else {
    server = createNetServer(onRaw);
  }

  const reload = (): Promise<void> => {
    if (!opts.tls) return Promise.resolve();
    const next = loadTls(opts.tls); // throws: the old certificates stay in force
    loaded = next;
    if (!opts.proxy) (server as TlsServer).setSecureContext(next.context);
    return Promise.resolve();
  };

  return new Promise((resolve, reject) => {
    server.once("error", reject);
    const onListening = () => {
      server.off("error", reject);
      const addr = server.address();
      const port = typeof addr === "object" && addr ? addr.port : opts.port;
      resolve({
        port: opts.unixPath ? 0 : port,
        host: opts.unixPath ?? opts.host,
        reload: () => {
          try {
            return reload();
          } catch (e) {
            return Promise.reject(e);
          }
        },
        close: () =>
          new Promise<void>((res) => {
            for (const s of live) s.destroy();
            server.close(() => {
              if (opts.unixPath) removeSocketFile(opts.unixPath);
              res();
            });
          }),
      });
    };
    if (opts.unixPath) {
      server.listen(opts.unixPath, onListening);
    } else {
      server.listen(opts.port, opts.host, onListening);
    }
  });
}
