/**
 * Midge cluster nodes for tests: real nats-servers (tests/helpers/nats.ts) and Broker nodes in
 * this process, each with its own fabric and retained store, as `midge serve` assembles them.
 */
import process from "node:process";
import { assembleBroker } from "../../src/assemble.ts";
import { joinCluster } from "../../src/cluster/cluster.ts";
import { CLUSTER_KEYS, type Config, defaults } from "../../src/config/schema.ts";
import { Logger, silentLogger } from "../../src/sys/log.ts";
import { type TestBroker, testConfig, until } from "./broker.ts";
import type { ClusterNode } from "../../src/cluster/node.ts";
import { type NatsCluster, startNatsCluster } from "./nats.ts";

/** A Midge node of a test cluster. */
export interface TestNode extends TestBroker {
  id: string;
  /** Its membership: connections, peers. */
  node: ClusterNode;
}

/** Starts a Midge node with `node_id` on the NATS servers `urls`. */
export async function startNode(
  urls: string[],
  id: string,
  over: Partial<Config> = {},
  name = "t",
): Promise<TestNode> {
  const log = process.env.MIDGE_TEST_LOG ? new Logger(["all"]) : silentLogger;
  const cluster = { ...defaults(CLUSTER_KEYS), node_id: id, servers: urls, name, replicas: 3 };
  const config = testConfig({ cluster, ...over });
  const parts = await joinCluster(cluster, log);
  const broker = assembleBroker(config, log, parts).broker;
  parts.attach(broker);
  const [l] = await broker.start();
  return {
    id,
    node: parts.node,
    broker,
    port: l.port,
    url: `mqtt://127.0.0.1:${l.port}`,
    stop: async () => {
      await broker.stop();
      await parts.node.stop();
    },
  };
}

/** Three nats-servers and `n` Midge nodes, each node on its own server (round robin). */
export async function startCluster(
  n: number,
): Promise<{ nats: NatsCluster; nodes: TestNode[]; stop(): Promise<void> }> {
  const nats = await startNatsCluster(3);
  const nodes: TestNode[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const urls = nats.urls();
      // Each node starts on a different server, then knows them all.
      const ordered = [...urls.slice(i % urls.length), ...urls.slice(0, i % urls.length)];
      nodes.push(await startNode(ordered, `n${i + 1}`));
    }
    // Every node has heard every other's heartbeat.
    await until(() => nodes.every((x) => x.node.livePeers().length === n - 1), 10_000, "peers");
  } catch (e) {
    await Promise.allSettled(nodes.map((x) => x.stop()));
    await nats.stop();
    throw e;
  }
  return {
    nats,
    nodes,
    async stop() {
      await Promise.allSettled(nodes.map((x) => x.stop()));
      await nats.stop();
    },
  };
}
