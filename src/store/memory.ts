/**
 * A `Store` kept in this process's memory: what a broker without a disk, or a test, can use
 * wherever the SQLite store goes. Every write is applied at once; `afterCommit` answers on the
 * next microtask, in order. Nothing survives the process.
 */
import type { Message } from "../broker/message.ts";
import { ownPayload } from "../broker/message.ts";
import type {
  Snapshot,
  Store,
  StoredClientMessage,
  StoredSession,
  StoredSubscription,
} from "./types.ts";

/** One session's rows. */
interface Rows {
  session: StoredSession;
  subscriptions: Map<string, StoredSubscription>;
  messages: Map<number, StoredClientMessage>;
  incomingQos2: Set<number>;
}

/** The in-memory store. */
export class MemoryStore implements Store {
  readonly #retained = new Map<string, Message>();
  readonly #sessions = new Map<string, Rows>();
  #nextSeq = 1;
  readonly stats = { commits: 0, errors: 0, lastCommitMs: 0, totalCommitMs: 0 };

  load(): Snapshot {
    const sessions: Snapshot["sessions"] = [];
    for (const r of this.#sessions.values()) {
      sessions.push({
        session: { ...r.session },
        subscriptions: [...r.subscriptions.values()].map((s) => ({ ...s })),
        messages: [...r.messages.values()].sort((a, b) => a.seq - b.seq).map((m) => ({ ...m })),
        incomingQos2: [...r.incomingQos2],
      });
    }
    return { retained: [...this.#retained.values()], sessions };
  }

  setRetained(msg: Message): void {
    ownPayload(msg);
    this.#retained.set(msg.topic, msg);
  }

  deleteRetained(topic: string): void {
    this.#retained.delete(topic);
  }

  saveSession(s: StoredSession): void {
    const r = this.#sessions.get(s.clientId);
    if (r) r.session = { ...s };
    else {
      this.#sessions.set(s.clientId, {
        session: { ...s },
        subscriptions: new Map(),
        messages: new Map(),
        incomingQos2: new Set(),
      });
    }
  }

  deleteSession(clientId: string): void {
    this.#sessions.delete(clientId);
  }

  saveSubscription(clientId: string, sub: StoredSubscription): void {
    this.#sessions.get(clientId)?.subscriptions.set(sub.filter, { ...sub });
  }

  deleteSubscription(clientId: string, filter: string): void {
    this.#sessions.get(clientId)?.subscriptions.delete(filter);
  }

  addClientMessage(clientId: string, m: Omit<StoredClientMessage, "seq">): number {
    const seq = this.#nextSeq++;
    const r = this.#sessions.get(clientId);
    if (r) {
      ownPayload(m.msg);
      r.messages.set(seq, {
        seq,
        msg: m.msg,
        qos: m.qos,
        retain: m.retain,
        subIds: m.subIds,
        state: m.state,
        packetId: m.packetId,
      });
    }
    return seq;
  }

  updateClientMessage(clientId: string, seq: number, state: 0 | 1 | 2, packetId: number): void {
    const m = this.#sessions.get(clientId)?.messages.get(seq);
    if (m) {
      m.state = state;
      m.packetId = packetId;
    }
  }

  deleteClientMessage(clientId: string, seq: number, _msg: Message): void {
    this.#sessions.get(clientId)?.messages.delete(seq);
  }

  addIncomingQos2(clientId: string, packetId: number): void {
    this.#sessions.get(clientId)?.incomingQos2.add(packetId);
  }

  deleteIncomingQos2(clientId: string, packetId: number): void {
    this.#sessions.get(clientId)?.incomingQos2.delete(packetId);
  }

  /** Writes are applied at once: `cb(true)` on the next microtask, in the order asked. */
  afterCommit(cb: (ok: boolean) => void): void {
    queueMicrotask(() => cb(true));
  }

  /** Nothing to commit. */
  flush(): boolean {
    return true;
  }

  close(): void {}
}
