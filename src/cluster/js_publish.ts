/**
 * JetStream publishes with many in flight, cheaply: a core publish with a `Nats-Msg-Id` header
 * and a reply subject under one inbox subscription, the acknowledgements matched by the reply's
 * last token, and time-outs checked by one timer. The JetStream client's `publish` makes a
 * request per message instead (its own promise, timer and reply handling): measured here
 * (bench/cluster_path.ts, one nats-server, 64-byte messages) it cost 22-38 µs of CPU per stored
 * message with 256-1024 in flight, against 6-11 µs this way.
 *
 * One attempt per call: a store that fails (an error acknowledgement, no JetStream responder
 * while a leader is elected, or no answer in time) rejects, and the caller retries with the same
 * message id, which JetStream de-duplicates.
 *
 * A stream answers the stores of one connection in the order it got them. So when a store is
 * acknowledged, one sent more than `PASSED_OVER_MS` before it and still unanswered was lost (sent
 * to a stream leader that was killed, or while the stream had none): it rejects at once instead
 * of at its time-out, and its retry is stored as soon as the new leader is there. Without this a
 * leader's death held every PUBACK for its election plus the time-out.
 */
import {
  createInbox,
  headers,
  type Msg,
  type NatsConnection,
  type Subscription,
} from "@nats-io/nats-core";

/** One store waiting for its acknowledgement. */
interface Pending {
  resolve: () => void;
  reject: (e: Error) => void;
  /** When it was sent (ms). */
  at: number;
}

const dec = new TextDecoder();

/**
 * How much older than an acknowledged store an unanswered one must be to count as lost (a stream
 * answers one connection in order, so this only leaves room for the clock's steps).
 */
export const PASSED_OVER_MS = 200;

/** Publishes to JetStream streams over one connection, many at once. */
export class JetStreamPublisher {
  readonly #nc: NatsConnection;
  readonly #timeoutMs: number;
  readonly #prefix: string;
  readonly #pending = new Map<string, Pending>();
  #seq = 0;
  #sub: Subscription | null = null;
  #timer: ReturnType<typeof setInterval> | null = null;

  constructor(nc: NatsConnection, timeoutMs = 5000) {
    this.#nc = nc;
    this.#timeoutMs = timeoutMs;
    this.#prefix = createInbox();
  }

  /** Stores not acknowledged yet. */
  get pending(): number {
    return this.#pending.size;
  }

  #start(): void {
    this.#sub = this.#nc.subscribe(`${this.#prefix}.*`, { callback: (_e, m) => this.#ack(m) });
    this.#timer = setInterval(() => this.#expire(), Math.min(1000, this.#timeoutMs));
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /** Sends `data` to `subject` for a stream; resolves once the stream has stored it. */
  publish(subject: string, data: Uint8Array, msgID: string): Promise<void> {
    if (!this.#sub) this.#start();
    const token = (this.#seq = (this.#seq + 1) % Number.MAX_SAFE_INTEGER).toString(36);
    const h = headers();
    h.set("Nats-Msg-Id", msgID);
    return new Promise<void>((resolve, reject) => {
      try {
        this.#nc.publish(subject, data, { reply: `${this.#prefix}.${token}`, headers: h });
      } catch (e) {
        reject(e as Error);
        return;
      }
      this.#pending.set(token, { resolve, reject, at: Date.now() });
    });
  }

  #ack(m: Msg): void {
    const token = m.subject.slice(this.#prefix.length + 1);
    const p = this.#pending.get(token);
    if (!p) return; // late: it timed out and was (or will be) sent again
    this.#pending.delete(token);
    if (m.headers?.code === 503) {
      p.reject(new Error("no JetStream responder (no leader yet)"));
      return;
    }
    const text = dec.decode(m.data);
    if (!text.includes('"error"')) {
      p.resolve();
      this.#passedOver(p.at - PASSED_OVER_MS);
      return;
    }
    let why = text;
    try {
      why = JSON.parse(text).error?.description ?? text;
    } catch { /* the text as it came */ }
    p.reject(new Error(why));
  }

  /** Rejects the unanswered stores sent before `before` (ms): a later one was answered. */
  #passedOver(before: number): void {
    for (const [token, p] of this.#pending) {
      if (p.at >= before) break; // in send order: the rest are younger
      this.#pending.delete(token);
      p.reject(new Error("no answer while a later store was acknowledged"));
    }
  }

  #expire(): void {
    const old = Date.now() - this.#timeoutMs;
    for (const [token, p] of this.#pending) {
      if (p.at > old) break; // in send order: the rest are younger
      this.#pending.delete(token);
      p.reject(new Error("timeout"));
    }
  }

  /** Fails every waiting store and stops listening. */
  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#sub?.unsubscribe();
    this.#sub = null;
    const all = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of all) p.reject(new Error("cluster stopped"));
  }
}
