/**
 * Faults of the NATS underneath a cluster, with `midge serve` processes (under the runtime that
 * runs the test) and mosquitto_pub/mosquitto_sub as clients:
 * - NATS unreachable at start: one line naming the URLs, then the node keeps trying and starts
 *   once a nats-server appears;
 * - NATS lost while running: clients connected to one node keep talking to each other, and traffic between
 *   nodes resumes once the nats-servers are back on the same ports, including a QoS 1 message
 *   published (and acknowledged only after it was stored) while NATS was away;
 * - never a stack trace on stderr.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import mqtt, { type MqttClient } from "mqtt";
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
  "cluster faults: NATS lost while running: local traffic flows, cross-node traffic and a QoS 1 message acknowledged meanwhile arrive once NATS is back",
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

      // A new connection cannot be checked for its client id's owner: refused, server unavailable.
      const refused = run("mosquitto_pub", [
        "-h",
        "127.0.0.1",
        "-p",
        String(p1),
        "-t",
        "t",
        "-m",
        "x",
      ]);
      assert.notEqual(await refused.exited(30_000), 0);
      assert.match(refused.out(), /unavailable/i);

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
      await seen(/x\/during 2/, "the QoS 1 message published while NATS was away");

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
