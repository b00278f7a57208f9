/**
 * Retained messages: one per topic [MQTT-3.3.1-5], replaced by a newer one, removed by an empty
 * payload [MQTT-3.3.1-10], dropped once their message expiry has passed [MQTT-3.3.2-5].
 * Kept behind this small interface so a persistent or shared store can replace it.
 */
import type { Message } from "./message.ts";
import { topicMatches } from "./topic.ts";

export interface RetainedStore {
  /** Store, replace or (empty payload) clear the retained message of `msg.topic`. */
  set(msg: Message): void;
  /** Retained messages whose topic matches `filter`, not yet expired at `now`. */
  match(filter: string, now: number): Message[];
  readonly size: number;
}

/** The in-memory retained store. */
export class MemoryRetained implements RetainedStore {
  #byTopic = new Map<string, Message>();

  get size(): number {
    return this.#byTopic.size;
  }

  set(msg: Message): void {
    if (msg.payload.length === 0) this.#byTopic.delete(msg.topic);
    else this.#byTopic.set(msg.topic, msg);
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
    if (m.expiresAt && m.expiresAt <= now) this.#byTopic.delete(m.topic);
    else out.push(m);
  }
}
