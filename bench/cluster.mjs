// A Midge cluster against single-node Midge and Mosquitto: the `midge bench` scenarios with
// publishers on one node and subscribers on another, and with clients spread over 3 nodes, next
// to the same scenario on one Midge and on one Mosquitto. Also the CPU each process used per
// message delivered. Writes bench/results/cluster.md and cluster.json.
//
// Usage: node bench/cluster.mjs [--duration 3] [--reps 1] [--only pairwise-q0,...] [--out DIR]
//          [--profile DIR]   (node n1 under Bun's --cpu-prof, its .cpuprofile written to DIR)
//          [--placements cross,spread]   (which cluster placements run; both by default)
//          [--before DIR]    (also runs each cluster case with the nodes of another checkout,
//                             e.g. a `git worktree` of an older commit, alternating which goes
//                             first; its rows are marked "before")
//
// 3 nats-servers (routed, JetStream, file store in a temporary directory) and 3 Midge nodes
// (`bun src/main.ts serve`, persistence off: QoS 1/2 messages between nodes are stored in
// JetStream, replicated 3 times, before the publisher's PUBACK). Everything runs on this
// machine, so the nats-servers, the nodes and the load generator share its cores.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values: args } = parseArgs({
  options: {
    duration: { type: "string", default: "3" },
    reps: { type: "string", default: "1" },
    only: { type: "string" },
    out: { type: "string", default: join(root, "bench", "results") },
    // Node n1 runs with Bun's --cpu-prof and writes its .cpuprofile into this directory.
    profile: { type: "string" },
    placements: { type: "string", default: "cross,spread" },
    before: { type: "string" },
  },
});
const DURATION = String(Number(args.duration));
const REPS = Number(args.reps);
const bun = join(root, "node_modules", ".bin", "bun");
const midge = [bun, join(root, "src", "main.ts")];
const TICK = 100; // clock ticks per second in /proc/<pid>/stat

/**
 * The cases: [label, bench flags, where the clients go]. Placement "cross": publishers on n1,
 * subscribers on n2; "spread": publishers round robin on n1..n3, subscribers on n2, n3, n1 (every
 * pair crosses nodes; fan-out subscribers land on all three).
 */
const CASES = [
  ["pairwise-q0", "pairwise QoS 0", ["pairwise", "-q", "0"]],
  ["fan-in-q0", "fan-in QoS 0", ["fan-in", "-q", "0"]],
  ["fan-out-q0", "fan-out QoS 0", ["fan-out", "-q", "0"]],
  ["pairwise-q1", "pairwise QoS 1", ["pairwise", "-q", "1"]],
  ["pairwise-q1p", "pairwise QoS 1 persistent sessions", ["pairwise", "-q", "1", "--persistent"]],
  ["latency-q0", "latency QoS 0 @10k/s", ["latency", "-q", "0", "--rate", "10000"]],
  ["latency-q1", "latency QoS 1 @10k/s", ["latency", "-q", "1", "--rate", "10000"]],
].filter(([id]) => !args.only || args.only.split(",").some((w) => id.startsWith(w)));

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

function waitForPort(port, ms = 60_000) {
  const end = Date.now() + ms;
  return new Promise((ok, fail) => {
    const attempt = () => {
      const s = connect(port, "127.0.0.1");
      s.on("connect", () => {
        s.destroy();
        ok();
      });
      s.on("error", () => {
        s.destroy();
        if (Date.now() > end) fail(new Error(`nothing listens on ${port}`));
        else setTimeout(attempt, 100);
      });
    };
    attempt();
  });
}

function waitForText(child, re, ms = 60_000) {
  return new Promise((ok, fail) => {
    let text = "";
    const t = setTimeout(() => fail(new Error(`not ready: ${text.slice(-500)}`)), ms);
    const on = (b) => {
      text += b;
      if (re.test(text)) {
        clearTimeout(t);
        ok();
      }
    };
    child.stdout.on("data", on);
    child.stderr.on("data", on);
    child.once("exit", () => {
      clearTimeout(t);
      fail(new Error(`exited: ${text.slice(-500)}`));
    });
  });
}

/** utime + stime of a process, in seconds. */
function cpuOf(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / TICK;
}

function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((ok) => {
    const t = setTimeout(() => child.kill("SIGKILL"), 5000);
    child.once("exit", () => {
      clearTimeout(t);
      ok();
    });
    child.kill("SIGTERM");
  });
}

function quiet(child) {
  child.stdout.resume();
  child.stderr.resume();
  return child;
}

/** 3 nats-servers and 3 Midge nodes; returns their processes and the nodes' MQTT ports. */
async function startCluster(dir, tree = root) {
  const n = 3;
  const ports = [];
  for (let i = 0; i < n; i++) {
    ports.push({ nats: await freePort(), route: await freePort(), mqtt: await freePort() });
  }
  const routes = ports.map((p) => `"nats-route://127.0.0.1:${p.route}"`).join(", ");
  // Whatever started is stopped again when a part fails to start.
  const started = [];
  try {
    return await startParts(dir, ports, routes, started, [bun, join(tree, "src", "main.ts")]);
  } catch (e) {
    await Promise.all(started.map(stopChild));
    throw e;
  }
}

