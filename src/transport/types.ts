/**
 * The transport layer: listeners hand each accepted byte stream to the broker as a
 * `TransportSocket`, and the broker answers with the callbacks for that stream.
 * Runtime-specific code (Bun.listen, node:net) lives only in this folder.
 */

/** How long a socket the broker closed may keep sending (discarded) before it is dropped. */
export const LINGER_MS = 2000;

/** One accepted connection, whatever carries it (TCP, TLS, WebSocket, Unix socket). */
export interface TransportSocket {
  /** Queue bytes for sending; never blocks. The bytes must not be changed afterwards. */
  write(data: Uint8Array): void;
  /** Bytes accepted by `write` that the OS has not taken yet (slow-reader detection). */
  readonly bufferedAmount: number;
  /** Flush what is queued, then close. */
  end(): void;
  /** Close at once, dropping what is queued. */
  destroy(): void;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Human-readable listener kind for logs, e.g. "mqtt". */
  readonly protocol: string;
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

export interface ListenOptions {
  host: string;
  port: number;
}

/** A bound listener. */
export interface Listener {
  /** The bound port (useful with port 0). */
  readonly port: number;
  readonly host: string;
  close(): Promise<void>;
}
