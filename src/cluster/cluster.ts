/**
 * A cluster node's parts, assembled from the [cluster] table: the NATS connections and
 * membership (ClusterNode), the fabric that carries messages between nodes, and the shared
 * retained store. `serve` hands them to the Broker.
 */
import type { BrokerParts } from "../broker/broker.ts";
import type { ClusterConfig } from "../config/schema.ts";
import type { Logger } from "../sys/log.ts";
import { NatsFabric } from "./fabric.ts";
import { ClusterNode } from "./node.ts";
import { KvRetained } from "./retained.ts";

/** What a cluster node adds to a broker. */
export interface ClusterParts extends BrokerParts {
  node: ClusterNode;
  fabric: NatsFabric;
  retained: KvRetained;
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
  return { node, fabric: new NatsFabric(node), retained: new KvRetained(node) };
}
