/**
 * The router: who subscribed to what, and "deliver this message to whoever subscribed" as one
 * function (`route`). Subscriptions live in the WASM topic matcher; each (session, filter) pair
 * or shared group gets a u32 id that indexes `#entries`.
 */
import { TopicMatcher } from "./matcher.ts";
import type { Session, SubscriptionEntry } from "./session.ts";
import type { QoS } from "../codec/types.ts";

/** The members of one `$share/<group>/<filter>` [MQTT-4.8.2]. */
export interface SharedGroup {
  group: string;
  topicFilter: string;
  members: SubscriptionEntry[];
  /** Round-robin cursor. */
  next: number;
}

/** One receiver of a routed message: the session and the merged options of its matching subscriptions. */
export interface Target {
  session: Session;
  qos: QoS;
  rap: boolean;
  subIds: number[] | undefined;
}

/** Who may read what (the acl_file); null when every session may read everything. */
export interface ReadCheck {
  canRead(session: Session, topic: string): boolean;
}

type Slot = { kind: "sub"; entry: SubscriptionEntry } | { kind: "shared"; group: SharedGroup };

/** Told when a filter gains its first local subscriber and loses its last (the fabric). */
export interface InterestListener {
  addInterest(topicFilter: string, group: string): void;
  removeInterest(topicFilter: string, group: string): void;
}

export class Router {
  readonly #interest: InterestListener | null;
  readonly #matcher = new TopicMatcher();
  #slots: (Slot | undefined)[] = [];
  #free: number[] = [];
  #ids = new Map<SubscriptionEntry, number>();
  #groups = new Map<string, { id: number; group: SharedGroup }>();
  #marks = new Map<Session, Target>();

  /** `interest` hears of every filter added and removed (null: nobody beyond this process). */
  constructor(interest: InterestListener | null = null) {
    this.#interest = interest;
  }

  /** Number of subscriptions (shared members counted one each). */
  count = 0;
  sharedCount = 0;

