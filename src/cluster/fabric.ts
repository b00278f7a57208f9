/**
 * The cluster's fabric over NATS.
 *
 * - **Interest.** One NATS subscription per distinct filter this node's sessions hold
 *   (reference-counted by the router), on the subscribing connection. `$share/g/f` becomes a
 *   queue subscription, so NATS gives each message to one node with members of `g`, and that
 *   node picks one local member. Filters too long for a subject are covered by the overflow
 *   subscription, which every node holds.
 * - **Forwarding.** A local publish is sent once, whatever the number of remote subscribers: QoS
 *   0 as a core NATS message, QoS 1/2 through JetStream (stream `N_msgs`, de-duplicated by
 *   message id), so it is stored with its replicas before the PUBACK/PUBREC leaves
 *   (`afterDurable`). Many JetStream publishes are in flight at once; a failed one (no leader
 *   during an election, a lost connection) is retried until it is stored.
 * - **Batches.** Messages forwarded one after the other on one subject (a burst of one
 *   publisher, read from its socket at once) go out as one NATS message, at the end of the
 *   current task or at `BATCH_MAX` messages or `BATCH_BYTES`; a message on another subject, or of
 *   the other kind (QoS 0, QoS 1/2), sends the open batch first, so this node's messages leave in
 *   publish order. A QoS 1/2 batch is one JetStream store (one message id, one replication for
 *   them all), and each message's PUBACK/PUBREC waits for it.
 * - **No echo.** A node ignores its own messages on plain subscriptions (the broker delivered
 *   them locally already) but takes them on queue subscriptions (its members are in the draw).
 * - **Once per node.** A message matching several filters of this node arrives once per NATS
 *   subscription, and a QoS 1/2 message whose store was retried arrives again, maybe after later
 *   ones: only the first copy of each origin's sequence number is delivered (`SeenSequences`).
 * - **Barrier.** Before a SUBACK, `barrier()` makes sure every node's NATS server knows the new
 *   subscriptions, so nothing published after the SUBACK misses them.
 * - **Catching up.** While this node's subscribing connection is away from NATS, messages other
 *   nodes publish do not reach it. When it is back, it reads the QoS 1/2 messages the stream
 *   stored since (`readStream`) and delivers those it has not had, before the ones arriving
 *   meanwhile (for up to `HOLD_MS`: while the stream elects a leader, the new ones go on and the
 *   old ones follow); nothing acknowledged is lost to a node that was cut off for a while.
 */
import { createHash } from "node:crypto";
import type { Msg, Subscription } from "@nats-io/nats-core";
import { RetentionPolicy, StorageType } from "@nats-io/jetstream";
import type { Fabric, FabricSink } from "../broker/fabric.ts";
import { FABRIC_SEQ, fabricId, type Message } from "../broker/message.ts";
import { topicMatches } from "../broker/topic.ts";
import { DurableWrites } from "./durable.ts";
import { JetStreamPublisher } from "./js_publish.ts";
import { SeenSequences } from "./seen.ts";
import {
  BatchWriter,
  DecodeCache,
  decodeEnvelope,
  envelopeNode,
  isBatch,
  splitBatch,
} from "./envelope.ts";
import type { ClusterNode } from "./node.ts";
import { filterSubject, topicSubject } from "./subject.ts";
import { readStream, REPLAY_MARGIN_MS } from "./replay.ts";
import type { Envelope } from "./envelope.ts";
import type { Status } from "@nats-io/nats-core";

/** Messages kept in the stream (for recovery and offline sessions), at most this long. */
const STREAM_MAX_AGE_NS = 24 * 3600 * 1e9;
/** Origin nodes whose sequence numbers are remembered (the oldest is forgotten beyond it). */
const MAX_ORIGINS = 64;
/** Room kept for the envelope beyond topic, properties and payload. */
const ENVELOPE_SLACK = 64;
/** QoS 1/2 messages held while catching up; beyond, they are delivered as they come. */
const MAX_HELD = 100_000;
/** How long messages arriving while catching up wait behind the older ones read from the stream. */
const HOLD_MS = 1000;
/** Reads of the stream (a second apart) before catching up is given up. */
const CATCH_UP_ATTEMPTS = 30;
/** QoS 0 messages at most in one batch, and its size at most (below any NATS max_payload). */
const BATCH_MAX = 256;
const BATCH_BYTES = 64 * 1024;
/** Subjects cached per topic (the cache starts over when full). */
const SUBJECT_CACHE = 4096;

