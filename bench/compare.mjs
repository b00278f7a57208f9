// Midge, Mosquitto and Aedes side by side: the same `midge bench` scenarios against each broker,
// brokers alternating, several repetitions, medians. Writes bench/results/compare.md (table with
// the machine's facts), compare.svg (chart) and compare.json (every run).
//
// Usage: node bench/compare.mjs [--reps 3] [--latency-reps 9] [--duration 5] [--brokers midge,mosquitto,aedes]
//          [--only fan-in,latency,...] [--storm 18000] [--inflight 100] [--out bench/results] [--workers 1]
//          [--source]  (run Midge from src/ with bun even when the executable exists)
//
// Midge runs as dist/midge-linux-x64 when it exists (`npm run compile`), else `bun src/main.ts
// serve`; the load generator is the same program's `bench` command. Mosquitto is Debian's
// /usr/sbin/mosquitto with a temporary config; Aedes runs on Node (bench/aedes-server.mjs). Each
// case gets a fresh broker on a free port. Broker CPU comes from /proc/<pid>/stat, memory from
// /proc/<pid>/status. File-descriptor limits are raised with `ulimit -n` for the conn-storm.
import { execFileSync, spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { connect, createServer } from "node:net";
import { cpus, loadavg, release, tmpdir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values: args } = parseArgs({
  options: {
    reps: { type: "string", default: "3" },
    // The fixed-rate latency cases are short of CPU on neither side, so their p99 is set by the
    // machine's noise (hypervisor steal above all) more than by the broker: more repetitions.
    "latency-reps": { type: "string", default: "9" },
    duration: { type: "string", default: "5" },
    brokers: { type: "string", default: "midge,mosquitto,aedes" },
    only: { type: "string" },
    // The hard limit on open files here is 20,000 per process (no CAP_SYS_RESOURCE to raise it).
    storm: { type: "string", default: "18000" },
    inflight: { type: "string", default: "100" },
    out: { type: "string", default: join(root, "bench", "results") },
    workers: { type: "string", default: "1" },
    source: { type: "boolean" },
  },
});
const REPS = Number(args.reps);
const LATENCY_REPS = Number(args["latency-reps"]);
const DURATION = Number(args.duration);
const BROKERS = args.brokers.split(",");
const NOFILE = 1_048_576;
/**
 * Outgoing QoS 1/2 window per client, the same for Midge and Mosquitto (both default to 20).
 * Midge's QoS 1/2 latency under load falls 3-10x with 100; Mosquitto's does not move.
 */
const MAX_INFLIGHT = Number(args.inflight);
/**
 * Fan-in at QoS 1/2 runs both brokers with no inflight limit (Mosquitto 0, Midge 65535, the
 * most a v3 client can have): with any limit, Mosquitto 2.0.11 stops delivering 7 of the 8
 * publishers' messages early in the run (62 of each, their whole window, are never delivered)
 * and only one publisher keeps going, so its rate and latency were one publisher's.
 */
const UNLIMITED = "unlimited";

// ---------------------------------------------------------------------------------------------
// What runs

const exe = join(root, "dist", "midge-linux-x64");
const bun = join(root, "node_modules", ".bin", "bun");
const useExe = !args.source && existsSync(exe) && process.platform === "linux" &&
  process.arch === "x64";
if (useExe && newestSource(join(root, "src")) > statSync(exe).mtimeMs) {
  console.error(
    `note: ${exe} is older than src/; run "npm run compile" to measure the current code`,
  );
}
const midgeCmd = useExe ? [exe] : [bun, join(root, "src", "main.ts")];

function newestSource(dir) {
  let t = 0;
  for (const e of readdirRecursive(dir)) t = Math.max(t, statSync(e).mtimeMs);
  return t;
}
function readdirRecursive(dir) {
  const out = [];
  for (
    const name of execFileSync("find", [dir, "-name", "*.ts"], { encoding: "utf8" }).split("\n")
  ) {
    if (name) out.push(name);
  }
  return out;
}

/** The cases: [label, scenario, bench flags, broker variant]. */
function cases() {
  const d = String(DURATION);
  const list = [];
  for (const sc of ["fan-in", "fan-out", "pairwise"]) {
    for (const q of [0, 1, 2]) {
      const variant = sc === "fan-in" && q > 0 ? UNLIMITED : "plain";
      list.push([`${sc} QoS ${q}`, sc, ["-q", String(q), "-d", d], variant]);
    }
  }
  list.push(["latency QoS 0 @10k/s", "latency", ["-q", "0", "-d", d, "--rate", "10000"], "plain"]);
  list.push(["latency QoS 1 @10k/s", "latency", ["-q", "1", "-d", d, "--rate", "10000"], "plain"]);
  list.push([
    "pairwise QoS 1 persistent, persistence on",
    "pairwise",
    ["-q", "1", "-d", d, "--persistent"],
    "persist",
  ]);
  list.push([
    `conn-storm ${Number(args.storm).toLocaleString("en-US")}`,
    "conn-storm",
    ["-n", args.storm, "--hold", "3"],
    "plain",
  ]);
  list.push(["retained 100k", "retained", ["--topics", "100000"], "plain"]);
  if (args.only) {
    const want = args.only.split(",");
    return list.filter(([label, sc]) => want.some((w) => label.startsWith(w) || sc === w));
  }
  return list;
}

// ---------------------------------------------------------------------------------------------
// Brokers

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function waitForPort(port, ms = 15000) {
  const end = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = connect(port, "127.0.0.1");
      s.on("connect", () => {
        s.destroy();
        resolve();
      });
      s.on("error", () => {
        s.destroy();
        if (Date.now() > end) reject(new Error(`nothing listens on ${port}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

/** Run a command with a raised file-descriptor limit. */
function spawnLimited(cmd, argv, opts = {}) {
  return spawn("sh", [
    "-c",
    `ulimit -n ${NOFILE} 2>/dev/null || ulimit -n $(ulimit -Hn); exec "$@"`,
    "sh",
    cmd,
    ...argv,
  ], {
    stdio: ["ignore", "pipe", "pipe"],
    ...opts,
  });
}

async function startBroker(name, variant) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), `midge-cmp-${name}-`));
  let child;
  if (name === "midge") {
    const conf = join(dir, "midge.toml");
    writeFileSync(
      conf,
      [
        `persistence = ${variant === "persist"}`,
        `persistence_location = ${JSON.stringify(join(dir, "data"))}`,
        `log_type = ["error", "warning"]`,
        `max_inflight_messages = ${variant === UNLIMITED ? 65535 : MAX_INFLIGHT}`,
        `max_connections = -1`,
        `[[listener]]`,
        `port = ${port}`,
        `bind_address = "127.0.0.1"`,
        "",
      ].join("\n"),
    );
    child = spawnLimited(midgeCmd[0], [...midgeCmd.slice(1), "serve", "-c", conf]);
  } else if (name === "mosquitto") {
    const conf = join(dir, "mosquitto.conf");
    writeFileSync(
      conf,
      [
        `listener ${port} 127.0.0.1`,
        "allow_anonymous true",
        "max_connections -1",
        // Without it Mosquitto's small writes wait for delayed ACKs (40 ms stalls).
        "set_tcp_nodelay true",
        `max_inflight_messages ${variant === UNLIMITED ? 0 : MAX_INFLIGHT}`,
        `persistence ${variant === "persist" ? "true" : "false"}`,
        `persistence_location ${dir}/`,
        ...(process.getuid?.() === 0 ? ["user root"] : []),
        "",
      ].join("\n"),
    );
    child = spawnLimited("/usr/sbin/mosquitto", ["-c", conf]);
  } else if (name === "aedes") {
    child = spawnLimited(process.execPath, [join(root, "bench", "aedes-server.mjs"), String(port)]);
  } else throw new Error(`unknown broker ${name}`);
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  await waitForPort(port);
  // The pid of the broker itself (sh execs it, so it is the child's pid).
  return {
    port,
    pid: child.pid,
    async stop() {
      child.kill("SIGTERM");
      const exited = new Promise((r) => child.on("exit", r));
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
      rmSync(dir, { recursive: true, force: true });
    },
    get log() {
      return log;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Running

function runBench(scenario, flags, port, pid, workers) {
  return new Promise((resolve) => {
    const argv = [
      ...midgeCmd.slice(1),
      "bench",
      scenario,
      ...flags,
      "-p",
      String(port),
      "--json",
      "--broker-pid",
      String(pid),
      "-w",
      String(workers),
    ];
    const child = spawnLimited(midgeCmd[0], argv);
    let out = "", err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    const t = setTimeout(() => child.kill("SIGKILL"), 900_000);
    child.on("exit", (code) => {
      clearTimeout(t);
      const line = out.trim().split("\n").pop();
      try {
        resolve(JSON.parse(line));
      } catch {
        resolve({ errors: [`bench exited ${code}: ${(err || out).trim().slice(0, 300)}`] });
      }
    });
  });
}

/** One case against one broker: fresh broker, one run; more workers when the load generator was the bottleneck. */
async function measure(name, [label, scenario, flags, variant]) {
  let workers = Number(args.workers);
  for (;;) {
    const b = await startBroker(name, variant);
    await sleep(300);
    const r = await runBench(scenario, flags, b.port, b.pid, workers);
    await b.stop();
    r.broker = name;
    r.case = label;
    const lgBound = r.brokerCpu !== undefined && r.loadGenCpu > 0.9 && r.brokerCpu < 0.9 &&
      r.loadGenCpu > r.brokerCpu;
    if (lgBound && workers < 2 && !["conn-storm", "retained", "latency"].includes(scenario)) {
      console.log(
        `  ${name}: load generator at ${r.loadGenCpu.toFixed(2)} cores, broker ${
          r.brokerCpu.toFixed(2)
        }: again with 2 workers`,
      );
      workers = 2;
      continue;
    }
    r.lgBound = lgBound;
    return r;
  }
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function median(xs) {
  const v = xs.filter((x) => typeof x === "number" && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return undefined;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// ---------------------------------------------------------------------------------------------
// Facts and output

function version(cmd, argv, re = /\S.*/) {
  try {
    const out = execFileSync(cmd, argv, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    return (re.exec(out) ?? [out.trim()])[0].trim();
  } catch (e) {
    const out = `${e.stdout ?? ""}${e.stderr ?? ""}`;
    return (re.exec(out) ?? ["?"])[0].trim();
  }
}

function facts() {
  const aedesPkg = JSON.parse(
    readFileSync(join(root, "node_modules", "aedes", "package.json"), "utf8"),
  );
  return {
    date: new Date().toISOString(),
    cpu: `${cpus().length} × ${cpus()[0]?.model ?? "?"}`,
    memory: `${Math.round(totalmem() / 2 ** 30)} GiB`,
    kernel: release(),
    midge: `${version(midgeCmd[0], [...midgeCmd.slice(1), "version"])} (${
      useExe ? "dist/midge-linux-x64, bun build --compile" : "bun src/main.ts"
    })`,
    bun: version(bun, ["--version"]),
    node: process.version,
    mosquitto: version("/usr/sbin/mosquitto", ["-h"], /mosquitto version \S+/),
    aedes: `aedes ${aedesPkg.version} on Node ${process.version}`,
    loadGenerator: `midge bench (${useExe ? "the same executable" : "bun src/main.ts"})`,
  };
}

const fmtN = (n, d = 0) =>
  n === undefined
    ? "–"
    : n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });

function summarize(all) {
  const rows = [];
  for (const c of cases()) {
    const label = c[0];
    const row = { label, scenario: c[1], brokers: {} };
    for (const b of BROKERS) {
      const rs = all.filter((r) => r.case === label && r.broker === b);
      if (!rs.length) continue;
      row.brokers[b] = {
        runs: rs.length,
        msgRate: median(rs.map((r) => r.msgRate)),
        p50: median(rs.map((r) => r.latencyMs?.p50)),
        p99: median(rs.map((r) => r.latencyMs?.p99)),
        p999: median(rs.map((r) => r.latencyMs?.p999)),
        brokerCpu: median(rs.map((r) => r.brokerCpu)),
        steal: median(rs.map((r) => r.stealCpu)),
        lgCpu: median(rs.map((r) => r.loadGenCpu)),
        rssMb: median(rs.map((r) => r.brokerRssKb / 1024)),
        lost: median(rs.map((r) => r.lost)),
        dup: median(rs.map((r) => r.duplicates)),
        connectRate: median(rs.map((r) => r.storm?.connectRate)),
        perConnKb: median(rs.map((r) => r.storm?.perConnectionKb)),
        connections: median(rs.map((r) => r.storm?.connections)),
        receiveS: median(rs.map((r) => r.retained?.receiveS)),
        loadRate: median(rs.map((r) => r.retained?.loadRate)),
        workers: Math.max(...rs.map((r) => r.workers ?? 1)),
        lgBound: rs.some((r) => r.lgBound),
        errors: rs.flatMap((r) => r.errors ?? []),
      };
    }
    rows.push(row);
  }
  return rows;
}

function ratio(a, b) {
  return a !== undefined && b ? a / b : undefined;
}

function markdown(rows, f, load) {
  const L = [];
  L.push(`# Midge, Mosquitto and Aedes side by side`, "");
  L.push(
    `Generated by \`node bench/compare.mjs\` on ${f.date}. Each cell is the median of ${REPS} runs (the fixed-rate latency cases: ${LATENCY_REPS}); brokers alternate within each repetition and each run gets a fresh broker.`,
    "",
  );
  L.push("| machine | |", "|---|---|");
  for (const [k, v] of Object.entries(f)) L.push(`| ${k} | ${v} |`);
  L.push(`| load average | before ${load.before.join(" ")}, after ${load.after.join(" ")} |`, "");
  L.push(
    `Settings: Midge and Mosquitto with \`max_inflight_messages\` = ${MAX_INFLIGHT} (both default to 20) except in fan-in QoS 1/2, where both run without an inflight limit (Mosquitto 0, Midge 65535: with a limit, Mosquitto 2.0.11 stops delivering 7 of the 8 publishers' messages early in the run), persistence off except in the "persistence on" row (Midge: SQLite, fsync per group commit; Mosquitto: its periodic save; Aedes: in-memory), Mosquitto with \`set_tcp_nodelay true\`, Aedes on a node:net server with noDelay. Load generator: MQTT 3.1.1, 64-byte payloads, at most 500 messages in transit per subscriber (fan-in: shared by its 8 publishers) and 64 unacknowledged QoS 1/2 PUBLISH per publisher.`,
    "",
    "Throughput is messages received per second by all subscribers together (a fan-out message counts once per receiver). Latency is publish-to-receive. CPU is in cores (1.00 = one core busy) during the measured window, for the broker and for the load generator (LG). Ratios are Midge ÷ Mosquitto (throughput: higher is better; p99: lower is better).",
    "",
  );
  const head = ["case"];
  for (const b of BROKERS) {
    head.push(`${b} msg/s`, `${b} p50 / p99 ms`, `${b} CPU broker / LG`, `${b} RSS MB`);
  }
  head.push("midge ÷ mosquitto msg/s", "midge ÷ mosquitto p99");
  const flow = rows.filter((r) => !["conn-storm", "retained"].includes(r.scenario));
  L.push(`| ${head.join(" | ")} |`, `|${head.map((_, i) => (i ? "---:" : "---")).join("|")}|`);
  for (const r of flow) {
    const cells = [r.label];
    for (const b of BROKERS) {
      const x = r.brokers[b];
      if (!x) {
        cells.push("–", "–", "–", "–");
        continue;
      }
      const mark = (x.lost ? ` (lost ${fmtN(x.lost)})` : "") +
        (x.workers > 1 ? ` [${x.workers} LG]` : "") +
        (x.lgBound ? " †" : "");
      cells.push(
        fmtN(x.msgRate) + mark,
        `${fmtN(x.p50, 1)} / ${fmtN(x.p99, 1)}`,
        `${fmtN(x.brokerCpu, 2)} / ${fmtN(x.lgCpu, 2)}`,
        fmtN(x.rssMb, 1),
      );
    }
    const m = r.brokers.midge, q = r.brokers.mosquitto;
    const tr = ratio(m?.msgRate, q?.msgRate), lr = ratio(m?.p99, q?.p99);
    cells.push(
      tr === undefined ? "–" : `${fmtN(tr, 2)}×`,
      lr === undefined ? "–" : `${fmtN(lr, 2)}×`,
    );
    L.push(`| ${cells.join(" | ")} |`);
  }
  L.push("", "† the load generator used more CPU than the broker in at least one run.", "");
  L.push(...latencyRuns(rows));
  const storm = rows.filter((r) => r.scenario === "conn-storm");
  if (storm.length) {
    L.push(
      "| idle connections | broker | connected | connects/s | RSS after, MB | KB per connection | broker CPU |",
      "|---|---|---:|---:|---:|---:|---:|",
    );
    for (const r of storm) {
      for (const b of BROKERS) {
        const x = r.brokers[b];
        if (x) {
          L.push(
            `| ${r.label} | ${b} | ${fmtN(x.connections)} | ${fmtN(x.connectRate)} | ${
              fmtN(x.rssMb, 1)
            } | ${fmtN(x.perConnKb, 2)} | ${fmtN(x.brokerCpu, 2)} |`,
          );
        }
      }
    }
    L.push("");
  }
  const ret = rows.filter((r) => r.scenario === "retained");
  if (ret.length) {
    L.push(
      "| retained | broker | load, msg/s (QoS 1) | `#` subscriber gets all, s | RSS after, MB |",
      "|---|---|---:|---:|---:|",
    );
    for (const r of ret) {
      for (const b of BROKERS) {
        const x = r.brokers[b];
        if (x) {
          L.push(
            `| ${r.label} | ${b} | ${fmtN(x.loadRate)} | ${fmtN(x.receiveS, 3)} | ${
              fmtN(x.rssMb, 1)
            } |`,
          );
        }
      }
    }
    L.push("");
  }
  const errs = rows.flatMap((r) =>
    Object.entries(r.brokers).flatMap(([b, x]) => x.errors.map((e) => `${r.label}, ${b}: ${e}`))
  );
  if (errs.length) {
    L.push("Errors reported by the load generator:", "");
    for (const e of [...new Set(errs)].slice(0, 40)) L.push(`- ${e}`);
    L.push("");
  }
  return L.join("\n");
}

/**
 * The fixed-rate latency cases run by run: a broker's p99 there moves with the CPU time the
 * hypervisor took from this virtual machine during the run ("steal", in cores), so each pair of
 * runs (one per broker, back to back) is shown with it.
 */
function latencyRuns(rows) {
  const L = [];
  const runs = rows.runs ?? [];
  for (const r of rows.filter((x) => x.scenario === "latency")) {
    const of = (b) => runs.filter((x) => x.case === r.label && x.broker === b);
    const m = of("midge"), q = of("mosquitto");
    const n = Math.min(m.length, q.length);
    if (!n) continue;
    let wins = 0;
    L.push(
      `${r.label}, run by run: p99 (ms); CPU stolen by the hypervisor during the run (cores); the load generator's longest pause (ms; its publishing timer is due every 1 ms, and a message waiting in a paused load generator counts as latency, whichever the broker):`,
      "",
      "| repetition | midge p99 | steal | LG pause | mosquitto p99 | steal | LG pause | lower |",
      "|---:|---:|---:|---:|---:|---:|---:|---|",
    );
    for (let i = 0; i < n; i++) {
      const a = m[i].latencyMs?.p99, b = q[i].latencyMs?.p99;
      const lower = a === undefined || b === undefined
        ? "–"
        : a < b
        ? "midge"
        : a > b
        ? "mosquitto"
        : "=";
      if (lower === "midge") wins++;
      L.push(
        `| ${i + 1} | ${fmtN(a, 2)} | ${fmtN(m[i].stealCpu, 3)} | ${
          fmtN(m[i].loadGenPauseMs, 1)
        } | ${fmtN(b, 2)} | ${fmtN(q[i].stealCpu, 3)} | ${
          fmtN(q[i].loadGenPauseMs, 1)
        } | ${lower} |`,
      );
    }
    L.push("", `Midge's p99 was the lower in ${wins} of ${n} pairs.`, "");
  }
  return L;
}

function svg(rows) {
  const flow = rows.filter((r) =>
    !["conn-storm", "retained"].includes(r.scenario) && r.brokers.mosquitto?.msgRate
  );
  const colors = { midge: "#2f6fdf", mosquitto: "#8a8a8a", aedes: "#e0902f" };
  const barH = 10, gap = 8, left = 270, width = 900;
  const groupH = BROKERS.length * barH + gap;
  const top = 50;
  const height = top + flow.length * groupH + 40;
  const max = Math.max(
    1,
    ...flow.flatMap((r) =>
      BROKERS.map((b) => (r.brokers[b]?.msgRate ?? 0) / r.brokers.mosquitto.msgRate)
    ),
  );
  const scale = (width - left - 90) / max;
  const esc = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
  const out = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
  );
  out.push(`<rect width="100%" height="100%" fill="white"/>`);
  out.push(
    `<text x="10" y="20" font-size="14" font-weight="bold">Throughput relative to Mosquitto (= 1.0), median of ${REPS} runs</text>`,
  );
  BROKERS.forEach((b, i) => {
    out.push(
      `<rect x="${left + i * 110}" y="30" width="10" height="10" fill="${
        colors[b] ?? "#444"
      }"/><text x="${left + i * 110 + 14}" y="39">${b}</text>`,
    );
  });
  const x1 = left + scale;
  out.push(
    `<line x1="${x1}" y1="${top - 4}" x2="${x1}" y2="${
      height - 30
    }" stroke="#444" stroke-dasharray="3,3"/>`,
  );
  flow.forEach((r, gi) => {
    const y0 = top + gi * groupH;
    out.push(
      `<text x="${left - 8}" y="${y0 + (BROKERS.length * barH) / 2 + 4}" text-anchor="end">${
        esc(r.label)
      }</text>`,
    );
    BROKERS.forEach((b, i) => {
      const x = r.brokers[b];
      if (!x?.msgRate) return;
      const rel = x.msgRate / r.brokers.mosquitto.msgRate;
      const y = y0 + i * barH;
      out.push(
        `<rect x="${left}" y="${y}" width="${Math.max(1, rel * scale).toFixed(1)}" height="${
          barH - 1
        }" fill="${colors[b] ?? "#444"}"/>`,
      );
      out.push(
        `<text x="${left + rel * scale + 4}" y="${y + barH - 2}" font-size="9">${
          rel.toFixed(2)
        }× (${fmtN(x.msgRate)}/s)</text>`,
      );
    });
  });
  out.push(`<text x="${x1}" y="${height - 14}" text-anchor="middle">1.0 = Mosquitto</text>`);
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

// ---------------------------------------------------------------------------------------------

async function main() {
  mkdirSync(args.out, { recursive: true });
  const f = facts();
  const load = { before: loadavg().map((x) => x.toFixed(2)), after: [] };
  console.log(`midge: ${midgeCmd.join(" ")}; load average ${load.before.join(" ")}`);
  const all = [];
  const list = cases();
  const repsOf = (c) => (c[1] === "latency" ? LATENCY_REPS : REPS);
  const reps = Math.max(...list.map(repsOf));
  for (let rep = 0; rep < reps; rep++) {
    for (const c of list) {
      if (rep >= repsOf(c)) continue;
      // Alternate the order of the brokers from one repetition to the next.
      const order = BROKERS.map((_, i) => BROKERS[(i + rep) % BROKERS.length]);
      for (const b of order) {
        const r = await measure(b, c);
        all.push(r);
        const rate = r.storm
          ? `${fmtN(r.storm.connectRate)} conn/s, ${fmtN(r.storm.perConnectionKb, 2)} KB/conn`
          : r.retained
          ? `${fmtN(r.retained.receiveS, 3)} s`
          : `${fmtN(r.msgRate)} msg/s p99 ${fmtN(r.latencyMs?.p99, 1)} ms`;
        console.log(
          `[${rep + 1}/${repsOf(c)}] ${c[0]} ${b}: ${rate}  cpu ${fmtN(r.brokerCpu, 2)}/${
            fmtN(r.loadGenCpu, 2)
          }${r.stealCpu ? ` steal ${fmtN(r.stealCpu, 3)}` : ""}${
            r.loadGenPauseMs !== undefined ? ` LG pause ${fmtN(r.loadGenPauseMs, 1)} ms` : ""
          }${r.lost ? ` lost ${r.lost}` : ""}${r.errors?.length ? `  ERR ${r.errors[0]}` : ""}`,
        );
      }
    }
  }
  load.after = loadavg().map((x) => x.toFixed(2));
  const rows = summarize(all);
  rows.runs = all;
  writeFileSync(
    join(args.out, "compare.json"),
    JSON.stringify({ facts: f, load, runs: all }, null, 1) + "\n",
  );
  writeFileSync(join(args.out, "compare.md"), markdown(rows, f, load));
  writeFileSync(join(args.out, "compare.svg"), svg(rows));
  console.log(`\nwrote ${join(args.out, "compare.md")}, compare.svg, compare.json`);
  console.log(readFileSync(join(args.out, "compare.md"), "utf8"));
}

await main();
