/**
 * The transport layer: listeners hand each accepted byte stream to the broker as a
 * `TransportSocket`, and the broker answers with the callbacks for that stream.
 * Runtime-specific code (Bun.listen, node:net) lives only in this folder.
 */

import type { ProxyVersions } from "./proxy.ts";
import type { TlsSettings } from "./tls.ts";
import type { WebSocketSettings } from "./upgrade.ts";

/** How long a socket the broker closed may keep sending (discarded) before it is dropped. */
export const LINGER_MS = 2000;

/** One accepted connection, whatever carries it (TCP, TLS, WebSocket, Unix socket). */
export interface TransportSocket {
  /** Queue bytes for sending; never blocks. The bytes must not be changed afterwards. */
  write(data: Uint8Array): void;
  /**
   * Send the first `length` bytes of `buf`, done with `buf` when it returns (written, or copied
   * to write later), so the caller may use it again at once. Optional: a transport that keeps
   * the bytes it is given has only `write`.
   */
  writeFrom?(buf: Uint8Array, length: number): void;
  /** Bytes accepted by `write` that the OS has not taken yet (slow-reader detection). */
  readonly bufferedAmount: number;
  /** Flush what is queued, then close. */
  end(): void;
  /** Close at once, dropping what is queued. */
  destroy(): void;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Human-readable listener kind for logs: "mqtt", "mqtts", "ws", "wss" (a Unix socket: "unix"). */
  readonly protocol: string;
  /**
   * The user name the client's TLS certificate gives (`use_identity_as_username`: its CN;
   * `use_subject_as_username`: its subject). When set, it replaces the CONNECT user name and
   * the certificate stands for the password.
   */
  readonly certUsername?: string;
}

/** What the broker does with a socket's events. */
export interface SocketHandlers {
  onData(chunk: Uint8Array): void;
  /** Called once, however the socket closed. */
  onClose(): void;
  /** The send buffer has drained (bufferedAmount fell). */
  onDrain?(): void;
}

/** Called for each accepted socket; returns its handlers, or null to refuse (the socket is closed). */
export type AcceptFn = (socket: TransportSocket) => SocketHandlers | null;

/** Where and how to listen. Only host and port are required (plain MQTT over TCP). */
export interface ListenOptions {
  host: string;
  port: number;
  /** Listen on this Unix socket path instead of host:port (Linux, macOS). */
  unixPath?: string;
  /** Serve MQTT over WebSocket (HTTP upgrade on this path, with these origins). */
  websocket?: WebSocketSettings;
  /** TLS (certificates read at start and again by `reload()`). */
  tls?: TlsSettings;
  /** Expect a PROXY protocol header before anything else, of these versions. */
  proxy?: ProxyVersions;
  /** Time allowed for the PROXY header, the TLS handshake and the HTTP upgrade (default 10 s). */
  handshakeTimeoutMs?: number;
  /** Largest WebSocket message accepted (default 16 MiB). */
  maxMessageBytes?: number;
  /** Told about each connection refused before MQTT starts (bad header, TLS failure, ...). */
  onRefused?(remote: string, reason: string): void;
}

/** A bound listener. */
export interface Listener {
  /** The bound port (useful with port 0); 0 for a Unix socket. */
  readonly port: number;
  /** The bound address, or the socket path of a Unix socket listener. */
  readonly host: string;
  /** Re-read the TLS certificate, key, CA and CRL files (SIGHUP); connected clients stay. */
  reload(): Promise<void>;
  close(): Promise<void>;
}
