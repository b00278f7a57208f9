/**
 * What the operator's views ($SYS, /metrics, the admin API, the console's node list) ask of a
 * cluster. A single broker has none; a cluster node's is made in src/cluster/view.ts.
 */
import type { ApiResponse } from "./admin.ts";

/** One node as the console's overview and the cluster view list it. */
export interface NodeInfo {
  id: string;
  version: string;
  /** This node. */
  self: boolean;
  /** Clients connected to it. */
  clients: number;
  /** Seconds since it started (0 when it did not say). */
  uptime: number;
}

/** The cluster as this node sees it. */
export interface ClusterView {
  /** This node first, then the live peers by id. */
  nodes(): NodeInfo[];
  /** `$SYS/broker/cluster/...` topics and values, published with the rest of `$SYS`. */
  sys(): [string, string][];
  /** Prometheus text of the cluster's metric families. */
  metrics(): string;
  /** `GET /api/clients?cluster=1`: every node's clients, each with its node. */
  clients(query: URLSearchParams): Promise<ApiResponse>;
}
