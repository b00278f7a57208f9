/**
 * Retained messages written through to the broker's persistent store: on a single node the
 * retained store (in memory, ./retained.ts) is wrapped in this, so that a retained message is
 * written in one place. A retained store that keeps its messages durably itself (the cluster's)
 * is used as it is.
 */
import type { Message } from "./message.ts";
import type { RetainedStore } from "./retained.ts";
import type { Store } from "../store/types.ts";

/** A retained store whose writes also go to the persistent store, when there is one. */
export class StoredRetained implements RetainedStore {
  readonly #inner: RetainedStore;
  readonly #store: () => Store | null;

  /** `store` gives the broker's persistent store (null with persistence off). */
  constructor(inner: RetainedStore, store: () => Store | null) {
    this.#inner = inner;
    this.#store = store;
  }

  get size(): number {
    return this.#inner.size;
  }

  get bytes(): number {
    return this.#inner.bytes;
  }

  /**
   * Keeps `msg` and writes it to the store. $SYS topics are the broker's live status (only the
   * broker publishes there): they are not stored.
   */
  set(msg: Message): void {
    this.#inner.set(msg);
    const store = this.#store();
    if (store === null || msg.topic.startsWith("$SYS/")) return;
    if (msg.payload.length) store.setRetained(msg);
    else store.deleteRetained(msg.topic);
  }

  /** A message read back from the store at start-up: kept, not written again. */
  restored(msg: Message): void {
    this.#inner.set(msg);
  }

  match(filter: string, now: number): Message[] {
    return this.#inner.match(filter, now);
  }

  start(): Promise<void> {
    return this.#inner.start?.() ?? Promise.resolve();
  }

  stop(): void {
    this.#inner.stop?.();
  }

  afterDurable(cb: (ok: boolean) => void): boolean {
    return this.#inner.afterDurable?.(cb) ?? false;
  }

  sync(): Promise<void> | null {
    return this.#inner.sync?.() ?? null;
  }
}
