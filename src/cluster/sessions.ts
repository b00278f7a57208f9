/**
 * One owner per client id, cluster-wide: a JetStream KV bucket (`N_sessions`) maps each client
 * id to the node that holds its session, written by compare-and-set.
 *
 * A CONNECT on node B for a client id that node A owns:
 * 1. B asks A (`N.c.kick.A`) to let the client go. A disconnects it (v5 DISCONNECT 0x8E Session
 *    taken over [MQTT-3.1.4-3 v5]), takes the session out of its tables and answers with the
 *    session's record: subscriptions, queue, in-flight messages and QoS 2 state.
 * 2. B writes itself as the owner, expecting the revision it read. If another node wrote in
 *    between (simultaneous CONNECTs), B starts again from 1, so exactly one node ends up with
 *    the client.
 * 3. B rebuilds the session from the record and the client resumes it (Session Present 1).
 *
 * A node whose heartbeat has stopped is not asked: its client ids are taken over without a
 * record. CONNECTs of one client id on one node are handled one at a time.
 */
import { type KV, type KvEntry, type KvWatchEntry, KvWatchInclude } from "@nats-io/kv";
import type { Msg, QueuedIterator, Subscription } from "@nats-io/nats-core";
import type { Handover, SessionRegistry } from "../broker/registry.ts";
import type { StoredClientMessage } from "../store/types.ts";
import type { SessionRecord } from "../broker/restore.ts";
import type { ClusterNode } from "./node.ts";
import { decodeMessages, decodeRecord, encodeMessages, encodeRecord } from "./session_record.ts";
import { levelToken, MAX_SUBJECT } from "./subject.ts";
import { createHash } from "node:crypto";

/** Attempts at compare-and-set before a CONNECT is refused. */
const ATTEMPTS = 8;
/** How long the previous owner has to answer. */
const KICK_TIMEOUT_MS = 3000;

/** Sessions handed over at once when a node stops. */
const EVACUATE_PARALLEL = 16;

/** What a stopping node sends the node it hands a session to. */
interface AdoptRequest {
  op: "adopt" | "delta";
  clientId: string;
  /** The stopping node. */
  by: string;
  /** "adopt": the session's record (`encodeRecord`). */
  record?: string;
  /** "delta": what was queued since (`encodeMessages`). */
  messages?: unknown;
}

/** The value kept per client id. */
interface Owner {
  /** The client id (keys of long ids are hashes). */
  id: string;
  node: string;
  num: number;
  t: number;
  /** While its client is connected with a will: the session's record with it (`encodeRecord`). */
  rec?: string;
}

/** What this node does when another takes one of its client ids. */
export interface HandOver {
  /** Whether a session of `clientId` is on this node. */
  owns(clientId: string): boolean;
  /**
   * Disconnect the client of `key` (if connected here) and return its session's record (null
   * when there is none, or it was not persistent); a recorded session waits for `releaseMoved`.
   */
  handOver(key: string): SessionRecord | null;
  /** The session recorded by `handOver` leaves: the messages queued for it since. */
  releaseMoved(key: string): StoredClientMessage[];
  /** Keys of the sessions this node holds. */
  sessionKeys(): string[];
  /** Rebuilds a session handed over by another node; it is offline until its client comes. */
  adoptOffline(rec: SessionRecord): { queued: number };
  /** Adds what the previous owner queued for an adopted session since recording it. */
  mergeMoved(key: string, at: number, delta: StoredClientMessage[]): void;
  /**
   * The will of a client whose node died, found as its client comes back here: sent now unless
   * the new connection resumes the session within the will delay (`clean` false and a delay).
   */
  orphanWill(rec: SessionRecord, clean: boolean): void;
  /** Ends a session adopted here that another node took in the meantime. */
  drop(key: string): void;
  /** Resolves once every node knows this node's subscriptions. */
  interestEverywhere(): Promise<void>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The KV key of a client id. */
export function ownerKey(clientId: string): string {
  const t = "c." + levelToken(clientId);
  return t.length <= MAX_SUBJECT - 64
    ? t
    : "h." + createHash("sha256").update(clientId).digest("hex");
}

/** The cluster's session registry. */
export class KvSessions implements SessionRegistry {
  readonly distributed = true;
  readonly #node: ClusterNode;
  #kv: KV | null = null;
  #kick: Subscription | null = null;
  #watch: QueuedIterator<KvWatchEntry> | null = null;
  #local: HandOver | null = null;
  /** The last acquire of each client id on this node: the next one waits for it. */
  readonly #chains = new Map<string, Promise<unknown>>();
  /** Take-overs counted for metrics. */
  takeovers = 0;

