/**
 * Retained messages: one per topic [MQTT-3.3.1-5], replaced by a newer one, removed by an empty
 * payload [MQTT-3.3.1-10 v3.1.1][MQTT-3.3.1-6 v5], dropped once their message expiry has passed [MQTT-3.3.2-5 v5].
 * Kept behind this small interface so a persistent or shared store can replace it.
 */
import { type Message, messageBytes, ownPayload } from "./message.ts";
import { topicMatches } from "./topic.ts";

export interface RetainedStore {
  /** Store, replace or (empty payload) clear the retained message of `msg.topic`. */
  set(msg: Message): void;
  /** A message read back from the broker's persistent store at start-up (default: `set`). */
  restored?(msg: Message): void;
  /** Retained messages whose topic matches `filter`, not yet expired at `now`. */
  match(filter: string, now: number): Message[];
  readonly size: number;
  /** Bytes held (payload and topic of each message), for $SYS and metrics. */
  readonly bytes: number;
  /** True when the store keeps its messages durably itself (the broker's store need not). */
  readonly durable?: boolean;
  /** Loads what the store holds; the broker awaits it before listening. */
  start?(): Promise<void>;
  stop?(): void;
  /**
   * Runs `cb(true)` once every write so far is durable (`cb(false)` if it cannot be); returns
   * false, without calling `cb`, when nothing is pending.
   */
  afterDurable?(cb: (ok: boolean) => void): boolean;
  /**
   * Resolves once this node's view includes every write acknowledged anywhere before the call
   * (bounded in time); null when the view is always current (a local store).
   */
  sync?(): Promise<void> | null;
}

/** The in-memory retained store. */
export class MemoryRetained implements RetainedStore {
  #byTopic = new Map<string, Message>();
  #bytes = 0;

  get size(): number {
    return this.#byTopic.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  set(msg: Message): void {
    this.#delete(msg.topic);
    if (msg.payload.length > 0) {
      ownPayload(msg);
      this.#byTopic.set(msg.topic, msg);
      this.#bytes += messageBytes(msg);
    }
  }

  #delete(topic: string): void {
    const old = this.#byTopic.get(topic);
    if (!old) return;
    this.#byTopic.delete(topic);
    this.#bytes -= messageBytes(old);
  }

  match(filter: string, now: number): Message[] {
    const out: Message[] = [];
    const wild = filter.includes("+") || filter.includes("#");
    if (!wild) {
      const m = this.#byTopic.get(filter);
      if (m) this.#keep(m, now, out);
      return out;
    }
    for (const m of this.#byTopic.values()) {
      if (topicMatches(filter, m.topic)) this.#keep(m, now, out);
    }
    return out;
  }

  #keep(m: Message, now: number, out: Message[]): void {
    if (m.expiresAt && m.expiresAt <= now) this.#delete(m.topic);
    else out.push(m);
  }
}
