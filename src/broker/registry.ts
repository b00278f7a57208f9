/**
 * The session registry: who owns a client id (by session key: see `sessionKey`). On a single node the broker's own session table
 * is the whole truth, and taking a client id over is local and synchronous. In a cluster
 * (src/cluster/sessions.ts) a client id belongs to one node at a time: acquiring it may evict
 * the client from another node and bring its session here, which takes a round trip.
 */
import type { SessionRecord } from "./restore.ts";

/** Owns client ids. */
export interface SessionRegistry {
  /** False for the single-node registry: `acquire` is never needed. */
  readonly distributed: boolean;
  start?(): Promise<void>;
  stop?(): Promise<void>;
  /**
   * Makes this node the owner of `clientId` before a client is admitted with it. Resolves with
   * the session the previous owner handed over (null when there was none, or when `clean` asks
   * for a new one); rejects when ownership could not be had.
   */
  acquire(clientId: string, clean: boolean): Promise<SessionRecord | null>;
  /** The session of `clientId` ended on this node: give the id up. */
  release(clientId: string): void;
}

/** The single-node registry: the broker's table decides, nothing to acquire. */
export class LocalRegistry implements SessionRegistry {
  readonly distributed = false;
  acquire(): Promise<SessionRecord | null> {
    return Promise.resolve(null);
  }
  release(): void {}
}
