// Failover of a Midge cluster under a steady QoS 1 load: what a kill costs and whether anything
// acknowledged is lost. For each case and repetition a fresh cluster of 3 nats-servers (routed,
// JetStream, file store) and 3 Midge nodes (`bun src/main.ts serve`, persistence off, stream
// and buckets with 3 replicas) is started; a QoS 1 publisher (MQTT.js, persistent session,
// server list n1, n2, n3) on n1 sends numbered messages at a steady rate to a persistent QoS 1
// subscriber on n2 (server list n2, n3, n1), and then:
//
//   nats-leader  the nats-server leading the message stream is killed with SIGKILL;
//   nats-leader-term  the same nats-server stopped with SIGTERM instead;
//   pub-node     the publisher's node n1 is killed with SIGKILL;
//   sub-node     the subscriber's node n2 is killed with SIGKILL;
//   rolling      n1, n2, n3 are stopped with SIGTERM and started again, one at a time.
//
// Measured: the stall (the longest time without a PUBACK), PUBACKs and deliveries per second
// before / during / after it, the failover time (kill → the client's first PUBACK or message
// through another node), messages lost (acknowledged, never received) and duplicates.
// Writes bench/results/failover.md and failover.json.
//
// Usage: node bench/failover.mjs [--reps 3] [--rate 2000] [--only nats-leader,pub-node,...]
//          [--max-queued 0] [--out DIR]
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { execFileSync } from "node:child_process";
import mqtt from "mqtt";
import { connect as natsConnect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values: args } = parseArgs({
  options: {
    reps: { type: "string", default: "3" },
    rate: { type: "string", default: "2000" },
    // The nodes' max_queued_messages (0: no limit, so that a drop is not counted as a loss).
    "max-queued": { type: "string", default: "0" },
    only: { type: "string" },
    out: { type: "string", default: join(root, "bench", "results") },
  },
});
const REPS = Number(args.reps);
const RATE = Number(args.rate);
const bun = join(root, "node_modules", ".bin", "bun");
const CASES = ["nats-leader", "nats-leader-term", "pub-node", "sub-node", "rolling"].filter((c) =>
  !args.only || args.only.split(",").includes(c)
);
/** Load before the fault, and after it (ms). */
const BEFORE_MS = 5000;
const AFTER_MS = 20_000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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

/** A child process, its output kept, and a wait for a line of it. */
function start(cmd, argv) {
  const c = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"] });
  let text = "";
  c.stdout.on("data", (b) => (text = (text + b).slice(-20_000)));
  c.stderr.on("data", (b) => (text = (text + b).slice(-20_000)));
  c.out = () => text;
  c.waitFor = (re, ms = 90_000) =>
    new Promise((ok, fail) => {
      const end = Date.now() + ms;
      const poll = () => {
        if (re.test(text)) return ok();
        if (c.exitCode !== null || c.signalCode !== null) {
          return fail(new Error(`exited: ${text.slice(-800)}`));
        }
        if (Date.now() > end) return fail(new Error(`not ready: ${text.slice(-800)}`));
        setTimeout(poll, 50);
      };
      poll();
    });
  return c;
}

function stop(c, signal = "SIGTERM", ms = 20_000) {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  return new Promise((ok) => {
    const t = setTimeout(() => c.kill("SIGKILL"), ms);
    c.once("exit", () => {
      clearTimeout(t);
      ok();
    });
    c.kill(signal);
  });
}

/** `startCluster`, again when a port picked free was taken before it was bound. */
async function startClusterRetrying(dir) {
  for (let attempt = 1;; attempt++) {
    const started = [];
    try {
      return await startCluster(mkdtempSync(join(dir, "a")), started);
    } catch (e) {
      await Promise.all(started.map((c) => stop(c, "SIGKILL")));
      if (attempt >= 3) throw e;
      console.error(`cluster did not start (${String(e.message).split("\n").pop()}); again`);
    }
  }
}

