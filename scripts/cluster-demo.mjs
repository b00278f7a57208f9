#!/usr/bin/env node
/**
 * A Midge cluster on this machine, to try: 3 nats-servers (routed to each other, JetStream on)
 * and 3 Midge nodes (`midge serve -c <generated toml>`), each node on its own nats-server. Prints
 * how to use mosquitto_sub on one node and mosquitto_pub on another, then runs until Ctrl-C
 * (SIGINT) or SIGTERM, and stops everything it started.
 *
 * Usage: scripts/cluster-demo.sh [--free-ports] [--dir DIR]
 *   --free-ports  let the OS pick every port (default: MQTT 1884-1886, HTTP 8081-8083,
 *                 NATS 4222-4224, NATS routes 6222-6224)
 *   --dir DIR     keep the generated files (configurations, logs, JetStream stores) in DIR
 *                 (default: a temporary directory, removed at the end)
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const N = 3;
const { values: args } = parseArgs({
  options: { "free-ports": { type: "boolean" }, dir: { type: "string" } },
});

/** Every process started, so that all of them are stopped at the end. */
const children = [];
let stopping = false;

function say(line) {
  process.stdout.write(`cluster-demo: ${line}\n`);
}

function natsServer() {
  for (const p of ["/usr/bin/nats-server", "/usr/local/bin/nats-server", "/usr/sbin/nats-server"]) {
    if (existsSync(p)) return p;
  }
  const r = spawnSync("sh", ["-c", "command -v nats-server"], { encoding: "utf8" });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : null;
}

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** Resolves with the first match of `re` in the child's output (stdout and stderr). */
function waitFor(child, re, what, ms = 60_000) {
  return new Promise((ok, fail) => {
    let text = "";
    const timer = setTimeout(() => done(new Error(`${what}: not ready after ${ms / 1000} s`)), ms);
    const onData = (b) => {
      text += b;
      const m = re.exec(text);
      if (m) done(null, m);
    };
    const onExit = (code) => done(new Error(`${what} exited (${code}):\n${text.slice(-1500)}`));
    function done(e, m) {
      clearTimeout(timer);
      child.stdout?.off("data", onData);
      child.stderr?.off("data", onData);
      child.off("exit", onExit);
      if (e) fail(e);
      else ok(m);
    }
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", onExit);
  });
}

/** Copies a child's output lines to ours, each after `[name] `. */
function relay(child, name) {
  for (const stream of [child.stdout, child.stderr]) {
    let rest = "";
    stream?.on("data", (b) => {
      const lines = (rest + b).split("\n");
      rest = lines.pop();
      for (const l of lines) process.stdout.write(`[${name}] ${l}\n`);
    });
  }
}

async function stopAll(code) {
  if (stopping) return;
  stopping = true;
  say("stopping");
  // Midge nodes first (they leave NATS cleanly), then the nats-servers.
  for (const group of [children.filter((c) => c.midge), children.filter((c) => !c.midge)]) {
    await Promise.all(group.map(({ proc }) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      return new Promise((ok) => {
        const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
        proc.once("exit", () => {
          clearTimeout(t);
          ok();
        });
        proc.kill("SIGTERM");
      });
    }));
  }
  if (!args.dir) rmSync(dir, { recursive: true, force: true });
  say("stopped");
  process.exit(code);
}