/** One NATS subscription for a (group, filter) and how many local subscriptions share it. */
interface Interest {
  count: number;
  sub: Subscription | null;
}

/** The fabric of a cluster node. */
export class NatsFabric implements Fabric {
  readonly distributed = true;
  readonly #node: ClusterNode;
  #sink: FabricSink | null = null;
  readonly #interest = new Map<string, Interest>();
  /** The sequence numbers delivered from each origin node (duplicate copies are skipped). */
  readonly #seen = new Map<number, SeenSequences>();
  /** When the subscribing connection lost NATS (0 while connected). */
  #lostAt = 0;
  /** QoS 1/2 messages that arrived while catching up (null when not catching up). */
  #held: Msg[] | null = null;
  /** Messages found again in the stream after a loss of NATS, for metrics. */
  caughtUp = 0;
  readonly #durable = new DurableWrites();
  #seq = 0;
  /** Times `#seq` wrapped (part of JetStream message ids, so they stay unique). */
  #wraps = 0;
  /** Interest added since the last barrier. */
  #dirty = false;
  #stopped = false;
  #overflow: Subscription | null = null;
  /** QoS 1/2 stores, pipelined on the publishing connection. */
  #js: JetStreamPublisher | null = null;
  /** The QoS 0 batch being filled: its subject, envelopes and their bytes. */
  #batchSubject = "";
  readonly #batch = new BatchWriter();
  #flushQueued = false;
  /** The last topic and origin decoded from another node. */
  readonly #decoded = new DecodeCache();
  readonly #flushTask = () => {
    this.#flushQueued = false;
    this.#flushBatch();
  };
  /** The QoS 1/2 batch being filled: its subject, message id, and the store its messages await. */
  readonly #stored = new BatchWriter();
  #storedSubject = "";
  #storedId = "";
  #storedDone: { resolve: () => void; reject: (e: Error) => void } | null = null;
  #storedQueued = false;
  readonly #storedTask = () => {
    this.#storedQueued = false;
    this.#flushStored();
  };
  /** The subject of each recent topic, QoS 0 and QoS 1/2. */
  readonly #subjects = [new Map<string, string>(), new Map<string, string>()];
  /** Messages forwarded / received, for metrics. */
  forwarded = 0;
  received = 0;

  constructor(node: ClusterNode) {
    this.#node = node;
  }

  /** QoS 1/2 messages sent to JetStream and not yet stored (their acknowledgements wait). */
  get pending(): number {
    return this.#durable.pending;
  }

  get maxMessageBytes(): number {
    const max = this.#node.pub?.info?.max_payload ?? 1024 * 1024;
    return max - ENVELOPE_SLACK;
  }

  /** The stream that holds QoS 1/2 messages. */
  get streamName(): string {
    return `${this.#node.cfg.name}_msgs`;
  }

  async start(sink: FabricSink): Promise<void> {
    this.#sink = sink;
    const node = this.#node;
    await node.ensureStream({
      name: this.streamName,
      subjects: [`${node.data}.q.>`],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      max_age: STREAM_MAX_AGE_NS,
      duplicate_window: 120 * 1e9,
    });
    // Topics too long for a subject of their own, both kinds.
    this.#overflow = node.sub.subscribe(`${node.data}.*.x`, {
      callback: (_e, m) => this.#onPlain(m, null),
    });
    // Interest added before start (sessions restored from disk).
    for (const [key, i] of this.#interest) if (!i.sub) i.sub = this.#subscribe(key);
    await node.sub.flush();
    this.#watchConnection();
  }

  /** Notes when the subscribing connection loses NATS, and catches up when it is back. */
  #watchConnection(): void {
    const node = this.#node;
    (async () => {
      for await (const s of node.sub.status() as AsyncIterable<Status>) {
        if (this.#stopped) return;
        if (s.type === "disconnect") this.#lostAt ||= Date.now();
        else if (s.type === "reconnect" && this.#lostAt) {
          const lostAt = this.#lostAt;
          this.#lostAt = 0;
          await this.#catchUp(lostAt);
        }
      }
    })().catch((e) => node.log.warning(`Cluster: watching the NATS connection ended: ${e}`));
  }

  /**
   * Reads the stream from shortly before `lostAt` and delivers the QoS 1/2 messages of other
   * nodes not delivered yet; those arriving meanwhile wait, then follow in order.
   */
  async #catchUp(lostAt: number): Promise<void> {
    const node = this.#node;
    this.#held = [];
    // Order waits only so long: if the stream cannot be read at once (its leader is being
    // elected), what arrives goes on, and the older messages follow when they are found.
    const release = setTimeout(() => this.#release(), HOLD_MS);
    let found = 0;
    try {
      // The stream may be electing a leader when this node comes back: try again for a while
      // (what arrives meanwhile waits, up to MAX_HELD messages).
      for (let attempt = 1;; attempt++) {
        try {
          await readStream(node, lostAt - REPLAY_MARGIN_MS, (env) => {
            if (this.#fresh(env)) {
              found++;
              this.#deliver(env);
            }
          });
          break;
        } catch (e) {
          if (this.#stopped || attempt >= CATCH_UP_ATTEMPTS) throw e;
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
      this.caughtUp += found;
      node.log.notice(`Cluster: caught up with ${found} messages stored while NATS was away.`);
    } catch (e) {
      node.log.warning(
        `Cluster: reading the messages stored while NATS was away failed: ${(e as Error).message}`,
      );
    } finally {
      clearTimeout(release);
      this.#release();
    }
  }

  /** Delivers the messages held while catching up, and holds no more. */
  #release(): void {
    const held = this.#held ?? [];
    this.#held = null;
    for (const m of held) this.#onPlain(m, null);
  }

  stop(): Promise<void> {
    this.#flushBatch();
    this.#flushStored();
    this.#stopped = true;
    this.#durable.stop();
    this.#js?.stop();
    for (const i of this.#interest.values()) i.sub?.unsubscribe();
    this.#overflow?.unsubscribe();
    return Promise.resolve();
  }

  stamp(msg: Message): void {
    let seq = this.#seq + 1;
    if (seq === FABRIC_SEQ) {
      seq = 0;
      this.#wraps++;
    }
    this.#seq = seq;
    msg.fid = fabricId(this.#node.num, seq);
    if (msg.qos > 0) msg.at = Date.now();
  }

  forward(msg: Message): void {
    const node = this.#node;
    if (this.#stopped || !node.pub) return;
    const seq = (msg.fid ?? 0) % FABRIC_SEQ;
    this.forwarded++;
    if (msg.qos === 0) {
      this.#batchPlain(this.#subjectOf(0, msg.topic), msg, seq);
      return;
    }
    this.#flushBatch();
    this.#batchStored(this.#subjectOf(1, msg.topic), msg, seq);
  }

  /** Adds a QoS 1/2 message to the batch stored on `subject` (storing the open one if another). */
  #batchStored(subject: string, msg: Message, seq: number): void {
    const batch = this.#stored;
    if (batch.count && subject !== this.#storedSubject) this.#flushStored();
    if (!batch.count) this.#openStored(subject, seq);
    batch.add(msg, this.#node.num, seq);
    // Over the size: what came before is stored, this one starts the next batch.
    if (batch.count > 1 && batch.size > BATCH_BYTES) {
      this.#storeOpen(batch.take(true));
      this.#openStored(subject, seq);
    }
    if (batch.count >= BATCH_MAX || batch.size > BATCH_BYTES) this.#flushStored();
    else if (!this.#storedQueued) {
      this.#storedQueued = true;
      queueMicrotask(this.#storedTask);
    }
  }

  /**
   * A new QoS 1/2 batch on `subject`, starting with this node's `seq`-th message: its message id
   * (the first message's), and the store that the acknowledgements of its messages wait for.
   */
  #openStored(subject: string, seq: number): void {
    const num = this.#node.num.toString(36);
    this.#storedSubject = subject;
    this.#storedId = `${num}-${this.#wraps.toString(36)}-${seq.toString(36)}`;
    this.#durable.track(
      new Promise<void>((resolve, reject) => (this.#storedDone = { resolve, reject })),
    );
  }

  /** Stores the open QoS 1/2 batch. */
  #flushStored(): void {
    if (this.#stored.count) this.#storeOpen(this.#stored.take());
  }

  #storeOpen(data: Uint8Array): void {
    const done = this.#storedDone!;
    this.#storedDone = null;
    this.#store(this.#storedSubject, data, this.#storedId).then(done.resolve, done.reject);
  }

  /** The subject of a message on `topic`, QoS 0 (`kind` 0) or QoS 1/2 (1). */
  #subjectOf(kind: 0 | 1, topic: string): string {
    const cache = this.#subjects[kind];
    let s = cache.get(topic);
    if (s === undefined) {
      const prefix = `${this.#node.data}.${kind ? "q" : "m"}`;
      s = topicSubject(prefix, topic) ?? `${prefix}.x`;
      if (cache.size >= SUBJECT_CACHE) cache.clear();
      cache.set(topic, s);
    }
    return s;
  }

  /** Adds a QoS 0 message to the batch of `subject` (sending the open one if it is another). */
  #batchPlain(subject: string, msg: Message, seq: number): void {
    // QoS 1/2 messages published before it leave first (publish order).
    if (this.#stored.count) this.#flushStored();
    const batch = this.#batch;
    if (batch.count && subject !== this.#batchSubject) this.#flushBatch();
    this.#batchSubject = subject;
    batch.add(msg, this.#node.num, seq);
    // Over the size: what came before goes, this one starts the next batch.
    if (batch.count > 1 && batch.size > BATCH_BYTES) this.#send(batch.take(true));
    if (batch.count >= BATCH_MAX || batch.size > BATCH_BYTES) this.#flushBatch();
    else if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(this.#flushTask);
    }
  }

  /** Sends the open batch: one envelope as it is, several as a batch. */
  #flushBatch(): void {
    if (this.#batch.count) this.#send(this.#batch.take());
  }

  #send(data: Uint8Array): void {
    try {
      this.#node.pub.publish(this.#batchSubject, data);
    } catch { /* QoS 0 while NATS is away: at most once */ }
  }

  /** Publishes to the stream until it is stored (same message id on every try). */
  async #store(subject: string, data: Uint8Array, msgID: string): Promise<void> {
    let wait = 50;
    for (let attempt = 1;; attempt++) {
      if (this.#stopped) throw new Error("cluster stopped");
      try {
        this.#js ??= new JetStreamPublisher(this.#node.pub);
        await this.#js.publish(subject, data, msgID);
        return;
      } catch (e) {
        if (this.#stopped) throw e;
        if (attempt === 1 || attempt % 20 === 0) {
          this.#node.log.warning(
            `Cluster: storing a message in JetStream failed (${
              (e as Error).message
            }); retrying, its acknowledgement waits.`,
          );
        }
        await new Promise((r) => setTimeout(r, wait));
        wait = Math.min(wait * 2, 1000);
      }
    }
  }

  addInterest(topicFilter: string, group: string): void {
    const key = group + "\u0000" + topicFilter;
    const i = this.#interest.get(key);
    if (i) {
      i.count++;
      return;
    }
    this.#interest.set(key, { count: 1, sub: this.#node.sub ? this.#subscribe(key) : null });
    this.#dirty = true;
  }

  removeInterest(topicFilter: string, group: string): void {
    const key = group + "\u0000" + topicFilter;
    const i = this.#interest.get(key);
    if (!i) return;
    if (--i.count > 0) return;
    this.#interest.delete(key);
    i.sub?.unsubscribe();
  }

  #subscribe(key: string): Subscription | null {
    const node = this.#node;
    const cut = key.indexOf("\u0000");
    const group = key.slice(0, cut);
    const topicFilter = key.slice(cut + 1);
    const subject = filterSubject(`${node.data}.*`, topicFilter);
    if (!group) {
      // A filter too long for a subject: its topics all travel on the overflow subject.
      if (subject === null) return null;
      return node.sub.subscribe(subject, { callback: (_e, m) => this.#onPlain(m, null) });
    }
    const queue = "g" + createHash("sha256").update(key).digest("hex").slice(0, 24);
    return node.sub.subscribe(subject ?? `${node.data}.*.x`, {
      queue,
      callback: (_e, m) => this.#onShared(m, group, topicFilter),
    });
  }

  barrier(): Promise<void> | null {
    if (!this.#dirty || !this.#node.sub) return null;
    this.#dirty = false;
    return this.#node.barrier();
  }

  afterDurable(cb: (ok: boolean) => void): boolean {
    return this.#durable.after(cb);
  }

  #decode(data: Uint8Array, subject: string) {
    try {
      return decodeEnvelope(data, null, this.#decoded);
    } catch (e) {
      this.#malformed(subject, e);
      return null;
    }
  }

  #malformed(subject: string, e: unknown): void {
    this.#node.log.warning(
      `Cluster: malformed message on ${subject} dropped: ${(e as Error).message}`,
    );
  }

  /** The envelopes of a NATS message (one, or a batch's). */
  #envelopes(m: Msg): Uint8Array[] {
    const data = m.data;
    if (!isBatch(data)) return [data];
    try {
      return splitBatch(data);
    } catch (e) {
      this.#malformed(m.subject, e);
      return [];
    }
  }

  #onPlain(m: Msg, _unused: null): void {
    const held = this.#held;
    if (held !== null && held.length < MAX_HELD && m.subject.startsWith(this.#node.data + ".q.")) {
      held.push(m);
      return;
    }
    const data = m.data;
    if (!isBatch(data)) return this.#plainOne(data, m.subject);
    for (const e of this.#envelopes(m)) this.#plainOne(e, m.subject);
  }

  #plainOne(data: Uint8Array, subject: string): void {
    // This node's own messages (delivered here already) are not decoded.
    if (envelopeNode(data) === this.#node.num) return;
    const env = this.#decode(data, subject);
    // Several subscriptions of this node may match one message, and a retried store sends it
    // again: deliver the first copy only.
    if (!env || !this.#fresh(env)) return;
    if (env.msg.qos > 0) env.msg.at = Date.now();
    this.#deliver(env);
  }

  /** Whether `env` is another node's message not delivered here yet (noting it as delivered). */
  #fresh(env: Envelope): boolean {
    if (env.node === this.#node.num) return false;
    let seen = this.#seen.get(env.node);
    if (!seen) {
      if (this.#seen.size >= MAX_ORIGINS) this.#seen.delete(this.#seen.keys().next().value!);
      this.#seen.set(env.node, seen = new SeenSequences());
    }
    return seen.first(env.seq);
  }

  #deliver(env: Envelope): void {
    this.received++;
    try {
      this.#sink?.fromRemote(env.msg);
    } catch (e) {
      this.#node.log.error(`Cluster: delivering a message on ${env.msg.topic} failed: ${e}`);
    }
  }

  #onShared(m: Msg, group: string, topicFilter: string): void {
    for (const e of this.#envelopes(m)) this.#sharedOne(e, m.subject, group, topicFilter);
  }

  #sharedOne(data: Uint8Array, subject: string, group: string, topicFilter: string): void {
    const env = this.#decode(data, subject);
    if (!env) return;
    // The overflow subject carries every long topic: only those of this group's filter count.
    if (subject.endsWith(".x") && !topicMatches(topicFilter, env.msg.topic)) return;
    if (env.msg.qos > 0) env.msg.at = Date.now();
    try {
      this.#sink?.fromRemoteShared(group, topicFilter, env.msg);
    } catch (e) {
      this.#node.log.error(`Cluster: delivering a shared message on ${env.msg.topic} failed: ${e}`);
    }
  }
}
