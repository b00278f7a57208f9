/**
 * Durable state behind one interface, so the broker neither knows nor cares whether it is kept in
 * SQLite on this machine or, later, in a store shared by a cluster.
 *
 * Writes are queued and applied in one transaction per event-loop turn (group commit); callbacks
 * given to `afterCommit` run once everything queued before them is on disk, which is when the
 * broker may acknowledge a QoS 1/2 message.
 */
import type { ProtocolVersion, QoS, Will } from "../codec/types.ts";
import type { Message } from "../broker/message.ts";

/** A persistent session as stored. */
export interface StoredSession {
  /**
   * The session key: the client id, after its listener's mount point and a NUL when it has one
   * (see `sessionKey` in src/broker/session.ts). The other methods' `clientId` is this key too.
   */
  clientId: string;
  version: ProtocolVersion;
  expiryInterval: number;
  /** ms since epoch; 0 while connected. */
  disconnectedAt: number;
  will: Will | null;
  willDelay: number;
  /** User name of the last connection, for ACL checks after a restart. */
  username?: string;
}

export interface StoredSubscription {
  /** The filter as the client sent it. */
  filter: string;
  /** What is matched (with the listener's mount point); defaults to `filter`. */
  topicFilter?: string;
  qos: QoS;
  nl: boolean;
  rap: boolean;
  rh: number;
  subId: number;
}

/** A message queued for or in flight to a session. */
export interface StoredClientMessage {
  seq: number;
  msg: Message;
  qos: QoS;
  retain: boolean;
  subIds?: number[];
  /** 0 queued, 1 PUBLISH sent, 2 PUBREL sent. */
  state: 0 | 1 | 2;
  packetId: number;
}

/** Everything a restart restores. */
export interface Snapshot {
  retained: Message[];
  sessions: {
    session: StoredSession;
    subscriptions: StoredSubscription[];
    messages: StoredClientMessage[];
    incomingQos2: number[];
  }[];
}

/** One session as a store or another node keeps it: its state, subscriptions, queue, QoS 2 ids. */
export type SessionRecord = Snapshot["sessions"][number];

/** The durable state of a broker (see the file's comment). */
export interface Store {
  /** Read everything back (once, at start-up). */
  load(): Snapshot;

  setRetained(msg: Message): void;
  deleteRetained(topic: string): void;

  saveSession(s: StoredSession): void;
  /** Delete a session with its subscriptions, messages and QoS 2 state. */
  deleteSession(clientId: string): void;
  saveSubscription(clientId: string, sub: StoredSubscription): void;
  deleteSubscription(clientId: string, filter: string): void;

  /** Queue a message for a session; returns its sequence number (its order in the queue). */
  addClientMessage(clientId: string, m: Omit<StoredClientMessage, "seq">): number;
  updateClientMessage(clientId: string, seq: number, state: 0 | 1 | 2, packetId: number): void;
  deleteClientMessage(clientId: string, seq: number, msg: Message): void;

  addIncomingQos2(clientId: string, packetId: number): void;
  deleteIncomingQos2(clientId: string, packetId: number): void;

  /** Run `cb(ok)` once every write queued so far is committed (ok) or has failed (not ok). */
  afterCommit(cb: (ok: boolean) => void): void;
  /** Commit now (shutdown, tests). */
  flush(): boolean;
  close(): void;
  /** Commit latency figures and error count, for metrics. */
  readonly stats: { commits: number; errors: number; lastCommitMs: number; totalCommitMs: number };
}
