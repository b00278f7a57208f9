/**
 * This node's membership in a cluster: its NATS connections (one that publishes, one that
 * subscribes, so that a node hears its own messages on shared-group queue subscriptions), its
 * JetStream context, the peers it sees (heartbeats), and the subscribe barrier.
 *
 * Subjects (with `N` the cluster name):
 * - `N.d.m.<topic key>` QoS 0 messages, `N.d.q.<topic key>` QoS 1/2 (captured by the stream
 *   `N_msgs`), `N.d.m.x` / `N.d.q.x` messages whose topic is too long for a subject;
 * - `N.c.hb` heartbeats, `N.c.barrier.<node>` the barrier responder of each node,
 *   `N.c.kick.<node>` session take-over requests.
 */
import { randomBytes } from "node:crypto";
import type { Msg, NatsConnection, Subscription } from "@nats-io/nats-core";
import {
  jetstream,
  type JetStreamClient,
  type JetStreamManager,
  jetstreamManager,
  type StreamConfig,
} from "@nats-io/jetstream";
import { type KV, Kvm, type KvOptions } from "@nats-io/kv";
import type { ClusterConfig } from "../config/schema.ts";
import type { Logger } from "../sys/log.ts";
import { connectNats } from "./nats.ts";
import { VERSION } from "../version.ts";

/** Seconds between heartbeats. */
const HEARTBEAT_MS = 1000;
/** A peer not heard from for this long is taken as gone. */
export const PEER_TIMEOUT_MS = 5000;
/** How long stream and bucket creation waits for JetStream to place its replicas. */
const PLACEMENT_WAIT_MS = 15_000;
/** How long a SUBACK waits for the barrier at most before going out anyway. */
const BARRIER_TIMEOUT_MS = 2000;

/** Another node, as its heartbeats describe it. */
export interface Peer {
  id: string;
  /** Its random per-process number (origin of its messages). */
  num: number;
  /** Connected clients it reported. */
  clients: number;
  lastSeen: number;
  /** Its Midge version and start time (ms since the epoch), when it said. */
  version?: string;
  startedAt?: number;
}

/** What a heartbeat carries. */
interface Heartbeat {
  id: string;
  num: number;
  clients: number;
  v?: string;
  /** Its start time, ms since the epoch. */
  up?: number;
  /** Set when the sender wants every node to answer with a heartbeat at once. */
  hello?: boolean;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** This node in the cluster. */
export class ClusterNode {
  readonly cfg: ClusterConfig;
  readonly log: Logger;
  readonly id: string;
  /** Random per process: a restarted node is a new origin. */
  readonly num: number = randomBytes(4).readUInt32BE(0);
  readonly peers = new Map<string, Peer>();
  readonly startedAt = Date.now();
  /** Local connected clients, reported in heartbeats (set by the broker's wiring). */
  clients: () => number = () => 0;
  pub!: NatsConnection;
  sub!: NatsConnection;
  js!: JetStreamClient;
  jsm!: JetStreamManager;
  /** Replicas actually used (the configured count, lowered to the NATS cluster's size). */
  replicas: number;
  #timer: ReturnType<typeof setInterval> | null = null;
  #subs: Subscription[] = [];
  #stopped = false;
  /**
   * Whether the publishing connection, which carries the JetStream and KV requests, is connected
   * now (false from its loss until it is back).
   */
  natsUp = true;
  /** Called each time the publishing connection is back after a loss (see `onNatsBack`). */
  readonly #back: (() => void)[] = [];

  constructor(cfg: ClusterConfig, log: Logger) {
    this.cfg = cfg;
    this.log = log;
    this.id = cfg.node_id;
    this.replicas = cfg.replicas;
  }

  /** Subject prefix of message data. */
  get data(): string {
    return `${this.cfg.name}.d`;
  }

  /** Subject prefix of the cluster's control traffic. */
  get control(): string {
    return `${this.cfg.name}.c`;
  }

