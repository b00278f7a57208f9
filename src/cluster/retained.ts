/**
 * Retained messages shared by every node, in a JetStream KV bucket (`N_retained`, history 1,
 * the cluster's replicas). Each node keeps a local index fed by a watch of the bucket, so a
 * SUBSCRIBE matches locally: it neither waits on the network nor stops while JetStream elects a
 * leader. A write updates the local index at once and the bucket durably; the PUBACK of a
 * retained QoS 1/2 publish waits for it (`afterDurable`). An empty payload purges the key, on
 * every node [MQTT-3.3.1-10 v3.1.1][MQTT-3.3.1-6 v5].
 */
import { createHash } from "node:crypto";
import type { KV, KvWatchEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/nats-core";
import type { Message } from "../broker/message.ts";
import { MemoryRetained, type RetainedStore } from "../broker/retained.ts";
import { DurableWrites } from "./durable.ts";
import { decodeEnvelope, encodeEnvelope } from "./envelope.ts";
import type { ClusterNode } from "./node.ts";
import { keyTopic, MAX_SUBJECT, topicKey } from "./subject.ts";

/** The longest a SUBSCRIBE waits for the retained index to catch up with the bucket. */
const SYNC_MS = 500;

/** The KV key of a topic: its subject form, or a hash for topics too long for a subject. */
export function retainedKey(topic: string): string {
  const k = topicKey(topic);
  return k.length <= MAX_SUBJECT - 64 ? k : "h." + createHash("sha256").update(topic).digest("hex");
}

/** The cluster-wide retained store. */
export class KvRetained implements RetainedStore {
  readonly durable = true;
  readonly #node: ClusterNode;
  /** The bucket revision the local index has reached through the watch. */
  #revision = 0;
  readonly #index = new MemoryRetained();
  readonly #durable = new DurableWrites();
  #kv: KV | null = null;
  #watch: QueuedIterator<KvWatchEntry> | null = null;
  #stopped = false;
  /** Resolves once the watch has delivered every value the bucket held when it started. */
  #loaded: Promise<void> = Promise.resolve();

  constructor(node: ClusterNode) {
    this.#node = node;
  }

  get size(): number {
    return this.#index.size;
  }

  get bytes(): number {
    return this.#index.bytes;
  }

  /** Opens the bucket and starts the watch; resolves when the initial values are indexed. */
  async start(): Promise<void> {
    this.#kv = await this.#node.kv(`${this.#node.cfg.name}_retained`);
    let loaded!: () => void;
    this.#loaded = new Promise((r) => (loaded = r));
    const status = await this.#kv.status();
    let pending = status.values;
    if (pending === 0) loaded();
    this.#watch = await this.#kv.watch();
    (async () => {
      for await (const e of this.#watch!) {
        this.#apply(e);
        if (pending > 0 && !e.isUpdate && --pending === 0) loaded();
        if (e.isUpdate && pending > 0) {
          pending = 0;
          loaded();
        }
      }
    })().catch((e) => {
      if (!this.#stopped) this.#node.log.error(`Cluster: retained watch ended: ${e}`);
    });
    await Promise.race([this.#loaded, new Promise((r) => setTimeout(r, 10_000))]);
  }

  #apply(e: KvWatchEntry): void {
    if (e.revision > this.#revision) this.#revision = e.revision;
    this.#caughtUp();
    if (e.operation !== "PUT") {
      // A delete or purge carries no topic: remove whichever local entry has this key.
      const topic = this.#topicOfKey(e.key);
      if (topic !== null) this.#index.set(emptyMessage(topic));
      return;
    }
    try {
      const { msg } = decodeEnvelope(e.value, null);
      msg.payload = msg.payload.slice();
      this.#index.set(msg);
    } catch (err) {
      this.#node.log.warning(
        `Cluster: retained entry ${e.key} unreadable: ${(err as Error).message}`,
      );
    }
  }

  /** Topics whose key has been seen (needed to apply purges of hashed keys). */
  readonly #keyTopics = new Map<string, string>();

  #topicOfKey(key: string): string | null {
    const t = this.#keyTopics.get(key);
    if (t !== undefined) {
      this.#keyTopics.delete(key);
      return t;
    }
    return key.startsWith("h.") ? null : keyTopic(key);
  }

  set(msg: Message): void {
    this.#index.set(msg);
    const kv = this.#kv;
    // $SYS is each node's own status: never shared.
    if (!kv || this.#stopped || msg.topic.startsWith("$SYS/")) return;
    const key = retainedKey(msg.topic);
    if (key.startsWith("h.")) {
      if (msg.payload.length) this.#keyTopics.set(key, msg.topic);
    }
    const data = msg.payload.length ? encodeEnvelope(msg, this.#node.num, 0, true) : null;
    this.#durable.track(this.#write(kv, key, data));
  }

  async #write(kv: KV, key: string, data: Uint8Array | null): Promise<void> {
    let wait = 50;
    for (let attempt = 1; !this.#stopped; attempt++) {
      try {
        if (data) await kv.put(key, data);
        else await kv.purge(key);
        return;
      } catch (e) {
        if (attempt === 1 || attempt % 20 === 0) {
          this.#node.log.warning(
            `Cluster: retained write failed (${
              (e as Error).message
            }); retrying, its acknowledgement waits.`,
          );
        }
        await new Promise((r) => setTimeout(r, wait));
        wait = Math.min(wait * 2, 1000);
      }
    }
  }

  match(filter: string, now: number): Message[] {
    return this.#index.match(filter, now);
  }

  /** Waiting for the watch to reach a revision: [revision, resolve]. */
  #waiting: [number, () => void][] = [];

  #caughtUp(): void {
    if (this.#waiting.length === 0) return;
    const rest: [number, () => void][] = [];
    for (const w of this.#waiting) {
      if (w[0] <= this.#revision) w[1]();
      else rest.push(w);
    }
    this.#waiting = rest;
  }

  /**
   * Resolves once the local index has every write the bucket had acknowledged when this was
   * called (so a retained message whose PUBACK left on another node is seen by a SUBSCRIBE here).
   * Asking the bucket is one JetStream request; when it does not answer within SYNC_MS (no leader
   * during an election) the index is used as it is.
   */
  sync(): Promise<void> | null {
    const kv = this.#kv;
    if (!kv || this.#stopped) return null;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, SYNC_MS);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      kv.status().then((st) => {
        const last = st.streamInfo.state.last_seq;
        if (last <= this.#revision) done();
        else this.#waiting.push([last, done]);
      }, done);
    });
  }

  /** Like the fabric's: runs `cb` once every retained write so far is stored. */
  afterDurable(cb: (ok: boolean) => void): boolean {
    return this.#durable.after(cb);
  }

  stop(): void {
    this.#stopped = true;
    this.#durable.stop();
    this.#watch?.stop();
  }
}

/** A retained message with an empty payload: clears its topic in the index. */
function emptyMessage(topic: string): Message {
  return { topic, payload: new Uint8Array(0), qos: 0, retain: true, expiresAt: 0, origin: "" };
}