  constructor(node: ClusterNode) {
    this.#node = node;
  }

  /** Called by the broker's wiring: how this node lets a client id go. */
  bind(local: HandOver): void {
    this.#local = local;
  }

  async start(): Promise<void> {
    const node = this.#node;
    this.#kv = await node.kv(`${node.cfg.name}_sessions`);
    node.onPeerLost((p) => {
      this.#claim(p).catch((e) => node.log.error(`Cluster: claiming node ${p.id} failed: ${e}`));
    });
    this.#kick = node.sub.subscribe(`${node.control}.kick.${node.id}`, {
      callback: (_e, m) => this.#onKick(m),
    });
    await node.sub.flush();
    // A node that missed a kick (it was slow, or seemed gone) still learns that it lost a client
    // id: every change of owner is watched, and a client of an id owned elsewhere is let go.
    this.#watch = await this.#kv.watch({ include: KvWatchInclude.UpdatesOnly });
    (async () => {
      for await (const e of this.#watch!) {
        if (e.operation !== "PUT") continue;
        const owner = parseOwner(e.value);
        if (!owner || (owner.node === node.id && owner.num === node.num)) continue;
        const s = this.#local?.owns(owner.id);
        if (s && !this.#chains.has(owner.id)) {
          node.log.notice(`Cluster: client ${owner.id} was taken over by node ${owner.node}.`);
          // Nobody asked for the record: the session simply leaves.
          this.#local!.handOver(owner.id);
          this.#local!.releaseMoved(owner.id);
        }
      }
    })().catch((e) => node.log.error(`Cluster: session watch ended: ${e}`));
  }

  stop(): Promise<void> {
    this.#watch?.stop();
    this.#kick?.unsubscribe();
    return Promise.resolve();
  }

  acquire(clientId: string, clean: boolean): Promise<Handover | null> {
    const prev = this.#chains.get(clientId) ?? Promise.resolve();
    const run = prev.then(
      () => this.#acquire(clientId, clean),
      () => this.#acquire(clientId, clean),
    );
    const tail = run.catch(() => {});
    this.#chains.set(clientId, tail);
    tail.then(() => {
      if (this.#chains.get(clientId) === tail) this.#chains.delete(clientId);
    });
    return run;
  }

  async #acquire(clientId: string, clean: boolean): Promise<Handover | null> {
    const kv = this.#kv;
    if (!kv) throw new Error("the session registry is not started");
    const node = this.#node;
    const key = ownerKey(clientId);
    let record: SessionRecord | null = null;
    let from = "";
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const entry = await kv.get(key);
      const owner = ownerOf(entry);
      /** The owner did not answer (it died): its client's will is this node's to deal with. */
      let orphan: Owner | null = null;
      if (owner && owner.node !== node.id) {
        const alive = node.livePeers().some((p) => p.id === owner.node && p.num === owner.num);
        const got = alive ? await this.#askToLetGo(owner.node, clientId) : undefined;
        if (got) {
          record = got;
          from = owner.node;
        } else if (got === undefined) orphan = owner;
      } else if (owner && owner.num !== node.num) orphan = owner; // This node, before a restart.
      const value = this.#ownerValue(clientId, Date.now());
      try {
        if (entry) await kv.update(key, value, entry.revision);
        else await kv.create(key, value);
        if (owner && owner.node !== node.id) this.takeovers++;
        // The write made this node the will's only keeper: a dead owner's client left it when
        // its connection died [MQTT-3.1.2-8], unless the new connection resumes the session
        // within the will delay [MQTT-3.1.3-9 v5].
        if (orphan?.rec) this.#local?.orphanWill(decodeRecord(orphan.rec), clean);
        if (!record) return null;
        const prev = from;
        if (clean) {
          // A clean start discards the session [MQTT-3.1.2-6 v3.1.1][MQTT-3.1.2-4 v5]: the old owner may let it go now.
          void this.#finish(prev, clientId);
          return null;
        }
        return { record, finish: () => this.#finish(prev, clientId) };
      } catch (e) {
        // Someone else wrote in between: read again.
        if (!/wrong last sequence|exists/i.test(String((e as Error).message))) throw e;
        await new Promise((r) => setTimeout(r, Math.random() * 20 * attempt));
      }
    }
    throw new Error(`client id ${clientId} is being taken by other nodes`);
  }

  /** Tells the previous owner to let the session go; resolves with what it queued since. */
  async #finish(owner: string, clientId: string): Promise<StoredClientMessage[]> {
    const node = this.#node;
    try {
      const reply = await node.sub.request(
        `${node.control}.kick.${owner}`,
        enc.encode(JSON.stringify({ op: "done", clientId, by: node.id })),
        { timeout: KICK_TIMEOUT_MS },
      );
      const text = dec.decode(reply.data);
      return text ? decodeMessages(JSON.parse(text)) : [];
    } catch (e) {
      node.log.warning(
        `Cluster: node ${owner} did not send what it queued for ${clientId} while it moved (${
          (e as Error).message
        }).`,
      );
      return [];
    }
  }

  /** The session record the owner hands over, null when it has none, undefined if it does not answer. */
  async #askToLetGo(owner: string, clientId: string): Promise<SessionRecord | null | undefined> {
    const node = this.#node;
    try {
      const reply = await node.sub.request(
        `${node.control}.kick.${owner}`,
        enc.encode(JSON.stringify({ op: "take", clientId, by: node.id })),
        { timeout: KICK_TIMEOUT_MS },
      );
      const text = dec.decode(reply.data);
      return text ? decodeRecord(text) : null;
    } catch (e) {
      node.log.warning(
        `Cluster: node ${owner} did not hand over client ${clientId} (${
          (e as Error).message
        }); taking it.`,
      );
      return undefined;
    }
  }

  #onKick(m: Msg): void {
    let req: { op?: string; clientId: string };
    try {
      req = JSON.parse(dec.decode(m.data));
      if (typeof req.clientId !== "string") throw new Error("no clientId");
    } catch {
      return;
    }
    const clientId = req.clientId;
    let text = "";
    if (req.op === "adopt" || req.op === "delta") {
      this.#onAdopt(m, req as AdoptRequest);
      return;
    }
    try {
      if (req.op === "done") {
        text = JSON.stringify(encodeMessages(this.#local?.releaseMoved(clientId) ?? []));
      } else {
        const rec = this.#local?.handOver(clientId) ?? null;
        if (rec) text = encodeRecord(rec);
      }
    } catch (e) {
      this.#node.log.error(`Cluster: handing over client ${clientId} failed: ${e}`);
    }
    const max = this.#node.sub.info?.max_payload ?? 1024 * 1024;
    if (text.length > max - 1024) {
      this.#node.log.warning(
        `Cluster: the session of ${clientId} is too large to move (${text.length} bytes); it starts empty there.`,
      );
      text = "";
    }
    try {
      m.respond(enc.encode(text));
    } catch { /* the asking node gave up */ }
  }

  /** Sessions adopted from a stopping node: key → length of the recorded queue. */
  readonly #adopted = new Map<string, number>();

  /** Another node is stopping and hands this one a session (then what it queued since). */
  #onAdopt(m: Msg, req: AdoptRequest): void {
    const local = this.#local;
    const reply = (ok: boolean) => {
      try {
        m.respond(enc.encode(ok ? "ok" : "no"));
      } catch { /* the stopping node gave up */ }
    };
    if (!local) return reply(false);
    if (req.op === "delta") {
      const at = this.#adopted.get(req.clientId);
      this.#adopted.delete(req.clientId);
      if (at !== undefined) local.mergeMoved(req.clientId, at, decodeMessages(req.messages));
      return reply(at !== undefined);
    }
    (async () => {
      const kv = this.#kv!;
      const key = ownerKey(req.clientId);
      const rec = decodeRecord(req.record ?? "");
      if (local.owns(req.clientId)) return false;
      const { queued } = local.adoptOffline(rec);
      // This node owns it now, unless a client of the id went elsewhere meanwhile.
      const entry = await kv.get(key);
      const owner = ownerOf(entry);
      if (!entry || !owner || owner.node !== req.by) {
        local.drop(req.clientId);
        return false;
      }
      const value = this.#ownerValue(req.clientId, Date.now());
      try {
        await kv.update(key, value, entry.revision);
      } catch {
        local.drop(req.clientId);
        return false;
      }
      await local.interestEverywhere();
      this.#adopted.set(req.clientId, queued);
      return true;
    })().then(reply, (e) => {
      this.#node.log.error(`Cluster: adopting the session of ${req.clientId} failed: ${e}`);
      reply(false);
    });
  }

  /**
   * Hands every session of this node to the live peers (round robin), each in two steps like a
   * take-over: the record, then what was queued for it while the peer subscribed. Sessions no
   * peer takes stay (and are lost to the cluster if this node does not come back).
   */
  async evacuate(): Promise<void> {
    const local = this.#local;
    if (!local || !this.#kv) return;
    const node = this.#node;
    const peers = node.livePeers();
    const keys = local.sessionKeys();
    if (keys.length === 0) return;
    if (peers.length === 0) {
      node.log.warning(`Cluster: no other node to take ${keys.length} sessions at shutdown.`);
      return;
    }
    let next = 0;
    let moved = 0;
    const one = async (key: string) => {
      const rec = local.handOver(key);
      if (!rec) return;
      const peer = peers[next++ % peers.length].id;
      const ask = (body: AdoptRequest) =>
        node.sub.request(`${node.control}.kick.${peer}`, enc.encode(JSON.stringify(body)), {
          timeout: KICK_TIMEOUT_MS,
        }).then((r) => dec.decode(r.data) === "ok", () => false);
      const ok = await ask({ op: "adopt", clientId: key, by: node.id, record: encodeRecord(rec) });
      const delta = local.releaseMoved(key);
      if (!ok) return;
      await ask({ op: "delta", clientId: key, by: node.id, messages: encodeMessages(delta) });
      moved++;
    };
    const queue = [...keys];
    const workers = Array.from({ length: Math.min(EVACUATE_PARALLEL, queue.length) }, async () => {
      for (let k = queue.shift(); k !== undefined; k = queue.shift()) await one(k);
    });
    await Promise.all(workers);
    node.log.notice(`Cluster: handed ${moved} of ${keys.length} sessions to other nodes.`);
  }

  /** Keys whose owner entry holds a will (see `keepWill`). */
  readonly #wills = new Set<string>();
  /** The last will write of each key: the next one waits for it. */
  readonly #willWrites = new Map<string, Promise<void>>();

  keepWill(key: string, rec: SessionRecord | null): void {
    if (!this.#kv || (rec === null && !this.#wills.has(key))) return;
    if (rec) this.#wills.add(key);
    else this.#wills.delete(key);
    const text = rec ? encodeRecord(rec) : undefined;
    const prev = this.#willWrites.get(key) ?? Promise.resolve();
    const next = prev.then(() => this.#writeWill(key, text)).catch((e) => {
      this.#node.log.warning(`Cluster: keeping the will of ${key} failed: ${(e as Error).message}`);
    });
    this.#willWrites.set(key, next);
    next.then(() => {
      if (this.#willWrites.get(key) === next) this.#willWrites.delete(key);
    });
  }

  async #writeWill(key: string, rec: string | undefined): Promise<void> {
    const kv = this.#kv!;
    const node = this.#node;
    const k = ownerKey(key);
    for (let attempt = 0; attempt < 3; attempt++) {
      const entry = await kv.get(k);
      const owner = ownerOf(entry);
      if (!entry || !owner || owner.node !== node.id || owner.num !== node.num) return;
      try {
        await kv.update(k, this.#ownerValue(key, owner.t, rec), entry.revision);
        return;
      } catch { /* changed meanwhile: read again */ }
    }
  }

  /**
   * A node stopped beating. The first survivor to claim it (compare-and-set on a key of its
   * own) takes over the wills its connected clients left: each such session is rebuilt here,
   * offline since the node's last heartbeat, so its will goes out once its delay has run
   * [MQTT-3.1.3-9 v5] unless the client comes back first, and its expiry counts on.
   */
  async #claim(peer: { id: string; num: number; lastSeen: number }): Promise<void> {
    const kv = this.#kv;
    const local = this.#local;
    if (!kv || !local) return;
    const node = this.#node;
    try {
      await kv.create(
        `x.${peer.id}.${peer.num}`,
        enc.encode(JSON.stringify({ by: node.id, t: Date.now() })),
      );
    } catch {
      return; // Another survivor claimed it.
    }
    let wills = 0;
    const keys: string[] = [];
    for await (const k of await kv.keys()) {
      if (k.startsWith("c.") || k.startsWith("h.")) keys.push(k);
    }
    for (const k of keys) {
      const entry = await kv.get(k);
      const owner = ownerOf(entry);
      if (!entry || !owner || owner.node !== peer.id || owner.num !== peer.num || !owner.rec) {
        continue;
      }
      try {
        await kv.update(k, this.#ownerValue(owner.id, Date.now()), entry.revision);
      } catch {
        continue; // Its client came back somewhere meanwhile.
      }
      const rec = decodeRecord(owner.rec);
      rec.session.disconnectedAt = peer.lastSeen;
      if (local.owns(owner.id)) continue;
      local.adoptOffline(rec);
      wills++;
    }
    node.log.notice(`Cluster: took over ${wills} wills of the clients of node ${peer.id}.`);
  }

  /** The owner entry that names this node as the owner of `id` (with a will's record). */
  #ownerValue(id: string, t: number, rec?: string): Uint8Array {
    const o: Owner = { id, node: this.#node.id, num: this.#node.num, t };
    if (rec) o.rec = rec;
    return enc.encode(JSON.stringify(o));
  }

  release(clientId: string): void {
    const kv = this.#kv;
    if (!kv) return;
    const node = this.#node;
    const key = ownerKey(clientId);
    (async () => {
      const entry = await kv.get(key);
      const owner = ownerOf(entry);
      if (!entry || !owner || owner.node !== node.id || owner.num !== node.num) return;
      await kv.delete(key, { previousSeq: entry.revision });
    })().catch(
      () => {/* another node took it meanwhile, or NATS is away: the owner entry stays */},
    );
  }
}

/** The owner an entry of the bucket names (null: none, deleted, or unreadable). */
function ownerOf(entry: KvEntry | null): Owner | null {
  return entry && entry.operation === "PUT" ? parseOwner(entry.value) : null;
}

function parseOwner(v: Uint8Array): Owner | null {
  try {
    const o = JSON.parse(dec.decode(v));
    return typeof o?.node === "string" && typeof o.id === "string"
      ? {
        id: o.id,
        node: o.node,
        num: o.num >>> 0,
        t: o.t,
        rec: typeof o.rec === "string" ? o.rec : undefined,
      }
      : null;
  } catch {
    return null;
  }
}
