/**
 * Faults of the NATS underneath a cluster, with `midge serve` processes (under the runtime that
 * runs the test) and mosquitto_pub/mosquitto_sub as clients:
 * - NATS unreachable at start: one line naming the URLs, then the node keeps trying and starts
 *   once a nats-server appears;
 * - NATS lost while running: clients connected to one node keep talking to each other, new
 *   clients are admitted (MQTT.js) and talk too, and traffic between nodes resumes once the
 *   nats-servers are back on the same ports, including a QoS 1 message published (and
 *   acknowledged only after it was stored) while NATS was away; the owners of the client ids
 *   admitted meanwhile are written then;
 * - never a stack trace on stderr.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { collect, endAll, freePort } from "./helpers/broker.ts";
import { natsServerPath, startNatsCluster } from "./helpers/nats.ts";
import {
  mosquittoPub,
  type Proc,
  run,
  stackTraceLines,
  subWhilePublishing,
} from "./helpers/procs.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const runtime = process.env.MIDGE_TEST_RUNTIME ?? ("Bun" in globalThis ? "bun" : "deno");
const bin = join(root, "node_modules", ".bin", runtime);
const prefix = runtime === "deno" ? ["run", "-A", "src/main.ts"] : ["src/main.ts"];
const dir = mkdtempSync(join(tmpdir(), "midge-cluster-faults-"));
const procs: Proc[] = [];
after(async () => {
  await Promise.allSettled(procs.map((p) => p.stop("SIGKILL")));
  rmSync(dir, { recursive: true, force: true });
});

/** Starts `midge serve` as node `id` on `urls`; resolves with the process and its MQTT port. */
function serve(id: string, urls: string[], cluster = "f"): Proc {
  const conf = join(dir, `${id}-${cluster}.toml`);
  writeFileSync(
    conf,
    [
      `persistence = false`,
      `sys_interval = 0`,
      `[[listener]]`,
      `port = 0`,
      `bind_address = "127.0.0.1"`,
      `[cluster]`,
      `node_id = "${id}"`,
      `servers = [${urls.map((u) => JSON.stringify(u)).join(", ")}]`,
      `name = "${cluster}"`,
      "",
    ].join("\n"),
  );
  const p = run(bin, [...prefix, "serve", "-c", conf], {});
  procs.push(p);
  return p;
}

/** An MQTT.js client of `port` that does not reconnect, with its CONNACK. */
async function connectNew(
  port: number,
  opts: IClientOptions,
): Promise<{ client: MqttClient; connack: { sessionPresent: boolean } }> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
    reconnectPeriod: 0,
    connectTimeout: 30_000,
    ...opts,
  });
  const connack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => {
    client.once("connect", resolve);
    client.once("error", reject);
  });
  return { client, connack };
}

async function mqttPort(p: Proc, what: string): Promise<number> {
  const m = await p.waitFor(/listening mqtt on 127\.0\.0\.1:(\d+)/, 90_000, what);
  return Number(m[1]);
}

test(
  "cluster faults: NATS unreachable at start gives one line naming the URLs, then the node starts once NATS is there",
  {
    timeout: 180_000,
  },
  async () => {
    const port = await freePort();
    const url = `nats://127.0.0.1:${port}`;
    const node = serve("late", [url], "late");
    const warn = /cannot reach NATS at nats:\/\/127\.0\.0\.1:(\d+) yet; still trying\./;
    const warnings = () => node.out().split("\n").filter((l) => warn.test(l));
    const m = await node.waitFor(warn, 60_000, "the warning");
    assert.equal(Number(m[1]), port, "the line names the URL");

    // A nats-server (JetStream) appears on that port.
    const nats = run(natsServerPath()!, [
      "-a",
      "127.0.0.1",
      "-p",
      String(port),
      "-js",
      "-sd",
      join(dir, "late-js"),
    ]);
    procs.push(nats);
    try {
      const mqtt = await mqttPort(node, "the node once NATS is up");
      assert.equal(warnings().length, 1, "one line, not one per attempt");
      const got = await subWhilePublishing(
        mqtt,
        "late/#",
        1,
        () => mosquittoPub(mqtt, ["-t", "late/x", "-m", "works"]),
      );
      assert.deepEqual(got, ["late/x works"]);
      assert.deepEqual(stackTraceLines(node.out()), [], "no stack trace");
    } finally {
      await node.stop();
      await nats.stop();
    }
  },
);

