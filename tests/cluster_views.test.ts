/**
 * What an operator sees of a cluster from one node, on 3 Midge nodes over real nats-servers:
 * `$SYS/broker/cluster/...` (nodes, clients per node), `$SYS` kept per node (neither forwarded
 * nor stored in the retained bucket), the cluster's Prometheus metrics, and the admin API's
 * client list gathered from every node (`GET /api/clients?cluster=1`).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { MqttClient } from "mqtt";
import { collect, connect, endAll, until } from "./helpers/broker.ts";
import { startNode, type TestNode } from "./helpers/cluster.ts";
import { type NatsCluster, startNatsCluster } from "./helpers/nats.ts";
import { Ops } from "../src/sys/ops.ts";
import { NodeView } from "../src/cluster/view.ts";
import type { NatsFabric } from "../src/cluster/fabric.ts";
import { retainedKey } from "../src/cluster/retained.ts";

const TOKEN = "cluster-views-admin-token";
let nats: NatsCluster;
const nodes: TestNode[] = [];
const ops: Ops[] = [];
const clients: MqttClient[] = [];

before(async () => {
  nats = await startNatsCluster(3);
  const urls = nats.urls();
  for (let i = 0; i < 3; i++) {
    const n = await startNode(
      [...urls.slice(i), ...urls.slice(0, i)],
      `n${i + 1}`,
      { http_listener: "127.0.0.1:0", admin_token: TOKEN, sys_interval: 0 },
      "v",
    );
    nodes.push(n);
    const o = new Ops(n.broker);
    const view = new NodeView(n.node, n.broker.fabric as NatsFabric, n.broker);
    view.start();
    o.setCluster(view);
    await o.start();
    ops.push(o);
  }
  await until(() => nodes.every((x) => x.node.livePeers().length === 2), 15_000, "peers");
  // One client on n2, two on n3.
  clients.push(await connect(nodes[1], { clientId: "view-b1" }));
  clients.push(await connect(nodes[2], { clientId: "view-c1" }));
  clients.push(await connect(nodes[2], { clientId: "view-c2", clean: false }));
  // n1 hears it in their next heartbeats.
  await until(
    () => {
      const p = new Map(nodes[0].node.livePeers().map((x) => [x.id, x.clients]));
      return p.get("n2") === 1 && p.get("n3") === 2;
    },
    10_000,
    "client counts in heartbeats",
  );
});

after(async () => {
  await endAll(...clients);
  for (const o of ops) await o.stop();
  await Promise.allSettled(nodes.map((n) => n.stop()));
  await nats?.stop();
});

function http(i: number, path: string, auth = true): Promise<Response> {
  const h = ops[i].http!;
  return fetch(`http://127.0.0.1:${h.port}${path}`, {
    headers: auth ? { Authorization: `Bearer ${TOKEN}` } : {},
  });
}

test("cluster view: $SYS/broker/cluster/nodes, node_id and the clients of each node", async () => {
  const sub = await connect(nodes[0], { clientId: "view-sys" });
  try {
    const got = collect(sub);
    ops[0].sys.tick();
    await sub.subscribeAsync("$SYS/broker/cluster/#");
    const msgs = await got.next(5, 10_000);
    const values = Object.fromEntries(msgs.map((m) => [m.topic, m.payload]));
    assert.equal(values["$SYS/broker/cluster/nodes"], "3");
    assert.equal(values["$SYS/broker/cluster/node_id"], "n1");
    assert.equal(values["$SYS/broker/cluster/node/n2/clients"], "1");
    assert.equal(values["$SYS/broker/cluster/node/n3/clients"], "2");
    assert.ok(Number(values["$SYS/broker/cluster/node/n1/clients"]) >= 0);
  } finally {
    await endAll(sub);
  }
});

test("cluster view: a node's own $SYS publishes stay on that node: not forwarded, not in the retained bucket [MQTT-4.7.2-1]", async () => {
  const [a, b] = nodes;
  const subB = await connect(b, { clientId: "view-sys-b" });
  const pubA = await connect(a, { clientId: "view-pub-a" });
  try {
    const got = collect(subB);
    await subB.subscribeAsync(["$SYS/broker/probe", "probe/after"]);
    const fabricA = a.broker.fabric as NatsFabric;
    const before = fabricA.forwarded;
    ops[0].sys.publish("$SYS/broker/probe", "from n1");
    assert.equal(fabricA.forwarded, before, "the $SYS publish is not handed to NATS");
    // A client's message after it, from the same node, on the same NATS connection: once it has
    // arrived, a forwarded $SYS message would have arrived before it.
    await pubA.publishAsync("probe/after", "x", { qos: 0 });
    const msgs = await got.next(1, 10_000);
    assert.deepEqual(msgs.map((m) => m.topic), ["probe/after"]);
    const kv = await a.node.kv("v_retained");
    assert.equal(await kv.get(retainedKey("$SYS/broker/probe")), null, "not in the KV bucket");
    assert.equal(await kv.get(retainedKey("$SYS/broker/cluster/nodes")), null);
    // The node itself keeps it, as a single broker does.
    assert.equal(a.broker.retained.size > 0, true);
  } finally {
    await endAll(subB, pubA);
  }
});

test("cluster view: /metrics has the cluster's nodes, clients per node, forwarded and received counts, JetStream backlog", async () => {
  const [a, b] = nodes;
  const subB = await connect(b, { clientId: "view-metrics-b" });
  const pubA = await connect(a, { clientId: "view-metrics-a" });
  try {
    const got = collect(subB);
    await subB.subscribeAsync("metrics/x", { qos: 1 });
    await pubA.publishAsync("metrics/x", "1", { qos: 1 });
    await got.next(1, 10_000);
    const textA = await (await http(0, "/metrics", false)).text();
    const textB = await (await http(1, "/metrics", false)).text();
    const value = (text: string, line: string) => {
      const m = new RegExp(`^${line.replace(/[{}"]/g, "\\$&")} (\\S+)$`, "m").exec(text);
      assert.ok(m, `${line} in /metrics`);
      return Number(m[1]);
    };
    assert.equal(value(textA, "midge_cluster_nodes"), 3);
    assert.equal(value(textA, 'midge_cluster_node_clients{node="n3"}'), 2);
    assert.ok(value(textA, "midge_cluster_messages_forwarded_total") >= 1);
    assert.ok(value(textB, "midge_cluster_messages_received_total") >= 1);
    assert.equal(value(textA, "midge_cluster_jetstream_pending"), 0);
    // Nothing died and nobody lost NATS here.
    assert.equal(value(textA, "midge_cluster_sessions_resumed_total"), 0);
    assert.equal(value(textA, "midge_cluster_messages_caught_up_total"), 0);
    assert.match(textA, /^# TYPE midge_cluster_messages_forwarded_total counter$/m);
    // One HELP and TYPE per family, as Prometheus requires.
    assert.equal(textA.match(/^# HELP midge_cluster_node_clients /gm)?.length, 1);
  } finally {
    await endAll(subB, pubA);
  }
});

test("cluster view: GET /api/clients?cluster=1 lists every node's clients with their node", async () => {
  const res = await http(0, "/api/clients?cluster=1");
  assert.equal(res.status, 200);
  const body = await res.json();
  const byId = new Map(
    (body.clients as { id: string; node: string }[]).map((c) => [c.id, c.node]),
  );
  assert.equal(byId.get("view-b1"), "n2");
  assert.equal(byId.get("view-c1"), "n3");
  assert.equal(byId.get("view-c2"), "n3");
  assert.deepEqual(body.nodes, ["n1", "n2", "n3"]);
  assert.deepEqual(body.unreachable, []);
  assert.equal(body.total, body.clients.length);

  // Paging over the whole cluster, and the same search on every node.
  const page = await (await http(0, "/api/clients?cluster=1&search=view-c&limit=1&offset=1"))
    .json();
  assert.equal(page.total, 2);
  assert.equal(page.count, 1);
  assert.equal(page.clients[0].node, "n3");
  // Without cluster=1: this node's clients only.
  const local = await (await http(0, "/api/clients")).json();
  assert.equal(local.clients.some((c: { id: string }) => c.id === "view-b1"), false);
  // Bounded, and the token is required as for every admin read.
  assert.equal((await http(0, "/api/clients?cluster=1&limit=5000")).status, 400);
  assert.equal((await http(0, "/api/clients?cluster=1", false)).status, 401);
});
