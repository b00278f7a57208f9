/**
 * The cluster as an operator sees it from one node: the nodes and their client counts (from the
 * heartbeats), `$SYS/broker/cluster/...`, the cluster's Prometheus metrics, and the client list
 * of every node, gathered over NATS: each node answers `N.c.clients.<node>` with its own list
 * (the admin API's, same parameters).
 */
import type { Msg, Subscription } from "@nats-io/nats-core";
import type { Broker } from "../broker/broker.ts";
import { adminRead, apiError, type ApiResponse } from "../sys/admin.ts";
import type { ClusterView, NodeInfo } from "../sys/cluster_view.ts";
import { VERSION } from "../version.ts";
import type { NatsFabric } from "./fabric.ts";
import { KvSessions } from "./sessions.ts";
import type { ClusterNode } from "./node.ts";

/** Clients listed at most in one cluster-wide answer (each node's part travels in one message). */
export const MAX_CLUSTER_CLIENTS = 1000;
/** How long a node's part of the cluster-wide list is waited for. */
const CLIENTS_TIMEOUT_MS = 2000;

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A node's list of clients, as the admin API returns it. */
interface ClientList {
  total: number;
  clients: Record<string, unknown>[];
}

/** The cluster view of one node. */
export class NodeView implements ClusterView {
  readonly #node: ClusterNode;
  readonly #fabric: NatsFabric;
  readonly #broker: Broker;
  #sub: Subscription | null = null;
  /** Nodes whose `$SYS/broker/cluster/node/<id>/clients` was published (cleared when gone). */
  readonly #shown = new Set<string>();

  constructor(node: ClusterNode, fabric: NatsFabric, broker: Broker) {
    this.#node = node;
    this.#fabric = fabric;
    this.#broker = broker;
  }