test(
  "cluster faults: NATS lost while running: local traffic flows, new clients are admitted, cross-node traffic and a QoS 1 message acknowledged meanwhile arrive once NATS is back",
  {
    timeout: 240_000,
  },
  async () => {
    const nats = await startNatsCluster(3);
    const urls = nats.urls();
    const clients: MqttClient[] = [];
    const n1 = serve("n1", urls);
    const n2 = serve("n2", [...urls.slice(1), urls[0]]);
    try {
      const [p1, p2] = [await mqttPort(n1, "n1"), await mqttPort(n2, "n2")];
      await n1.waitFor(/node n2 joined\./, 30_000, "n1 sees n2");

      // A persistent QoS 1 subscriber on n1, and traffic from n2 reaching it.
      const subArgs = ["-p", String(p1), "-i", "faults-sub", "-c", "-q", "1", "-t", "x/#", "-v"];
      const sub = run("mosquitto_sub", ["-h", "127.0.0.1", ...subArgs]);
      procs.push(sub);
      const seen = (re: RegExp, what: string) => sub.waitFor(re, 90_000, what);
      for (let i = 0; !/x\/before 1/.test(sub.out()); i++) {
        assert.ok(i < 100, `cross-node traffic before the fault:\n${sub.out()}`);
        assert.equal(await mosquittoPub(p2, ["-t", "x/before", "-m", "1"]), 0);
        await new Promise((r) => setTimeout(r, 300));
      }

      // Two clients of n1, connected before the fault.
      const localSub = await mqtt.connectAsync(`mqtt://127.0.0.1:${p1}`, {
        clientId: "faults-local-sub",
        reconnectPeriod: 0,
      });
      const localPub = await mqtt.connectAsync(`mqtt://127.0.0.1:${p1}`, {
        clientId: "faults-local-pub",
        reconnectPeriod: 0,
      });
      clients.push(localSub, localPub);

      const remotePub = await mqtt.connectAsync(`mqtt://127.0.0.1:${p2}`, {
        clientId: "faults-remote-pub",
        reconnectPeriod: 0,
      });
      clients.push(remotePub);

      // Every nats-server goes.
      await Promise.all(nats.servers.map((s) => s.kill("SIGKILL")));
      await n1.waitFor(/NATS \w+ connection to .* lost/, 30_000, "n1 notices");
      await n2.waitFor(/NATS \w+ connection to .* lost/, 30_000, "n2 notices");

      // Clients connected to one node still reach each other.
      const got = collect(localSub);
      await localSub.subscribeAsync("local/#", { qos: 1 });
      localPub.publish("local/a", "still here", { qos: 0 });
      localPub.publish("local/b", "qos 1 too", { qos: 1 });
      const msgs = await got.next(2, 20_000);
      assert.deepEqual(msgs.map((x) => `${x.topic} ${x.payload}`), [
        "local/a still here",
        "local/b qos 1 too",
      ]);

      // New clients are admitted while the owners of their ids cannot be written: a persistent
      // session starts new here (Session Present 0), and their local traffic flows.
      const freshSub = await connectNew(p1, { clientId: "faults-fresh-sub", clean: false });
      assert.equal(freshSub.connack.sessionPresent, false, "a new session");
      const freshPub = await connectNew(p1, { clientId: "faults-fresh-pub" });
      clients.push(freshSub.client, freshPub.client);
      const fresh = collect(freshSub.client);
      await freshSub.client.subscribeAsync("new/#", { qos: 1 });
      await freshPub.client.publishAsync("new/a", "qos 0 without NATS", { qos: 0 });
      // Delivered here at once; its PUBACK waits for JetStream, like every QoS 1/2 message's.
      const freshAcked = freshPub.client.publishAsync("new/b", "qos 1 without NATS", { qos: 1 });
      assert.deepEqual((await fresh.next(2, 20_000)).map((x) => `${x.topic} ${x.payload}`), [
        "new/a qos 0 without NATS",
        "new/b qos 1 without NATS",
      ]);
      // One client id admitted on both nodes meanwhile, on n2 last: n2 keeps it once NATS is
      // back [MQTT-3.1.4-3 v5].
      const v5 = { protocolVersion: 5 as const, clientId: "faults-twice" };
      const twice1 = await connectNew(p1, v5);
      const twice1Gone = new Promise<number | undefined>((r) => {
        twice1.client.on("disconnect", (pk) => r(pk.reasonCode));
        twice1.client.on("close", () => r(undefined));
      });
      await new Promise((r) => setTimeout(r, 50));
      const twice2 = await connectNew(p2, v5);
      clients.push(twice1.client, twice2.client);
      const onN2 = collect(twice2.client);
      await twice2.client.subscribeAsync("new/#", { qos: 1 });

      // A QoS 1 publish on n2 for n1's subscriber: its PUBACK waits for JetStream.
      let acked = false;
      const during = remotePub.publishAsync("x/during", "2", { qos: 1 }).then(() => (acked = true));
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(acked, false, "no PUBACK while the message cannot be stored");

      // The nats-servers come back on the same ports.
      for (const s of nats.servers) await s.restart();
      await n1.waitFor(/NATS \w+ connection back/, 60_000, "n1 reconnects");
      await n2.waitFor(/NATS \w+ connection back/, 60_000, "n2 reconnects");
      await during;
      await freshAcked;
      await seen(/x\/during 2/, "the QoS 1 message published while NATS was away");

      // The owners of the ids admitted without NATS are written: the later CONNECT of the id
      // admitted on both nodes keeps it.
      await n1.waitFor(/owners of the clients admitted without NATS are written/, 60_000, "n1");
      await n2.waitFor(/owners of the clients admitted without NATS are written/, 60_000, "n2");
      const reason = await twice1Gone;
      assert.ok(reason === undefined || reason === 0x8e, `n1's client of the id left (${reason})`);
      assert.ok(twice2.client.connected, "n2's client of the id stays");

      // The clients admitted without NATS reach the other node, both ways.
      for (let i = 0; !onN2.messages.some((m) => m.topic === "new/c"); i++) {
        assert.ok(i < 100, "n1's new client reaches n2");
        await freshPub.client.publishAsync("new/c", "to n2", { qos: 1 });
        await new Promise((r) => setTimeout(r, 300));
      }
      for (let i = 0; !fresh.messages.some((m) => m.topic === "new/d"); i++) {
        assert.ok(i < 100, "n2 reaches n1's new client");
        await remotePub.publishAsync("new/d", "to n1", { qos: 1 });
        await new Promise((r) => setTimeout(r, 300));
      }
      // The new persistent session is owned by n1 now: its client moves to n2 with it.
      freshSub.client.end(true);
      const moved = await connectNew(p2, { clientId: "faults-fresh-sub", clean: false });
      clients.push(moved.client);
      assert.equal(moved.connack.sessionPresent, true, "the session written as n1's moves");

      // New cross-node traffic flows again.
      for (let i = 0; !/x\/after 3/.test(sub.out()); i++) {
        assert.ok(i < 200, `cross-node traffic after the fault:\n${sub.out()}`);
        await mosquittoPub(p2, ["-t", "x/after", "-m", "3"]);
        await new Promise((r) => setTimeout(r, 300));
      }
      for (const n of [n1, n2]) assert.deepEqual(stackTraceLines(n.out()), [], "no stack trace");
    } finally {
      await endAll(...clients);
      await n1.stop();
      await n2.stop();
      await nats.stop();
    }
  },
);
