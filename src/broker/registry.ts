/**
 * The session registry: who owns a client id (by session key: see `sessionKey`). On a single node the broker's own session table
 * is the whole truth, and taking a client id over is local and synchronous. In a cluster
 * (src/cluster/sessions.ts) a client id belongs to one node at a time: acquiring it may evict
 * the client from another node and bring its session here, which takes a round trip.
 */
import type { SessionRecord } from "../store/types.ts";
import type { StoredClientMessage } from "../store/types.ts";

/** A session coming from the node that owned its client id. */
export interface Handover {
  /** The session as the previous owner recorded it when it let the client go. */
  record: SessionRecord;
  /**
   * Call once the session is rebuilt here and every node knows its subscriptions: the previous
   * owner lets the session go and answers with the messages it queued for it since the record
   * (some may have reached this node too; skip those by `Message.fid`).
   */
  finish(): Promise<StoredClientMessage[]>;
}

/** Owns client ids. */
export interface SessionRegistry {
  /** False for the single-node registry: `acquire` is never needed. */
  readonly distributed: boolean;
  start?(): Promise<void>;
  stop?(): Promise<void>;
  /**
   * Makes this node the owner of `key` before a client is admitted with it. Resolves with the
   * session the previous owner hands over (null when there was none, or when `clean` asks for a
   * new one); rejects when ownership could not be had.
   */
  acquire(key: string, clean: boolean): Promise<Handover | null>;
  /** The session of `key` ended on this node: give the id up. */
  release(key: string): void;
  /**
   * This node is stopping: hand its sessions to the other nodes (which then own them and queue
   * for them), so that nothing published while their clients move is lost.
   */
  evacuate?(): Promise<void>;
  /**
   * What a cluster keeps of the session of `key` so that it outlives this node: `rec` is its
   * record without messages (subscriptions, expiry, will while connected), or null when there is
   * nothing to keep (a session that ends with its connection and has no will). The messages it
   * is owed are found again in the cluster's message stream from its cursor (see `pendingSince`
   * of the cluster's HandOver). Resolves once it is stored (or could not be: it never rejects).
   */
  keep?(key: string, rec: SessionRecord | null): Promise<void>;
  /**
   * A QoS 2 message (`fid`: `Message.fid`) sent to the session of `key` is complete (PUBCOMP):
   * a node that takes the session over must not find it again in the message stream.
   */
  completed?(key: string, fid: number): void;
}

/** The single-node registry: the broker's table decides, nothing to acquire. */
export class LocalRegistry implements SessionRegistry {
  readonly distributed = false;
  acquire(): Promise<Handover | null> {
    return Promise.resolve(null);
  }
  release(): void {}
}