const bin = natsServer();
if (!bin) {
  process.stderr.write(
    "cluster-demo: nats-server is not installed (Debian: apt-get install nats-server)\n",
  );
  process.exit(1);
}
// Built once here: three nodes starting at once would each build it (scripts/midge.mjs).
if (!existsSync(join(root, "src", "codec", "wasm_bytes.generated.ts"))) {
  say("building the WebAssembly first");
  const built = spawnSync(process.execPath, [join(root, "scripts", "build-wasm.mjs")], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  if (built.status !== 0) process.exit(built.status ?? 1);
}
const dir = args.dir ? resolve(args.dir) : mkdtempSync(join(tmpdir(), "midge-cluster-demo-"));
mkdirSync(dir, { recursive: true });
process.on("SIGINT", () => void stopAll(0));
process.on("SIGTERM", () => void stopAll(0));

const free = args["free-ports"];
const ports = [];
for (let i = 0; i < N; i++) {
  ports.push({
    nats: free ? await freePort() : 4222 + i,
    route: free ? await freePort() : 6222 + i,
    mqtt: free ? await freePort() : 1884 + i,
    http: free ? await freePort() : 8081 + i,
  });
}

try {
  // The nats-servers: every one lists every route, JetStream in its own store directory.
  const routes = ports.map((p) => `"nats-route://127.0.0.1:${p.route}"`).join(", ");
  await Promise.all(ports.map(async (p, i) => {
    const name = `nats${i + 1}`;
    const conf = join(dir, `${name}.conf`);
    writeFileSync(
      conf,
      [
        `server_name: ${name}`,
        `listen: 127.0.0.1:${p.nats}`,
        `jetstream { store_dir: ${JSON.stringify(join(dir, name))} }`,
        `cluster { name: midge-demo, listen: 127.0.0.1:${p.route}, routes: [${routes}] }`,
        "",
      ].join("\n"),
    );
    const proc = spawn(bin, ["-c", conf], { stdio: ["ignore", "pipe", "pipe"] });
    children.push({ proc, midge: false });
    await waitFor(proc, /Server is ready/, name);
    proc.stdout.resume();
    proc.stderr.resume();
  }));
  say(`${N} nats-servers (clustered, JetStream) on ${ports.map((p) => p.nats).join(", ")}`);

  // The Midge nodes, each starting on its own nats-server and knowing all of them.
  const urls = ports.map((p) => `nats://127.0.0.1:${p.nats}`);
  await Promise.all(ports.map(async (p, i) => {
    const id = `n${i + 1}`;
    const conf = join(dir, `${id}.toml`);
    const servers = [...urls.slice(i), ...urls.slice(0, i)];
    writeFileSync(
      conf,
      [
        `# Midge node ${id} of the demo cluster (scripts/cluster-demo.sh)`,
        `http_listener = "127.0.0.1:${p.http}"`,
        `admin_token = "demo-admin-token"`,
        `persistence_location = ${JSON.stringify(join(dir, `${id}-data`))}`,
        `[[listener]]`,
        `port = ${p.mqtt}`,
        `bind_address = "127.0.0.1"`,
        `[cluster]`,
        `node_id = "${id}"`,
        `servers = [${servers.map((u) => JSON.stringify(u)).join(", ")}]`,
        `name = "demo"`,
        "",
      ].join("\n"),
    );
    const proc = spawn(
      process.execPath,
      [join(root, "scripts", "midge.mjs"), "serve", "-c", conf],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    children.push({ proc, midge: true });
    const ready = waitFor(proc, /listening mqtt on [^\s]+:(\d+)/, `node ${id}`);
    relay(proc, id);
    await ready;
    say(`node ${id}: mqtt 127.0.0.1:${p.mqtt}, http 127.0.0.1:${p.http} (config ${conf})`);
  }));
  const [a, b, c] = ports;
  say("ready. Try it, in other terminals:");
  process.stdout.write(
    [
      `  mosquitto_sub -p ${a.mqtt} -t 'demo/#' -v                  # a subscriber on node n1`,
      `  mosquitto_pub -p ${b.mqtt} -t demo/hello -m 'from n2'      # a publisher on node n2`,
      `  mosquitto_pub -p ${c.mqtt} -t demo/kept -r -q 1 -m 'kept'  # retained, cluster-wide`,
      `  curl -s -H 'Authorization: Bearer demo-admin-token' 'http://127.0.0.1:${a.http}/api/clients?cluster=1'`,
      `  curl -s http://127.0.0.1:${a.http}/metrics | grep midge_cluster`,
      "Ctrl-C stops everything.",
      "",
    ].join("\n"),
  );
  // A child that dies on its own ends the demo.
  for (const { proc } of children) {
    proc.once("exit", (code, sig) => {
      if (stopping) return;
      say(`a process exited (${code ?? sig}); stopping the rest`);
      void stopAll(1);
    });
  }
} catch (e) {
  process.stderr.write(`cluster-demo: ${e instanceof Error ? e.message : e}\n`);
  await stopAll(1);
}