/** 3 nats-servers and 3 Midge nodes, each node able to be killed and started again. */
async function startCluster(dir, started) {
  const ports = [];
  for (let i = 0; i < 3; i++) {
    ports.push({
      nats: await freePort(),
      route: await freePort(),
      mqtt: await freePort(),
      http: await freePort(),
    });
  }
  const routes = ports.map((p) => `"nats-route://127.0.0.1:${p.route}"`).join(", ");
  const nats = await Promise.all(ports.map(async (p, i) => {
    const conf = join(dir, `nats${i}.conf`);
    writeFileSync(
      conf,
      `server_name: s${i}\nlisten: 127.0.0.1:${p.nats}\n` +
        `jetstream { store_dir: "${join(dir, `js${i}`)}" }\n` +
        `cluster { name: b, listen: 127.0.0.1:${p.route}, routes: [${routes}] }\n`,
    );
    const c = start("nats-server", ["-c", conf]);
    started.push(c);
    await c.waitFor(/Server is ready/, 30_000);
    return c;
  }));
  const urls = ports.map((p) => `"nats://127.0.0.1:${p.nats}"`);
  const confs = ports.map((p, i) => {
    const conf = join(dir, `n${i + 1}.toml`);
    writeFileSync(
      conf,
      [
        `persistence = false`,
        `log_type = ["error", "warning", "notice"]`,
        `max_inflight_messages = 100`,
        // No queue limit by default: a message dropped from a full queue would count as lost
        // here. The nodes' drop counters are read at the end all the same.
        `max_queued_messages = ${Number(args["max-queued"])}`,
        `sys_interval = 0`,
        `http_listener = "127.0.0.1:${p.http}"`,
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
    return conf;
  });
  const node = async (i) => {
    const c = start(bun, [join(root, "src", "main.ts"), "serve", "-c", confs[i]]);
    started.push(c);
    await c.waitFor(/listening mqtt/);
    return c;
  };
  const nodes = [];
  for (let i = 0; i < 3; i++) nodes.push(await node(i));
  await sleep(2500); // heartbeats: every node sees the others
  return {
    nats,
    nodes,
    ports: ports.map((p) => p.mqtt),
    /** Messages the live nodes dropped (queue full, slow reader), from their /metrics. */
    async dropped() {
      let n = 0;
      for (const [i, p] of ports.entries()) {
        if (nodes[i].exitCode !== null || nodes[i].signalCode !== null) continue;
        const text = await fetch(`http://127.0.0.1:${p.http}/metrics`).then((r) => r.text())
          .catch(() => "");
        for (const m of text.matchAll(/^midge_publish_dropped_total(?:\{[^}]*\})? (\d+)/gm)) {
          n += Number(m[1]);
        }
      }
      return n;
    },
    natsUrls: ports.map((p) => `nats://127.0.0.1:${p.nats}`),
    /** Starts node i again (same configuration and port). */
    async restart(i) {
      nodes[i] = await node(i);
    },
    async stop() {
      await Promise.all(nodes.map((c) => stop(c, "SIGKILL")));
      await Promise.all(nats.map((c) => stop(c, "SIGKILL")));
    },
  };
}

/** The steady load: a QoS 1 publisher on node `pubAt`, a persistent subscriber on `subAt`. */
async function startLoad(ports, pubAt, subAt) {
  const servers = (first) =>
    [0, 1, 2].map((k) => ({ host: "127.0.0.1", port: ports[(first + k) % 3] }));
  const opts = { clean: false, reconnectPeriod: 100, connectTimeout: 3000, keepalive: 10 };
  const t0 = Date.now();
  const L = {
    sent: 0,
    /** seq → time of its PUBACK */
    acked: new Map(),
    /** PUBACK times in arrival order */
    ackTimes: [],
    /** seq → times received */
    got: new Map(),
    recvTimes: [],
    dupFlags: 0,
    pubConnects: [],
    subConnects: [],
    running: true,
  };
  const sub = mqtt.connect({ ...opts, servers: servers(subAt), clientId: `fo-sub-${t0}` });
  sub.on("error", () => {});
  sub.on("connect", () => L.subConnects.push(Date.now()));
  sub.on("message", (_t, p, packet) => {
    const n = Number(String(p));
    L.got.set(n, (L.got.get(n) ?? 0) + 1);
    L.recvTimes.push(Date.now());
    if (packet.dup) L.dupFlags++;
  });
  await new Promise((r) => sub.once("connect", r));
  await sub.subscribeAsync("fo/#", { qos: 1 });
  const pub = mqtt.connect({ ...opts, servers: servers(pubAt), clientId: `fo-pub-${t0}` });
  pub.on("error", () => {});
  pub.on("connect", () => L.pubConnects.push(Date.now()));
  await new Promise((r) => pub.once("connect", r));
  // RATE messages per second, in 10 ms ticks, paced by the clock (not by the timer's accuracy).
  const began = Date.now();
  L.timer = setInterval(() => {
    if (!L.running) return;
    const due = Math.floor(((Date.now() - began) * RATE) / 1000);
    while (L.sent < due) {
      const n = L.sent++;
      pub.publish("fo/x", String(n), { qos: 1 }, (err) => {
        if (err) return;
        const now = Date.now();
        if (!L.acked.has(n)) L.ackTimes.push(now);
        L.acked.set(n, now);
      });
    }
  }, 10);
  L.stopLoad = () => {
    L.running = false;
    clearInterval(L.timer);
  };
  L.end = async () => {
    L.stopLoad();
    await Promise.all([pub.endAsync(true), sub.endAsync(true)]).catch(() => {});
  };
  return L;
}

async function waitUntil(fn, ms) {
  const end = Date.now() + ms;
  while (!fn() && Date.now() < end) await sleep(50);
  return fn();
}

/** Events per second among `times` in [from, to). */
function rate(times, from, to) {
  if (to <= from) return undefined;
  let n = 0;
  for (const t of times) if (t >= from && t < to) n++;
  return (n * 1000) / (to - from);
}

/** The longest gap between consecutive times after `from` (and the time it ended). */
function longestGap(times, from) {
  let best = 0, end = from;
  let prev = from;
  for (const t of times) {
    if (t < from) continue;
    if (t - prev > best) {
      best = t - prev;
      end = t;
    }
    prev = t;
  }
  return { gap: best, end };
}

/** The nats-server (index) that leads the stream bench_msgs. */
async function streamLeader(urls) {
  const nc = await natsConnect({ servers: urls });
  try {
    const jsm = await jetstreamManager(nc, { timeout: 5000 });
    for (let i = 0; i < 50; i++) {
      const info = await jsm.streams.info("bench_msgs").catch(() => null);
      const leader = info?.cluster?.leader;
      if (leader) return Number(leader.slice(1));
      await sleep(200);
    }
    throw new Error("the stream has no leader");
  } finally {
    await nc.close();
  }
}

async function runCase(kind) {
  const dir = mkdtempSync(join(tmpdir(), "midge-failover-"));
  const c = await startClusterRetrying(dir);
  const L = await startLoad(c.ports, 0, 1);
  const r = { case: kind };
  try {
    await sleep(BEFORE_MS);
    const killedAt = Date.now();
    const pubConnectsBefore = L.pubConnects.length;
    const subConnectsBefore = L.subConnects.length;
    if (kind.startsWith("nats-leader")) {
      const i = await streamLeader(c.natsUrls);
      const signal = kind === "nats-leader" ? "SIGKILL" : "SIGTERM";
      r.killed = `nats s${i} (${signal})`;
      const t = Date.now();
      await stop(c.nats[i], signal);
      r.killedAt = t;
    } else if (kind === "pub-node" || kind === "sub-node") {
      const i = kind === "pub-node" ? 0 : 1;
      r.killed = `n${i + 1}`;
      r.killedAt = Date.now();
      await stop(c.nodes[i], "SIGKILL");
    } else {
      r.killedAt = killedAt;
      for (let i = 0; i < 3; i++) {
        await stop(c.nodes[i], "SIGTERM");
        await c.restart(i);
        await sleep(2500);
      }
    }
    const K = r.killedAt;
    await sleep(kind === "rolling" ? 3000 : AFTER_MS);
    L.stopLoad();
    const stoppedAt = Date.now();
    await waitUntil(() => L.acked.size >= L.sent, 60_000);
    await waitUntil(() => [...L.acked.keys()].every((n) => L.got.has(n)), 30_000);
    await sleep(1000); // late duplicates

    r.sent = L.sent;
    r.acked = L.acked.size;
    r.unacked = L.sent - L.acked.size;
    r.lost = [...L.acked.keys()].filter((n) => !L.got.has(n)).length;
    r.duplicates = [...L.got.values()].reduce((s, x) => s + (x > 1 ? x - 1 : 0), 0);
    r.dupFlags = L.dupFlags;
    r.dropped = await c.dropped();
    const g = longestGap(L.ackTimes, K - 1000);
    r.stallMs = g.gap;
    r.ackRate = {
      before: rate(L.ackTimes, K - 3000, K),
      during: rate(L.ackTimes, K, g.end),
      after: rate(L.ackTimes, g.end, Math.min(g.end + 5000, stoppedAt)),
    };
    r.recvRate = {
      before: rate(L.recvTimes, K - 3000, K),
      during: rate(L.recvTimes, K, g.end),
      after: rate(L.recvTimes, g.end, Math.min(g.end + 5000, stoppedAt)),
    };
    // PUBACKs and deliveries per second from 5 s before the kill on.
    const perSec = (times) => {
      const out = [];
      for (const t of times) {
        const k = Math.floor((t - (K - 5000)) / 1000);
        if (k >= 0) out[k] = (out[k] ?? 0) + 1;
      }
      return Array.from(out, (x) => x ?? 0);
    };
    r.ackPerSec = perSec(L.ackTimes);
    r.recvPerSec = perSec(L.recvTimes);
    r.drainMs = Math.max(...L.ackTimes) - stoppedAt;
    if (kind === "pub-node") {
      const back = L.pubConnects[pubConnectsBefore];
      r.reconnectMs = back ? back - K : undefined;
      const first = L.ackTimes.find((t) => t >= (back ?? Infinity));
      r.failoverMs = first ? first - K : undefined;
    }
    if (kind === "sub-node") {
      const back = L.subConnects[subConnectsBefore];
      r.reconnectMs = back ? back - K : undefined;
      const first = L.recvTimes.find((t) => t >= (back ?? Infinity));
      r.failoverMs = first ? first - K : undefined;
    }
  } finally {
    await L.end();
    r.errors = c.nodes.map((n) => n.out()).join("\n").split("\n")
      .filter((l) => /^\s+at\s|Error|error/.test(l)).slice(0, 5);
    await c.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return r;
}

const results = [];
const load = { before: loadavg().map((x) => x.toFixed(1)) };
for (let rep = 0; rep < REPS; rep++) {
  for (const kind of CASES) {
    const r = await runCase(kind).catch((e) => ({ case: kind, failed: String(e.message) }));
    results.push(r);
    console.log(JSON.stringify(r));
  }
}
load.after = loadavg().map((x) => x.toFixed(1));

const fmt = (n, d = 0) =>
  n === undefined || n === null || Number.isNaN(n)
    ? "–"
    : n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
const list = (xs, d = 0) => xs.map((x) => fmt(x, d)).join(" / ");
const L = [
  `# Failover under a steady QoS 1 load`,
  "",
  `Generated by \`node bench/failover.mjs --reps ${REPS} --rate ${RATE} --max-queued ${
    Number(args["max-queued"])
  }\` on ${new Date().toISOString()}: ${cpus().length} × ${cpus()[0]?.model}, load average ${
    load.before.join(" ")
  } before, ${load.after.join(" ")} after; ${
    execFileSync("nats-server", ["--version"], { encoding: "utf8" }).trim()
  }. One value per run.`,
  "",
  "| case | killed | stall ms (no PUBACK) | failover ms | PUBACK/s before / during / after | delivered/s before / during / after | sent | lost | duplicates (DUP set) | dropped by live nodes |",
  "|---|---|---:|---:|---|---|---:|---:|---:|---:|",
];
for (const r of results) {
  if (r.failed) {
    L.push(`| ${r.case} | did not run: ${r.failed.split("\n")[0].slice(0, 120)} |`);
    continue;
  }
  L.push(
    `| ${r.case} | ${r.killed ?? "n1, n2, n3 (SIGTERM)"} | ${fmt(r.stallMs)} | ${
      fmt(r.failoverMs)
    } | ${list([r.ackRate?.before, r.ackRate?.during, r.ackRate?.after])} | ${
      list([r.recvRate?.before, r.recvRate?.during, r.recvRate?.after])
    } | ${fmt(r.sent)} | ${fmt(r.lost)}${r.unacked ? ` (${r.unacked} unacked)` : ""} | ${
      fmt(r.duplicates)
    } (${fmt(r.dupFlags)}) | ${fmt(r.dropped)} |`,
  );
}
mkdirSync(args.out, { recursive: true });
writeFileSync(join(args.out, "failover.md"), L.join("\n") + "\n");
writeFileSync(join(args.out, "failover.json"), JSON.stringify({ load, results }, null, 1));
console.log(L.join("\n"));
process.exit(0);
