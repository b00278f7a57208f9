/**
 * The fabric: what carries this process's publishes to other nodes and brings theirs in. It
 * keeps interest per filter (a shared group's filter included), so only what other nodes want
 * leaves. The local fabric, for a single node, carries nothing; the cluster's runs over NATS
 * (src/cluster/fabric.ts).
 */
import type { Message } from "./message.ts";

/** Where a fabric hands the messages it receives: the broker's local delivery. */
export interface FabricSink {
  /** A message published on another node, for this node's non-shared subscribers. */
  fromRemote(msg: Message): void;
  /**
   * A message for one member of the shared group `group` on `topicFilter` on this node; the
   * fabric has already chosen this node for it among all nodes with members.
   */
  fromRemoteShared(group: string, topicFilter: string, msg: Message): void;
}

/** Carries publishes between nodes. */
export interface Fabric {
  /** False for the local fabric: nothing leaves the process, shared groups are chosen locally. */
  readonly distributed: boolean;
  /** The largest message (topic, payload and properties) that can be carried; 0 = no limit. */
  readonly maxMessageBytes: number;
  start(sink: FabricSink): Promise<void>;
  stop(): Promise<void>;
  /** Gives a message published on this node its cluster identity (`Message.fid`). */
  stamp(msg: Message): void;
  /** A message published on this node (stamped, already delivered locally): carry it on. */
  forward(msg: Message): void;
  /** The first local subscription to `topicFilter` (in `group`, "" = not shared) was added. */
  addInterest(topicFilter: string, group: string): void;
  /** The last local subscription to `topicFilter` (in `group`) was removed. */
  removeInterest(topicFilter: string, group: string): void;
  /**
   * A promise that resolves once every node knows the interest added so far (so a message
   * published anywhere after it reaches the new subscriptions), or null when nothing is pending.
   */
  barrier(): Promise<void> | null;
  /**
   * Runs `cb(true)` once every message forwarded so far that must be durable is, or `cb(false)`
   * when the fabric stops first. Returns false, without calling `cb`, when nothing is pending.
   */
  afterDurable(cb: (ok: boolean) => void): boolean;
}

/** The single-node fabric: nothing leaves the process. */
export class LocalFabric implements Fabric {
  readonly distributed = false;
  readonly maxMessageBytes = 0;
  start(): Promise<void> {
    return Promise.resolve();
  }
  stop(): Promise<void> {
    return Promise.resolve();
  }
  stamp(): void {}
  forward(): void {}
  addInterest(): void {}
  removeInterest(): void {}
  barrier(): null {
    return null;
  }
  afterDurable(): boolean {
    return false;
  }
}