  #alloc(slot: Slot): number {
    const id = this.#free.pop() ?? this.#slots.length;
    this.#slots[id] = slot;
    return id;
  }
  #release(id: number): void {
    this.#slots[id] = undefined;
    this.#free.push(id);
  }

  /**
   * What the router holds, for tests and statistics: live trie nodes, the top of the matcher's
   * WASM heap and the size of its memory, and the id slots (in use or free for reuse).
   */
  get held(): { nodes: number; heapBytes: number; memoryBytes: number; slots: number } {
    const m = this.#matcher;
    return {
      nodes: m.nodeCount,
      heapBytes: m.heapBytes,
      memoryBytes: m.wasm.memory.buffer.byteLength,
      slots: this.#slots.length,
    };
  }

  /** The longest probe sequence in the matcher's edge table (hash flooding makes it long). */
  get longestProbe(): number {
    return this.#matcher.longestProbe;
  }

  /** Add a subscription (a replaced one must be removed first). */
  add(entry: SubscriptionEntry): void {
    this.count++;
    if (entry.group) {
      this.sharedCount++;
      const key = entry.group + "\u0000" + entry.topicFilter;
      let g = this.#groups.get(key);
      if (!g) {
        const group: SharedGroup = {
          group: entry.group,
          topicFilter: entry.topicFilter,
          members: [],
          next: 0,
        };
        const id = this.#alloc({ kind: "shared", group });
        g = { id, group };
        this.#groups.set(key, g);
        this.#matcher.add(entry.topicFilter, id);
        this.#interest?.addInterest(entry.topicFilter, entry.group);
      }
      g.group.members.push(entry);
      return;
    }
    const id = this.#alloc({ kind: "sub", entry });
    this.#ids.set(entry, id);
    this.#matcher.add(entry.topicFilter, id);
    this.#interest?.addInterest(entry.topicFilter, "");
  }

  /** Remove a subscription added with `add`. */
  remove(entry: SubscriptionEntry): void {
    if (entry.group) {
      const key = entry.group + "\u0000" + entry.topicFilter;
      const g = this.#groups.get(key);
      if (!g) return;
      const i = g.group.members.indexOf(entry);
      if (i < 0) return;
      g.group.members.splice(i, 1);
      this.count--;
      this.sharedCount--;
      if (g.group.members.length === 0) {
        this.#matcher.remove(entry.topicFilter, g.id);
        this.#release(g.id);
        this.#groups.delete(key);
        this.#interest?.removeInterest(entry.topicFilter, entry.group);
      }
      return;
    }
    const id = this.#ids.get(entry);
    if (id === undefined) return;
    this.count--;
    this.#ids.delete(entry);
    this.#matcher.remove(entry.topicFilter, id);
    this.#release(id);
    this.#interest?.removeInterest(entry.topicFilter, "");
  }

  /**
   * One member of this node's shared group `group` on `topicFilter`, for a message the cluster
   * gave to this node (MQTT 5.0 §4.8.2); undefined when the group has no member here.
   */
  pickShared(
    group: string,
    topicFilter: string,
    topic: string,
    acl: ReadCheck | null,
  ): Target | undefined {
    const g = this.#groups.get(group + "\u0000" + topicFilter);
    const e = g && pickMember(g.group, topic, acl);
    if (!e) return undefined;
    return { session: e.session, qos: e.qos, rap: e.rap, subIds: e.subId ? [e.subId] : undefined };
  }

  /**
   * Everyone who gets a message published on `topic` by `origin`: one target per session, at
   * the highest QoS of its matching subscriptions, with all their subscription identifiers
   * [MQTT-3.3.4-2 v5][MQTT-3.3.4-3 v5]; No Local subscriptions of the publisher skipped
   * [MQTT-3.8.3-3 v5]; one member per shared group (MQTT 5.0 §4.8.2), chosen among the members
   * `acl` lets read the topic, unless `withShared` is false (in a cluster, where the fabric picks
   * the node of each shared message).
   */
  route(topic: string, origin: string, acl: ReadCheck | null = null, withShared = true): Target[] {
    const ids = this.#matcher.match(topic);
    const out: Target[] = [];
    if (ids.length === 0) return out;
    const marks = this.#marks;
    const few = ids.length <= FEW_MATCHES;
    let shared: Target[] | null = null;
    for (let i = 0; i < ids.length; i++) {
      const slot = this.#slots[ids[i]];
      if (!slot) continue;
      if (slot.kind === "shared") {
        // In a cluster the fabric chooses the node of each shared message (`pickShared`).
        if (!withShared) continue;
        const e = pickMember(slot.group, topic, acl);
        if (e) {
          // A shared subscription's copy is a delivery of its own (MQTT 5.0 §4.8.2): never merged.
          (shared ??= []).push({
            session: e.session,
            qos: e.qos,
            rap: e.rap,
            subIds: e.subId ? [e.subId] : undefined,
          });
        }
        continue;
      }
      const e = slot.entry;
      if (e.nl && e.session.key === origin) continue;
      // Few matches (the usual case) are looked up in `out` itself: no Map entry per message.
      const t = few ? findTarget(out, e.session) : marks.get(e.session);
      if (!t) {
        const nt: Target = {
          session: e.session,
          qos: e.qos,
          rap: e.rap,
          subIds: e.subId ? [e.subId] : undefined,
        };
        if (!few) marks.set(e.session, nt);
        out.push(nt);
      } else {
        if (e.qos > t.qos) t.qos = e.qos;
        if (e.rap) t.rap = true;
        if (e.subId) (t.subIds ??= []).push(e.subId);
      }
    }
    if (!few) marks.clear();
    if (shared) { for (let i = 0; i < shared.length; i++) out.push(shared[i]); }
    return out;
  }
}

/** Matches up to this many are merged per session by a scan of the targets, more by a Map. */
const FEW_MATCHES = 8;

function findTarget(out: Target[], session: Session): Target | undefined {
  for (let i = 0; i < out.length; i++) if (out[i].session === session) return out[i];
  return undefined;
}

/**
 * One member of a shared group for the next message: round-robin over connected members; when
 * none is connected, one with a persistent session (it queues) (MQTT 5.0 §4.8.2). A member the
 * acl_file does not let read the topic is passed over, so the message goes to one that may.
 */
function pickMember(
  g: SharedGroup,
  topic: string,
  acl: ReadCheck | null,
): SubscriptionEntry | undefined {
  const n = g.members.length;
  for (let k = 0; k < n; k++) {
    const e = g.members[(g.next + k) % n];
    if (e.session.connection && (acl === null || acl.canRead(e.session, topic))) {
      g.next = (g.next + k + 1) % n;
      return e;
    }
  }
  for (let k = 0; k < n; k++) {
    const e = g.members[(g.next + k) % n];
    if (acl === null || acl.canRead(e.session, topic)) {
      g.next = (g.next + k + 1) % n;
      return e;
    }
  }
  return undefined;
}