async function startParts(dir, ports, routes, started, midge) {
  const nats = await Promise.all(ports.map(async (p, i) => {
    const conf = join(dir, `nats${i}.conf`);
    writeFileSync(
      conf,
      `server_name: s${i}\nlisten: 127.0.0.1:${p.nats}\n` +
        `jetstream { store_dir: "${join(dir, `js${i}`)}" }\n` +
        `cluster { name: b, listen: 127.0.0.1:${p.route}, routes: [${routes}] }\n`,
    );
    const c = spawn("nats-server", ["-c", conf], { stdio: ["ignore", "pipe", "pipe"] });
    started.push(c);
    await waitForText(c, /Server is ready/);
    return quiet(c);
  }));
  const urls = ports.map((p) => `"nats://127.0.0.1:${p.nats}"`);
  const nodes = await Promise.all(ports.map(async (p, i) => {
    const conf = join(dir, `n${i}.toml`);
    writeFileSync(
      conf,
      [
        `persistence = false`,
        `log_type = ["error", "warning"]`,
        `max_inflight_messages = 100`,
        `max_connections = -1`,
        `sys_interval = 0`,
        `[[listener]]`,
        `port = ${p.mqtt}`,
        `bind_address = "127.0.0.1"`,
        `[cluster]`,
        `node_id = "n${i + 1}"`,
        `servers = [${[...urls.slice(i), ...urls.slice(0, i)].join(", ")}]`,
        `name = "bench"`,
        "",
      ].join("\n"),
    );
    const prof = i === 0 && args.profile ? ["--cpu-prof"] : [];
    if (prof.length) mkdirSync(args.profile, { recursive: true });
    const c = spawn(midge[0], [...prof, ...midge.slice(1), "serve", "-c", conf], {
      stdio: ["ignore", "pipe", "pipe"],
      ...(prof.length ? { cwd: args.profile } : {}),
    });
    started.push(c);
    await waitForText(c, /listening mqtt/, 90_000);
    return quiet(c);
  }));
  await sleep(2000); // heartbeats: every node sees the others
  return {
    nats,
    nodes,
    ports: ports.map((p) => p.mqtt),
    async stop() {
      for (const c of nodes) await stopChild(c);
      for (const c of nats) await stopChild(c);
    },
  };
}

async function startSingle(kind, dir, persistent) {
  const port = await freePort();
  let child;
  if (kind === "midge") {
    const conf = join(dir, "single.toml");
    writeFileSync(
      conf,
      [
        `persistence = ${persistent}`,
        `persistence_location = "${join(dir, "single-data")}"`,
        `log_type = ["error", "warning"]`,
        `max_inflight_messages = 100`,
        `max_connections = -1`,
        `sys_interval = 0`,
        `[[listener]]`,
        `port = ${port}`,
        `bind_address = "127.0.0.1"`,
        "",
      ].join("\n"),
    );
    child = spawn(midge[0], [...midge.slice(1), "serve", "-c", conf], {
      stdio: ["ignore", "pipe", "pipe"],
    });
  } else {
    const conf = join(dir, "mosquitto.conf");
    writeFileSync(
      conf,
      [
        `listener ${port} 127.0.0.1`,
        "allow_anonymous true",
        "max_connections -1",
        "set_tcp_nodelay true",
        "max_inflight_messages 100",
        `persistence ${persistent}`,
        `persistence_location ${dir}/`,
        ...(process.getuid?.() === 0 ? ["user root"] : []),
        "",
      ].join("\n"),
    );
    child = spawn("/usr/sbin/mosquitto", ["-c", conf], { stdio: ["ignore", "pipe", "pipe"] });
  }
  quiet(child);
  await waitForPort(port);
  return { child, port, stop: () => stopChild(child) };
}

function bench(flags, portFlags, brokerPid) {
  return new Promise((ok) => {
    const argv = [
      ...midge.slice(1),
      "bench",
      ...flags,
      "-d",
      DURATION,
      ...portFlags,
      "--json",
      "--broker-pid",
      String(brokerPid),
    ];
    const c = spawn(midge[0], argv, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "", err = "";
    c.stdout.on("data", (d) => (out += d));
    c.stderr.on("data", (d) => (err += d));
    c.on("exit", (code) => {
      try {
        ok(JSON.parse(out.trim().split("\n").pop()));
      } catch {
        ok({ errors: [`bench exited ${code}: ${(err || out).slice(0, 300)}`] });
      }
    });
  });
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Runs one case with CPU per message for each process in `pids` (name → pid). */
async function measure(flags, portFlags, pids, brokerPid) {
  const before = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuOf(p)]));
  const r = await bench(flags, portFlags, brokerPid);
  const cpu = {};
  for (const [k, p] of Object.entries(pids)) cpu[k] = cpuOf(p) - before[k];
  // Whole run (set-up, warm-up and window) over every message received in it.
  r.cpuUsPerMsg = Object.fromEntries(
    Object.entries(cpu).map(([k, s]) => [k, r.received ? (s * 1e6) / r.received : undefined]),
  );
  return r;
}

