/**
 * scripts/cluster-demo.sh end to end, as the README shows it: 3 nats-servers and 3 `midge serve`
 * processes on generated configurations, mosquitto_sub on one node and mosquitto_pub on another,
 * then Ctrl-C (SIGINT) stops every process it started.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { mosquittoPub, run, stackTraceLines, subWhilePublishing } from "./helpers/procs.ts";

const root = dirname(dirname(fileURLToPath(import.meta.url)));

/** True when something accepts TCP connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

test(
  "cluster demo: mosquitto_pub on one node reaches mosquitto_sub on another, retained messages cluster-wide, Ctrl-C stops everything",
  {
    timeout: 180_000,
  },
  async () => {
    const demo = run("sh", [join(root, "scripts", "cluster-demo.sh"), "--free-ports"]);
    try {
      await demo.waitFor(/Ctrl-C stops everything/, 120_000, "the demo");
      const ports: Record<string, number> = {};
      for (const m of demo.out().matchAll(/node (n\d): mqtt 127\.0\.0\.1:(\d+)/g)) {
        ports[m[1]] = Number(m[2]);
      }
      assert.deepEqual(Object.keys(ports).sort(), ["n1", "n2", "n3"]);
      const natsPorts = /on (\d+), (\d+), (\d+)\n/.exec(demo.out())!.slice(1).map(Number);
      // The commands it prints are the ones to type.
      assert.match(demo.out(), new RegExp(`mosquitto_sub -p ${ports.n1} -t 'demo/#' -v`));
      assert.match(demo.out(), new RegExp(`mosquitto_pub -p ${ports.n2} -t demo/hello`));

      // A live message from n2 to a subscriber on n1.
      const live = await subWhilePublishing(
        ports.n1,
        "demo/#",
        1,
        () => mosquittoPub(ports.n2, ["-t", "demo/hello", "-m", "from n2"]),
      );
      assert.deepEqual(live, ["demo/hello from n2"]);

      // A retained QoS 1 message from n3: once mosquitto_pub has its PUBACK, a new subscriber on
      // n2 gets it.
      assert.equal(
        await mosquittoPub(ports.n3, ["-t", "demo/kept", "-r", "-q", "1", "-m", "kept"]),
        0,
      );
      const sub = run("mosquitto_sub", [
        "-p",
        String(ports.n2),
        "-t",
        "demo/kept",
        "-v",
        "-C",
        "1",
        "-W",
        "20",
      ]);
      assert.equal(await sub.exited(30_000), 0, sub.out());
      assert.equal(sub.out().trim(), "demo/kept kept");

      // Ctrl-C: every node and every nats-server goes.
      demo.proc.kill("SIGINT");
      // Deno reports the signal sent rather than the exit code the script chose.
      assert.ok([0, "SIGINT"].includes(await demo.exited(60_000)), demo.out());
      assert.match(demo.out(), /cluster-demo: stopped\n/);
      for (const p of [...Object.values(ports), ...natsPorts]) {
        assert.equal(await listening(p), false, `port ${p} closed after the demo`);
      }
      assert.deepEqual(stackTraceLines(demo.out()), [], "no stack trace");
    } finally {
      await demo.stop("SIGINT", 30_000);
    }
  },
);
