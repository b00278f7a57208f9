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
 * A node whose heartbeat has stopped (or that does not answer) is not asked. Its sessions live
 * on in the bucket: the owner entry of every persistent session holds the session's record
 * without messages (subscriptions, expiry; the will while connected) and a cursor, the time
 * before which it owed its client nothing (written each second for sessions whose oldest owed
 * message is older than that, with the node's watermark `w.<node>` after them). The node that
 * takes such a session rebuilds it from the record and reads what it is owed from the message
 * stream (src/cluster/replay.ts). CONNECTs of one client id on one node are handled one at a
 * time.
 *
 * A CONNECT whose owner entry cannot be read (NATS lost) is admitted on this node alone, and the
 * entry written once NATS is back (`#settle`, src/cluster/unowned.ts).
 */
import { type KV, type KvEntry, type KvWatchEntry, KvWatchInclude } from "@nats-io/kv";
import type { Msg, QueuedIterator, Subscription } from "@nats-io/nats-core";
import type { Handover, SessionRegistry } from "../broker/registry.ts";
import type { StoredClientMessage } from "../store/types.ts";
import type { SessionRecord } from "../broker/restore.ts";
import type { ClusterNode } from "./node.ts";
import { decodeMessages, decodeRecord, encodeMessages, encodeRecord } from "./session_record.ts";
import { type Owed, replay, REPLAY_MARGIN_MS, type ReplayTarget } from "./replay.ts";
import { levelToken, MAX_SUBJECT } from "./subject.ts";
import { RegistryUnreachable, Unowned, withinReach } from "./unowned.ts";
import { createHash } from "node:crypto";

/** Attempts at compare-and-set before a CONNECT is refused. */
const ATTEMPTS = 8;
/** How long the previous owner has to answer. */
const KICK_TIMEOUT_MS = 3000;

/** Sessions handed over at once when a node stops. */
const EVACUATE_PARALLEL = 16;
/** How often the cursors of this node's sessions and its watermark are written. */
const CURSOR_MS = 1000;
/** How long a completed QoS 2 message is remembered: longer than any replay reaches back. */
const DONE_MS = REPLAY_MARGIN_MS + 3 * CURSOR_MS;

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
  /**
   * A persistent session's record without messages, or a connected client's with its will
   * (`encodeRecord`).
   */
  rec?: string;
  /** The session's cursor (ms): it may owe its client messages the stream stored since then. */
  at?: number;
  /** QoS 2 messages (`Message.fid`) completed lately: not to be found again in the stream. */
  done?: number[];
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
  /** When the oldest QoS 1/2 message the session of `key` still owes reached this node, or null. */
  pendingSince(key: string): number | null;
  /** The QoS 1/2 deliveries of `msg` to the sessions `keys` of this node (see `Owed`). */
  owed: Owed;
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
  /** The deliveries a message read back from the stream gives sessions of this node. */
  readonly #owed: Owed = (keys, msg) => this.#local?.owed(keys, msg) ?? [];
  /** Sessions of a dead node resumed here, and messages found again for them, for metrics. */
  resumed = 0;
  replayed = 0;
  #timer: ReturnType<typeof setInterval> | null = null;
  /** Client ids admitted while the registry could not be reached (see src/cluster/unowned.ts). */
  readonly #unowned: Unowned;

  constructor(node: ClusterNode) {
    this.#node = node;
    this.#unowned = new Unowned(
      node,
      (id, since) => this.#chain(id, () => this.#settle(id, since)),
    );
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
    this.#timer = setInterval(() => {
      this.#tick().catch((e) => node.log.warning(`Cluster: writing session cursors failed: ${e}`));
    }, CURSOR_MS);
    (this.#timer as { unref?: () => void }).unref?.();
    // A node that missed a kick (it was slow, or seemed gone) still learns that it lost a client
    // id: every change of owner is watched, and a client of an id owned elsewhere is let go.
    this.#watch = await this.#kv.watch({ include: KvWatchInclude.UpdatesOnly });
    (async () => {
      for await (const e of this.#watch!) {
        if (e.operation !== "PUT") continue;
        const owner = parseOwner(e.value);
        if (!owner || (owner.node === node.id && owner.num === node.num)) continue;
        const s = this.#local?.owns(owner.id);
        if (s && !this.#chains.has(owner.id) && !this.#unowned.has(owner.id)) {
          node.log.notice(`Cluster: client ${owner.id} was taken over by node ${owner.node}.`);
          // Nobody asked for the record: the session simply leaves.
          this.#local!.handOver(owner.id);
          this.#local!.releaseMoved(owner.id);
        }
      }
    })().catch((e) => node.log.error(`Cluster: session watch ended: ${e}`));
  }

  stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#unowned.stop();
    this.#watch?.stop();
    this.#kick?.unsubscribe();
    return Promise.resolve();
  }

  acquire(clientId: string, clean: boolean): Promise<Handover | null> {
    return this.#chain(clientId, () => this.#acquireOrLocal(clientId, clean));
  }

  /** Runs `f` after what runs for `clientId` on this node already. */
  #chain<T>(clientId: string, f: () => Promise<T>): Promise<T> {
    const prev = this.#chains.get(clientId) ?? Promise.resolve();
    const run = prev.then(f, f);
    const tail = run.catch(() => {});
    this.#chains.set(clientId, tail);
    tail.then(() => {
      if (this.#chains.get(clientId) === tail) this.#chains.delete(clientId);
    });
    return run;
  }

  /**
   * `#acquire`, unless the registry cannot be read (NATS is down, or no answer within a short
   * bound): then the client is admitted here alone, with the session this node has of it or a
   * new one, and its owner entry is written once NATS is back (`#settle`).
   */
  async #acquireOrLocal(clientId: string, clean: boolean): Promise<Handover | null> {
    try {
      const since = this.#unowned.since(clientId);
      if (since !== undefined) {
        // Admitted before without the registry: settle that first, then connect as usual.
        await this.#settle(clientId, since);
        this.#unowned.delete(clientId);
      }
      return await this.#acquire(clientId, clean);
    } catch (e) {
      if (!(e instanceof RegistryUnreachable)) throw e;
      this.#unowned.add(clientId);
      return null;
    }
  }

  /**
   * A client id admitted without the registry gets its owner entry, compare-and-set. When
   * another node wrote one for a later CONNECT of the id meanwhile, that node keeps the client
   * and the session here ends; otherwise this node takes the id as a CONNECT with a new session
   * does (the other node's client, if any, is taken over), at the time it was admitted here.
   */
  async #settle(clientId: string, since: number): Promise<void> {
    const kv = this.#kv;
    const local = this.#local;
    if (!kv || !local) return;
    const node = this.#node;
    if (!local.owns(clientId)) {
      this.release(clientId); // It ended here meanwhile.
      return;
    }
    const owner = ownerOf(await withinReach(node, kv.get(ownerKey(clientId))));
    if (owner && owner.node !== node.id && owner.t > since) {
      node.log.notice(
        `Cluster: client ${clientId} connected here while NATS was unreachable and later to node ${owner.node}, which keeps it.`,
      );
      this.#kept.delete(clientId);
      local.handOver(clientId);
      local.releaseMoved(clientId);
      return;
    }
    if (!owner || owner.node !== node.id || owner.num !== node.num) {
      await this.#acquire(clientId, true, since);
      if (owner && owner.node !== node.id) {
        node.log.notice(
          `Cluster: client ${clientId}, connected here while NATS was unreachable, is taken from node ${owner.node}.`,
        );
      }
    }
    // What is kept of the session goes into the entry now that it names this node.
    this.#unowned.delete(clientId);
    if (this.#kept.has(clientId) && !(await this.#write(clientId))) {
      this.#unowned.retry(clientId, since);
      throw new Error(`the session of ${clientId} is not kept yet`);
    }
  }

  async #acquire(clientId: string, clean: boolean, t?: number): Promise<Handover | null> {
    const kv = this.#kv;
    if (!kv) throw new Error("the session registry is not started");
    const node = this.#node;
    const key = ownerKey(clientId);
    let record: SessionRecord | null = null;
    let from = "";
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      // The first read tells whether the registry can be reached at all.
      const entry = await (attempt === 1 ? withinReach(node, kv.get(key)) : kv.get(key));
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
      // A dead owner's persistent session resumes here from its record and the stream.
      const orphanRec = orphan?.rec ? recordOf(orphan.rec) : null;
      const resume = orphan && orphanRec && !clean
        ? await this.#resumable(orphan, orphanRec)
        : null;
      const at = resume ? resume.from : record ? oldest(record.messages) : undefined;
      const since = t ?? Date.now();
      const value = this.#ownerValue(clientId, since, resume?.text, at);
      try {
        const rev = entry
          ? await kv.update(key, value, entry.revision)
          : await kv.create(key, value);
        this.#revs.set(clientId, { rev, t: since });
        if (owner && owner.node !== node.id) this.takeovers++;
        // The write made this node the will's only keeper: a dead owner's client left it when
        // its connection died [MQTT-3.1.2-8], unless the new connection resumes the session
        // within the will delay [MQTT-3.1.3-9 v5].
        if (orphanRec) this.#local?.orphanWill(orphanRec, clean);
        if (record) this.#late(record.messages);
        if (resume) {
          const filled = this.#startResume(clientId, resume);
          this.resumed++;
          return {
            record: resume.rec,
            finish: () => this.#replayOne(clientId, resume).finally(filled),
          };
        }
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
      const delta = text ? decodeMessages(JSON.parse(text)) : [];
      this.#late(delta);
      return delta;
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
    // A session still being filled from the stream moves once it is complete.
    const replaying = req.op !== "done" ? this.#replaying.get(clientId) : undefined;
    if (replaying) {
      replaying.then(() => this.#onKick(m));
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
      if (at !== undefined) {
        const delta = decodeMessages(req.messages);
        this.#late(delta);
        local.mergeMoved(req.clientId, at, delta);
      }
      return reply(at !== undefined);
    }
    (async () => {
      const kv = this.#kv!;
      const key = ownerKey(req.clientId);
      const rec = decodeRecord(req.record ?? "");
      if (local.owns(req.clientId)) return false;
      const t = this.#late(rec.messages);
      const { queued } = local.adoptOffline(rec);
      // This node owns it now, unless a client of the id went elsewhere meanwhile (the
      // stopping node may still be writing the entry: read again then).
      const text = encodeRecord(keptOf(rec));
      let taken = false;
      for (let attempt = 0; attempt < 3 && !taken; attempt++) {
        const entry = await kv.get(key);
        const owner = ownerOf(entry);
        if (!entry || !owner || owner.node !== req.by) break;
        this.#kept.set(req.clientId, { rec: text, at: t ?? null });
        const value = this.#ownerValue(req.clientId, Date.now(), text, t);
        taken = await kv.update(key, value, entry.revision).then(() => true, () => false);
      }
      if (!taken) {
        this.#kept.delete(req.clientId);
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

  /** What is kept of each session of this node (see `keep`), and its cursor as last written. */
  readonly #kept = new Map<string, { rec: string; at: number | null }>();
  /** The last owner-entry write of each key: the next one waits for it. */
  readonly #writes = new Map<string, Promise<boolean>>();
  /** Sessions of a dead node being filled from the stream here: a hand-over waits for them. */
  readonly #replaying = new Map<string, Promise<void>>();
  /** The revision of the owner entry of each key this node wrote last, and its `t`. */
  readonly #revs = new Map<string, { rev: number; t: number }>();
  /** Keys whose last write failed (NATS away): written again by the next `#tick`. */
  readonly #unwritten = new Set<string>();
  /** The write of each key that has not started yet. */
  readonly #waiting = new Map<string, Promise<boolean>>();
  /** QoS 2 messages completed lately per key, as fid, time, fid, time… (see `completed`). */
  readonly #done = new Map<string, number[]>();
  /** Cursors of messages that reached sessions after a scan could see them (see `#pin`). */
  readonly #pins = new Map<number, number>();
  #ticking = false;

  keep(key: string, rec: SessionRecord | null): Promise<void> {
    if (!this.#kv || (rec === null && !this.#kept.has(key))) return Promise.resolve();
    if (rec) this.#kept.set(key, { rec: encodeRecord(rec), at: this.#kept.get(key)?.at ?? null });
    else this.#kept.delete(key);
    // Without NATS nothing can be kept now: it is written once NATS is back (`#tick`), and the
    // acknowledgement waiting for it goes meanwhile.
    if (!this.#node.natsUp) {
      this.#unwritten.add(key);
      return Promise.resolve();
    }
    return this.#write(key).then(() => {});
  }

  /**
   * Writes the owner entry of `key` as `#kept` has it when the write starts, after the writes
   * before it (a write not started yet serves every change made until it starts).
   */
  #write(key: string): Promise<boolean> {
    // Its owner entry is not written yet: it is written with what is kept then (`#settle`).
    if (this.#unowned.has(key)) return Promise.resolve(true);
    const waiting = this.#waiting.get(key);
    if (waiting) return waiting;
    const prev = this.#writes.get(key) ?? Promise.resolve(true);
    const next = prev.then(() => {
      this.#waiting.delete(key);
      return this.#put(key);
    }).then((ok) => {
      if (ok) this.#unwritten.delete(key);
      else this.#unwritten.add(key);
      return ok;
    }, (e) => {
      // Said once per key until it is written.
      if (!this.#unwritten.has(key)) {
        this.#node.log.warning(
          `Cluster: keeping the session of ${key} failed: ${(e as Error).message}; retrying.`,
        );
      }
      this.#unwritten.add(key);
      return false;
    });
    this.#writes.set(key, next);
    this.#waiting.set(key, next);
    next.then(() => {
      if (this.#writes.get(key) === next) this.#writes.delete(key);
    });
    return next;
  }

  completed(key: string, fid: number): void {
    if (!this.#kept.has(key)) return;
    let list = this.#done.get(key);
    if (!list) this.#done.set(key, list = []);
    list.push(fid, Date.now());
    void this.#write(key);
  }

  /** The QoS 2 messages of `key` completed within `DONE_MS` (fids). */
  #recentlyDone(key: string): number[] | undefined {
    const list = this.#done.get(key);
    if (!list) return undefined;
    const since = Date.now() - DONE_MS;
    let i = 0;
    while (i < list.length && list[i + 1] < since) i += 2;
    if (i > 0) list.splice(0, i);
    if (list.length === 0) {
      this.#done.delete(key);
      return undefined;
    }
    return list.filter((_, j) => j % 2 === 0);
  }

  async #put(key: string): Promise<boolean> {
    const kv = this.#kv!;
    const node = this.#node;
    const k = ownerKey(key);
    // This node wrote the entry last: write over that revision at once (one round trip).
    const last = this.#revs.get(key);
    if (last) {
      try {
        const rev = await kv.update(k, this.#keptValue(key, last.t), last.rev);
        this.#revs.set(key, { rev, t: last.t });
        return true;
      } catch {
        this.#revs.delete(key); // Written by another meanwhile: read it.
      }
    }
    for (let attempt = 0; attempt < 3; attempt++) {
      const entry = await kv.get(k);
      const owner = ownerOf(entry);
      if (!entry || !owner || owner.node !== node.id || owner.num !== node.num) return true;
      try {
        const rev = await kv.update(k, this.#keptValue(key, owner.t), entry.revision);
        this.#revs.set(key, { rev, t: owner.t });
        return true;
      } catch { /* changed meanwhile: read again */ }
    }
    return false;
  }

  /** The owner entry of `key` (taken at `t`) with what this node keeps of the session now. */
  #keptValue(key: string, t: number): Uint8Array {
    const kept = this.#kept.get(key);
    return this.#ownerValue(key, t, kept?.rec, kept?.at ?? undefined, this.#recentlyDone(key));
  }

  /** Forgets what this node kept of the session of `key` (it ended here, or left). */
  #forget(key: string): void {
    this.#kept.delete(key);
    this.#unwritten.delete(key);
    this.#revs.delete(key);
    this.#done.delete(key);
  }

  /**
   * Messages older than their arrival here (handed over, or read from the stream) joined a
   * session where the last scan of cursors could not see them: the watermark stays at or below
   * the oldest for two scans. Returns that time (undefined when there are none).
   */
  #late(messages: StoredClientMessage[]): number | undefined {
    const at = oldest(messages);
    if (at !== undefined) this.#pin(at)();
    return at;
  }

  /**
   * Holds this node's watermark at or below `at` (a message of that time reached a session
   * where the last scan of cursors could not see it) until two scans after the returned
   * function is called.
   */
  #pin(at: number): () => void {
    this.#pins.set(at, (this.#pins.get(at) ?? 0) + 1);
    return () => {
      const t = setTimeout(() => {
        const n = (this.#pins.get(at) ?? 1) - 1;
        if (n > 0) this.#pins.set(at, n);
        else this.#pins.delete(at);
      }, 2 * CURSOR_MS + 100);
      (t as { unref?: () => void }).unref?.();
    };
  }

  /**
   * Each second: every session whose oldest owed message is older than now gets that time as its
   * cursor (others none), then the node's watermark says that what reached it since now is
   * owed from the stream. Together they tell a survivor where each session's replay starts.
   */
  async #tick(): Promise<void> {
    const local = this.#local;
    const kv = this.#kv;
    if (this.#ticking || !local || !kv || !this.#node.pub || this.#node.pub.isClosed()) return;
    this.#ticking = true;
    try {
      const t = Date.now();
      const writes: Promise<boolean>[] = [];
      if (this.#node.natsUp) { for (const key of this.#unwritten) writes.push(this.#write(key)); }
      for (const [key, k] of this.#kept) {
        if (!local.owns(key) && !this.#chains.has(key)) {
          this.#forget(key); // It left this node.
          continue;
        }
        const since = local.pendingSince(key);
        const at = since !== null && since < t ? since : null;
        if (at === k.at) continue;
        k.at = at;
        writes.push(this.#write(key));
      }
      const ok = (await Promise.all(writes)).every(Boolean);
      if (!ok) return;
      const wm = Math.min(t, ...this.#pins.keys());
      await kv.put(
        `w.${this.#node.id}`,
        enc.encode(JSON.stringify({ num: this.#node.num, t: wm })),
      );
    } finally {
      this.#ticking = false;
    }
  }

  /** The watermark a node last wrote (ms), or null when there is none of this run of it. */
  async #watermark(id: string, num: number): Promise<number | null> {
    try {
      const e = await this.#kv!.get(`w.${id}`);
      if (!e || e.operation !== "PUT") return null;
      const o = JSON.parse(dec.decode(e.value));
      return o?.num >>> 0 === num && typeof o.t === "number" ? o.t : null;
    } catch {
      return null;
    }
  }

  /**
   * The session a dead owner kept, if it outlives its connection and has not expired: its record
   * (the will left out: the new connection brings its own), the record's text as this node
   * keeps it, and the time from which the stream is read for it.
   */
  async #resumable(o: Owner, rec: SessionRecord, lastSeen = Date.now()): Promise<Resume | null> {
    const st = rec.session;
    if (st.expiryInterval === 0) return null;
    const gone = st.disconnectedAt || lastSeen;
    if (st.expiryInterval !== 0xffffffff && Date.now() - gone > st.expiryInterval * 1000) {
      return null;
    }
    const wm = await this.#watermark(o.node, o.num);
    let from = wm ?? o.t;
    if (o.at !== undefined) from = Math.min(from, o.at);
    from -= REPLAY_MARGIN_MS;
    const kept = keptOf(rec);
    return { rec: kept, text: encodeRecord(kept), from, done: new Set(o.done ?? []) };
  }

  /**
   * A session of a dead node is being resumed here: it is kept from now on (its cursor the
   * replay's start), the watermark stays at or below that start, and a hand-over waits until the
   * returned function is called, once the messages found for it are in the session.
   */
  #startResume(key: string, resume: Resume): () => void {
    this.#kept.set(key, { rec: resume.text, at: resume.from });
    const unpin = this.#pin(resume.from);
    const filled = this.#whileReplaying(key);
    return () => {
      unpin();
      filled();
    };
  }

  /**
   * Marks `key` as being filled from the stream: a request to hand it over waits until the
   * returned function is called (and the messages found are in the session).
   */
  #whileReplaying(key: string): () => void {
    let done!: () => void;
    const p = new Promise<void>((r) => (done = r));
    this.#replaying.set(key, p);
    return () =>
      setTimeout(() => {
        if (this.#replaying.get(key) === p) this.#replaying.delete(key);
        done();
      }, 0);
  }

  /** The messages a resumed session is owed from the stream since `from`. */
  async #replayOne(key: string, resume: Resume): Promise<StoredClientMessage[]> {
    const target: ReplayTarget = { key, from: resume.from, found: [], done: resume.done };
    try {
      this.replayed += await replay(this.#node, [target], this.#owed);
    } catch (e) {
      this.#node.log.error(
        `Cluster: reading what ${key} is owed from the message stream failed: ${
          (e as Error).message
        }`,
      );
    }
    return target.found;
  }

  /**
   * A node stopped beating. The first survivor to claim it (compare-and-set on a key of its
   * own) takes over the sessions it kept: each is rebuilt here, offline since the node's last
   * heartbeat, with what it is owed read from the stream; a will goes out once its delay has run
   * [MQTT-3.1.3-9 v5] unless the client comes back first, and the expiry counts on.
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
    const targets: { target: ReplayTarget; filled: () => void }[] = [];
    for (const k of keys) {
      const entry = await kv.get(k);
      const owner = ownerOf(entry);
      if (!entry || !owner || owner.node !== peer.id || owner.num !== peer.num || !owner.rec) {
        continue;
      }
      const rec = recordOf(owner.rec);
      if (!rec) continue;
      rec.session.disconnectedAt ||= peer.lastSeen;
      const resume = await this.#resumable(owner, rec, peer.lastSeen);
      try {
        await kv.update(
          k,
          this.#ownerValue(owner.id, Date.now(), resume?.text, resume?.from),
          entry.revision,
        );
      } catch {
        continue; // Its client came back somewhere meanwhile.
      }
      if (local.owns(owner.id)) continue;
      if (rec.session.will) wills++;
      if (resume) {
        targets.push({
          target: { key: owner.id, from: resume.from, found: [], done: resume.done },
          filled: this.#startResume(owner.id, resume),
        });
      }
      // The record with its will: sent now or after its delay, as if its connection had just died.
      local.adoptOffline(rec);
    }
    if (targets.length) {
      try {
        await local.interestEverywhere();
        this.replayed += await replay(node, targets.map((t) => t.target), this.#owed);
      } catch (e) {
        node.log.error(`Cluster: reading the message stream for node ${peer.id} failed: ${e}`);
      }
      for (const { target, filled } of targets) {
        if (local.owns(target.key)) local.mergeMoved(target.key, 0, target.found);
        filled();
      }
      this.resumed += targets.length;
    }
    node.log.notice(
      `Cluster: took over ${targets.length} sessions and ${wills} wills of the clients of node ${peer.id}.`,
    );
  }

  /** The owner entry that names this node as the owner of `id` (with what is kept of it). */
  #ownerValue(id: string, t: number, rec?: string, at?: number, done?: number[]): Uint8Array {
    const o: Owner = { id, node: this.#node.id, num: this.#node.num, t };
    if (rec) o.rec = rec;
    if (at !== undefined) o.at = at;
    if (done?.length) o.done = done;
    return enc.encode(JSON.stringify(o));
  }

  release(clientId: string): void {
    this.#forget(clientId);
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
        at: typeof o.at === "number" ? o.at : undefined,
        done: Array.isArray(o.done)
          ? o.done.filter((x: unknown) => typeof x === "number")
          : undefined,
      }
      : null;
  } catch {
    return null;
  }
}

/** A session of a dead node to resume (see `#resumable`). */
interface Resume {
  /** What is kept of it (`keptOf`), and that as text. */
  rec: SessionRecord;
  text: string;
  /** Where its replay of the stream starts (ms). */
  from: number;
  /** QoS 2 messages it completed lately (`Message.fid`). */
  done: Set<number>;
}

/** The record in an owner entry, null when it cannot be read. */
function recordOf(text: string): SessionRecord | null {
  try {
    return decodeRecord(text);
  } catch {
    return null;
  }
}

/**
 * What a cluster keeps of a session record in its owner entry: no will (a new connection brings
 * its own), and of its messages only the QoS 2 ones in flight (the rest is in the stream).
 */
function keptOf(rec: SessionRecord): SessionRecord {
  return {
    ...rec,
    session: { ...rec.session, will: null },
    messages: rec.messages.filter((m) => m.packetId !== 0 && m.qos === 2),
  };
}

/** The oldest `at` of some messages (0 for one without), undefined when there are none. */
function oldest(ms: StoredClientMessage[]): number | undefined {
  let min: number | undefined;
  for (const m of ms) min = Math.min(min ?? Infinity, m.msg.at ?? 0);
  return min;
}