const results = [];
const load = { before: loadavg().map((x) => x.toFixed(1)) };
for (let rep = 0; rep < REPS; rep++) {
  for (const [id, label, flags] of CASES) {
    const persistent = flags.includes("--persistent");
    for (const kind of ["mosquitto", "midge"]) {
      const dir = mkdtempSync(join(tmpdir(), "midge-bench-single-"));
      const b = await startSingle(kind, dir, persistent);
      await sleep(300);
      const r = await measure(flags, ["-p", String(b.port)], { [kind]: b.child.pid }, b.child.pid);
      await b.stop();
      rmSync(dir, { recursive: true, force: true });
      results.push({ id, label, setup: `${kind} single node`, ...r });
      console.log(`${label}  ${kind} single: ${Math.round(r.msgRate ?? 0)} msg/s`);
    }
    const trees = args.before ? (rep % 2 ? [root, args.before] : [args.before, root]) : [root];
    for (
      const [placement, tree] of args.placements.split(",").flatMap((p) => trees.map((t) => [p, t]))
    ) {
      const dir = mkdtempSync(join(tmpdir(), "midge-bench-cluster-"));
      let c;
      for (let attempt = 1; !c; attempt++) {
        // A port picked free may be taken before the node binds it: start again.
        c = await startCluster(dir, tree).catch((e) => {
          if (attempt >= 3) throw e;
          console.log(`  cluster did not start (${e.message.split("\n")[0]}); again`);
          return null;
        });
      }
      const [a, b, d] = c.ports;
      const portFlags = placement === "cross"
        ? ["-p", String(a), "--pub-ports", String(a), "--sub-ports", String(b)]
        : ["-p", String(a), "--pub-ports", `${a},${b},${d}`, "--sub-ports", `${b},${d},${a}`];
      const pids = {
        n1: c.nodes[0].pid,
        n2: c.nodes[1].pid,
        n3: c.nodes[2].pid,
        nats1: c.nats[0].pid,
        nats2: c.nats[1].pid,
        nats3: c.nats[2].pid,
      };
      const r = await measure(flags, portFlags, pids, c.nodes[0].pid);
      await c.stop();
      rmSync(dir, { recursive: true, force: true });
      const setup = (placement === "cross"
        ? "Midge cluster, publishers on n1, subscribers on n2"
        : "Midge cluster, clients spread over 3 nodes") + (tree === root ? "" : " (before)");
      results.push({ id, label, setup, ...r });
      console.log(`${label}  ${setup}: ${Math.round(r.msgRate ?? 0)} msg/s`);
    }
  }
}
load.after = loadavg().map((x) => x.toFixed(1));

// ---------------------------------------------------------------------------------------------
const fmt = (n, d = 0) =>
  n === undefined || n === null || Number.isNaN(n)
    ? "–"
    : n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
const median = (xs) => {
  const v = xs.filter((x) => typeof x === "number" && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return undefined;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
const L = [];
L.push(
  `# Midge cluster, single-node Midge and Mosquitto`,
  "",
  `Generated by \`node bench/cluster.mjs ${process.argv.slice(2).join(" ")}\` on ${
    new Date().toISOString()
  }: ${cpus().length} × ${cpus()[0]?.model}, load average ${load.before.join(" ")} before, ${
    load.after.join(" ")
  } after; ${
    execFileSync("nats-server", ["--version"], { encoding: "utf8" }).trim()
  }. Medians of ${REPS} run(s) of ${DURATION} s (after 1 s warm-up).`,
  "",
  "| scenario | setup | msg/s | p50 ms | p99 ms | lost | CPU µs per message delivered (whole run) |",
  "|---|---|---:|---:|---:|---:|---|",
);
for (const [id, label] of CASES) {
  const setups = [...new Set(results.filter((r) => r.id === id).map((r) => r.setup))];
  for (const setup of setups) {
    const rs = results.filter((r) => r.id === id && r.setup === setup);
    const cpuKeys = Object.keys(rs[0].cpuUsPerMsg ?? {});
    const cpu = cpuKeys.map((k) => `${k} ${fmt(median(rs.map((r) => r.cpuUsPerMsg[k])), 1)}`)
      .join(", ");
    const errs = rs.flatMap((r) => r.errors ?? []);
    L.push(
      `| ${label} | ${setup} | ${fmt(median(rs.map((r) => r.msgRate)))} | ${
        fmt(median(rs.map((r) => r.latencyMs?.p50)), 2)
      } | ${fmt(median(rs.map((r) => r.latencyMs?.p99)), 2)} | ${
        fmt(median(rs.map((r) => r.lost)))
      } | ${cpu}${errs.length ? ` (errors: ${errs.slice(0, 2).join("; ")})` : ""} |`,
    );
  }
}
mkdirSync(args.out, { recursive: true });
writeFileSync(join(args.out, "cluster.md"), L.join("\n") + "\n");
writeFileSync(join(args.out, "cluster.json"), JSON.stringify({ load, results }, null, 1));
console.log(L.join("\n"));