  /** Answers other nodes' requests for this node's clients. */
  start(): void {
    const node = this.#node;
    this.#sub = node.sub.subscribe(`${node.control}.clients.${node.id}`, {
      callback: (_e, m) => this.#answer(m),
    });
  }

  stop(): void {
    this.#sub?.unsubscribe();
    this.#sub = null;
  }

  #answer(m: Msg): void {
    try {
      const q = new URLSearchParams(dec.decode(m.data));
      const r = adminRead(this.#broker, ["api", "clients"], q);
      let body = JSON.stringify(r.body);
      // One message: a list too big for NATS is cut (the total still counts every client).
      const max = (this.#node.sub.info?.max_payload ?? 1024 * 1024) - 1024;
      if (r.status === 200 && body.length > max) {
        const b = r.body as ClientList & Record<string, unknown>;
        let n = b.clients.length;
        while (n > 0 && body.length > max) {
          n = n >> 1;
          body = JSON.stringify({
            ...b,
            clients: b.clients.slice(0, n),
            count: n,
            truncated: true,
          });
        }
      }
      m.respond(enc.encode(JSON.stringify({ status: r.status, body: JSON.parse(body) })));
    } catch (e) {
      this.#node.log.warning(`Cluster: answering a client list request failed: ${e}`);
    }
  }

  nodes(): NodeInfo[] {
    const now = Date.now();
    const out: NodeInfo[] = [{
      id: this.#node.id,
      version: VERSION,
      self: true,
      clients: this.#broker.connections.size,
      uptime: Math.floor((now - this.#broker.startedAt) / 1000),
    }];
    const peers = this.#node.livePeers(now).sort((a, b) => (a.id < b.id ? -1 : 1));
    for (const p of peers) {
      out.push({
        id: p.id,
        version: p.version ?? "",
        self: false,
        clients: p.clients,
        uptime: p.startedAt ? Math.max(0, Math.floor((now - p.startedAt) / 1000)) : 0,
      });
    }
    return out;
  }

  sys(): [string, string][] {
    const nodes = this.nodes();
    const out: [string, string][] = [
      ["$SYS/broker/cluster/nodes", String(nodes.length)],
      ["$SYS/broker/cluster/node_id", this.#node.id],
    ];
    const live = new Set<string>();
    for (const n of nodes) {
      live.add(n.id);
      this.#shown.add(n.id);
      out.push([`$SYS/broker/cluster/node/${n.id}/clients`, String(n.clients)]);
    }
    // A node that left: its retained value is cleared (an empty retained payload).
    for (const id of this.#shown) {
      if (live.has(id)) continue;
      this.#shown.delete(id);
      out.push([`$SYS/broker/cluster/node/${id}/clients`, ""]);
    }
    return out;
  }

  metrics(): string {
    const nodes = this.nodes();
    const f = this.#fabric;
    const lines: string[] = [];
    const family = (name: string, kind: string, help: string) =>
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${kind}`);
    /** A family with one value. */
    const one = (name: string, kind: string, help: string, value: number) => {
      family(name, kind, help);
      lines.push(`${name} ${value}`);
    };
    one(
      "midge_cluster_nodes",
      "gauge",
      "Nodes of the cluster this node sees, itself included.",
      nodes.length,
    );
    family("midge_cluster_node_clients", "gauge", "Clients connected to each node of the cluster.");
    for (const n of nodes) lines.push(`midge_cluster_node_clients{node="${n.id}"} ${n.clients}`);
    one(
      "midge_cluster_messages_forwarded_total",
      "counter",
      "Messages this node sent to the other nodes (once each, whatever the receivers).",
      f.forwarded,
    );
    one(
      "midge_cluster_messages_received_total",
      "counter",
      "Messages from other nodes delivered to this node's subscribers.",
      f.received,
    );
    one(
      "midge_cluster_jetstream_pending",
      "gauge",
      "QoS 1/2 messages sent to JetStream and not yet stored (their acknowledgements wait).",
      f.pending,
    );
    one(
      "midge_cluster_messages_caught_up_total",
      "counter",
      "QoS 1/2 messages read back from the stream after this node lost NATS for a while.",
      f.caughtUp,
    );
    const r = this.#broker.registry;
    if (r instanceof KvSessions) {
      one(
        "midge_cluster_sessions_taken_over_total",
        "counter",
        "Client ids this node took from another node.",
        r.takeovers,
      );
      one(
        "midge_cluster_sessions_resumed_total",
        "counter",
        "Sessions of a dead node this node rebuilt from the cluster and the message stream.",
        r.resumed,
      );
      one(
        "midge_cluster_messages_replayed_total",
        "counter",
        "Stream messages read for sessions of a dead node.",
        r.replayed,
      );
    }
    return lines.join("\n") + "\n";
  }

  async clients(query: URLSearchParams): Promise<ApiResponse> {
    const limit = Number(query.get("limit") ?? MAX_CLUSTER_CLIENTS);
    const offset = Number(query.get("offset") ?? 0);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_CLUSTER_CLIENTS) {
      return apiError(400, `limit: expected an integer 1-${MAX_CLUSTER_CLIENTS} with cluster=1`);
    }
    if (!Number.isInteger(offset) || offset < 0 || offset > 1_000_000) {
      return apiError(400, "offset: expected an integer 0-1000000");
    }
    // Each node lists its first offset+limit; the pages are cut from their concatenation.
    const ask = new URLSearchParams(query);
    ask.delete("cluster");
    ask.set("offset", "0");
    ask.set("limit", String(Math.min(offset + limit, MAX_CLUSTER_CLIENTS)));
    const node = this.#node;
    const peers = node.livePeers().sort((a, b) => (a.id < b.id ? -1 : 1));
    const own = adminRead(this.#broker, ["api", "clients"], ask);
    if (own.status !== 200) return own;
    const parts: { id: string; list: ClientList | null }[] = [
      { id: node.id, list: own.body as ClientList },
    ];
    const answers = await Promise.all(peers.map(async (p) => {
      try {
        const m = await node.pub.request(
          `${node.control}.clients.${p.id}`,
          enc.encode(ask.toString()),
          { timeout: CLIENTS_TIMEOUT_MS },
        );
        const r = JSON.parse(dec.decode(m.data)) as { status: number; body: ClientList };
        return { id: p.id, list: r.status === 200 ? r.body : null };
      } catch {
        return { id: p.id, list: null };
      }
    }));
    parts.push(...answers);
    let total = 0;
    const all: Record<string, unknown>[] = [];
    const unreachable: string[] = [];
    for (const { id, list } of parts) {
      if (!list) {
        unreachable.push(id);
        continue;
      }
      total += list.total;
      for (const c of list.clients) all.push({ node: id, ...c });
    }
    const clients = all.slice(offset, offset + limit);
    return {
      status: 200,
      body: {
        total,
        offset,
        count: clients.length,
        truncated: offset + clients.length < total,
        nodes: parts.map((p) => p.id),
        unreachable,
        clients,
      },
    };
  }
}
