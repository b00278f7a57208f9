/**
 * A cluster node's parts, assembled from the [cluster] table: the NATS connections and
 * membership (ClusterNode), the fabric that carries messages between nodes, and the shared
 * retained store. `serve` hands them to the Broker.
 */
import type { Broker, BrokerParts } from "../broker/broker.ts";
import type { ClusterConfig } from "../config/schema.ts";
import type { Logger } from "../sys/log.ts";
import { NatsFabric } from "./fabric.ts";
import { ClusterNode } from "./node.ts";
import { KvRetained } from "./retained.ts";
import { KvSessions } from "./sessions.ts";

/** What a cluster node adds to a broker. */
export interface ClusterParts extends Partial<BrokerParts> {
  node: ClusterNode;
  fabric: NatsFabric;
  retained: KvRetained;
  registry: KvSessions;
  /** Ties the parts to the broker they were given to (client counts, session hand-over). */
  attach(broker: Broker): void;
}

/**
 * Connects to NATS (waiting, with one warning line, while it cannot be reached) and makes the
 * parts. The fabric and the retained store start with the broker.
 */
export async function joinCluster(cfg: ClusterConfig, log: Logger): Promise<ClusterParts> {
  const node = new ClusterNode(cfg, log);
  await node.start();
  log.notice(
    `Cluster: node ${cfg.node_id} joined cluster "${cfg.name}" through ${node.pub.getServer()}.`,
  );
  const registry = new KvSessions(node);
  return {
    node,
    fabric: new NatsFabric(node),
    retained: new KvRetained(node),
    registry,
    attach(broker: Broker) {
      node.clients = () => broker.connections.size;
      registry.bind(broker);
    },
  };
}