  /** Connects, joins the heartbeats and answers barriers. */
  async start(): Promise<void> {
    this.pub = await connectNats(this.cfg, "publish", this.log);
    this.sub = await connectNats(this.cfg, "subscribe", this.log);
    this.#watchPub(this.pub);
    this.js = jetstream(this.pub, { timeout: 5000 });
    this.jsm = await jetstreamManager(this.pub, { timeout: 5000, checkAPI: false });
    // The barrier responder lives on the publishing connection: a request from a subscribing
    // node reaches it through the same NATS routes as that node's subscriptions did.
    this.#subs.push(this.pub.subscribe(`${this.control}.barrier.${this.id}`, {
      callback: (_e, m) => void m.respond(),
    }));
    this.#subs.push(this.sub.subscribe(`${this.control}.hb`, {
      callback: (_e, m) => this.#heartbeat(m),
    }));
    await this.sub.flush();
    this.#beat(true);
    this.#timer = setInterval(() => this.#beat(false), HEARTBEAT_MS);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /** Runs `f` each time the publishing connection to NATS is back after a loss. */
  onNatsBack(f: () => void): void {
    this.#back.push(f);
  }

  #watchPub(nc: NatsConnection): void {
    (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect") this.natsUp = false;
        else if (s.type === "reconnect") {
          this.natsUp = true;
          for (const f of this.#back) {
            try {
              f();
            } catch (e) {
              this.log.error(`Cluster: resuming after NATS came back failed: ${e}`);
            }
          }
        }
      }
    })().catch(() => {});
  }

  /** Called with each peer that stops beating (see `onPeerLost`). */
  readonly #lost: ((p: Peer) => void)[] = [];

  /** Runs `f` with every peer whose heartbeat stops for PEER_TIMEOUT_MS (once per process). */
  onPeerLost(f: (p: Peer) => void): void {
    this.#lost.push(f);
  }

  #peerLost(p: Peer, why: string): void {
    this.log.warning(`Cluster: node ${p.id} is gone (${why}).`);
    for (const f of this.#lost) {
      try {
        f(p);
      } catch (e) {
        this.log.error(`Cluster: handling the loss of node ${p.id} failed: ${e}`);
      }
    }
  }

  #beat(hello: boolean): void {
    if (this.#stopped || this.pub.isClosed()) return;
    const now = Date.now();
    for (const p of [...this.peers.values()]) {
      if (now - p.lastSeen > PEER_TIMEOUT_MS) {
        this.peers.delete(p.id);
        this.#peerLost(p, `no heartbeat for ${Math.round((now - p.lastSeen) / 1000)} s`);
      }
    }
    const hb: Heartbeat = {
      id: this.id,
      num: this.num,
      clients: this.clients(),
      v: VERSION,
      up: this.startedAt,
    };
    if (hello) hb.hello = true;
    try {
      this.pub.publish(`${this.control}.hb`, enc.encode(JSON.stringify(hb)));
    } catch { /* reconnecting: the next beat goes out */ }
  }

  #heartbeat(m: Msg): void {
    let hb: Heartbeat;
    try {
      hb = JSON.parse(dec.decode(m.data));
    } catch {
      return;
    }
    if (typeof hb?.id !== "string" || hb.id === this.id) return;
    const known = this.peers.get(hb.id);
    if (!known) this.log.notice(`Cluster: node ${hb.id} joined.`);
    else if (known.num !== hb.num >>> 0) this.#peerLost(known, "it started again");
    this.peers.set(hb.id, {
      id: hb.id,
      num: hb.num >>> 0,
      clients: hb.clients | 0,
      lastSeen: Date.now(),
      version: typeof hb.v === "string" ? hb.v.slice(0, 64) : undefined,
      startedAt: typeof hb.up === "number" ? hb.up : undefined,
    });
    if (hb.hello) this.#beat(false);
  }

  /** Peers heard from recently. */
  livePeers(now = Date.now()): Peer[] {
    const out: Peer[] = [];
    for (const p of this.peers.values()) {
      if (now - p.lastSeen <= PEER_TIMEOUT_MS) out.push(p);
    }
    return out;
  }

  /**
   * Resolves once every live peer's NATS server has seen the subscriptions this node made so far:
   * a request to each peer's barrier responder, sent on the subscribing connection after them.
   * A peer that does not answer in time is logged and passed over.
   */
  async barrier(): Promise<void> {
    const peers = this.livePeers();
    if (peers.length === 0) return;
    await Promise.all(
      peers.map((p) =>
        this.sub.request(`${this.control}.barrier.${p.id}`, undefined, {
          timeout: BARRIER_TIMEOUT_MS,
        })
          .then(
            () => {},
            (e) => {
              if (this.log.on("debug")) this.log.debug(`Cluster: barrier to ${p.id}: ${e.message}`);
            },
          )
      ),
    );
  }

  /**
   * Creates or updates a stream. A replica count larger than the NATS cluster is lowered to
   * what it has, with one warning.
   */
  async ensureStream(config: Partial<StreamConfig> & { name: string }): Promise<void> {
    await this.#withReplicas((num_replicas) => this.#addOrUpdate({ ...config, num_replicas }));
  }

  async #addOrUpdate(config: Partial<StreamConfig> & { name: string }): Promise<void> {
    try {
      await this.jsm.streams.add(config);
    } catch (e) {
      if (!/already in use|exists/i.test(String((e as Error).message))) throw e;
      await this.jsm.streams.update(config.name, config);
    }
  }

  /** Opens (creating when needed) a KV bucket with this cluster's replica count. */
  async kv(bucket: string, opts: Partial<KvOptions> = {}): Promise<KV> {
    const kvm = new Kvm(this.js);
    let kv: KV | undefined;
    await this.#withReplicas(async (replicas) => {
      kv = await kvm.create(bucket, { history: 1, ...opts, replicas });
    });
    return kv!;
  }

  async #withReplicas(make: (replicas: number) => Promise<void>): Promise<void> {
    // Right after the NATS servers start, the JetStream meta group may not know every peer yet
    // ("no suitable peers"): that passes, so it is retried for a while before anything changes.
    const settle = Date.now() + PLACEMENT_WAIT_MS;
    for (;;) {
      try {
        await make(this.replicas);
        return;
      } catch (e) {
        const msg = String((e as Error).message);
        if (
          /no suitable peers|jetstream not (enabled|available)|timeout/i.test(msg) &&
          Date.now() < settle
        ) {
          await new Promise((r) => setTimeout(r, 250));
          continue;
        }
        if (
          this.replicas > 1 &&
          /replica|insufficient resources|non-clustered|suitable peers/i.test(msg)
        ) {
          this.log.warning(
            `Cluster: NATS cannot hold ${this.replicas} replicas (${msg}); trying ${
              this.replicas - 1
            }.`,
          );
          this.replicas--;
          continue;
        }
        throw e;
      }
    }
  }

  /** Leaves: stops heartbeats and closes both connections (after flushing them). */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    for (const s of this.#subs) s.unsubscribe();
    await Promise.allSettled([this.pub?.drain(), this.sub?.drain()]);
  }
}
