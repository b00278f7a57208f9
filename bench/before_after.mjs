// Two builds of Midge side by side in one run: the same load generator (`midge bench` of this
// checkout) against a fresh broker from checkout A and from checkout B, case by case and
// repetition by repetition (A B, then B A, and so on), so both see the same machine. Prints a Markdown table:
// per case the median msg/s of each, the median of the pairwise ratios B ÷ A, and messages per
// CPU-second of the broker (less moved by other jobs on a shared machine than msg/s); and for
// idle connections the broker's KB per connection.
// Usage: node bench/before_after.mjs A_DIR B_DIR [--reps 3] [--duration 3] [--storm 5000]
//   [--only "fan-in QoS 1,16 pairs QoS 1"] (those cases only; --storm 0 leaves the idle
//   connections out)
//   A_DIR, B_DIR: checkouts of Midge with node_modules and the WASM built (node scripts/build-wasm.mjs).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bun = join(root, "node_modules", ".bin", "bun");
const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv.splice(i, 2)[1] : dflt;
};
const reps = Number(opt("reps", "3"));
const duration = opt("duration", "3");
const storm = opt("storm", "5000");
const only = opt("only", "");
const [dirA, dirB] = argv.map((d) => resolve(d));
if (!dirA || !dirB) {
  console.error(
    "usage: node bench/before_after.mjs A_DIR B_DIR [--reps N] [--duration S] [--storm N]",
  );
  process.exit(2);
}

/** [label, scenario, flags] */
const CASES = [
  ["fan-in QoS 0", "fan-in", ["-q", "0"]],
  ["fan-in QoS 1", "fan-in", ["-q", "1"]],
  ["fan-out QoS 0", "fan-out", ["-q", "0"]],
  ["fan-out QoS 1", "fan-out", ["-q", "1"]],
  ["16 pairs QoS 0", "pairwise", ["-q", "0"]],
  ["16 pairs QoS 1", "pairwise", ["-q", "1"]],
];

function freePort() {
  return new Promise((res) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A broker of checkout `dir` on a free port (max_inflight_messages 100, as compare.mjs). */
async function startBroker(dir) {
  const port = await freePort();
  const tmp = mkdtempSync(join(tmpdir(), "midge-ab-"));
  const conf = join(tmp, "midge.toml");
  writeFileSync(
    conf,
    [
      "persistence = false",
      'log_type = ["error", "warning"]',
      "max_inflight_messages = 100",
      "max_connections = -1",
      "[[listener]]",
      `port = ${port}`,
      'bind_address = "127.0.0.1"',
      "",
    ].join("\n"),
  );
  const child = spawn("sh", [
    "-c",
    'ulimit -n 65536 2>/dev/null; exec "$@"',
    "sh",
    bun,
    join(dir, "src", "main.ts"),
    "serve",
    "-c",
    conf,
  ], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise((res, rej) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      if (out.includes("listening")) res();
    });
    child.on("exit", (c) => rej(new Error(`broker of ${dir} exited ${c}`)));
  });
  return {
    port,
    pid: child.pid,
    stop: async () => {
      child.kill("SIGTERM");
      await new Promise((r) => child.on("exit", r));
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}

function loadGen(scenario, flags, b) {
  const args = [
    join(root, "src", "main.ts"),
    "bench",
    scenario,
    ...flags,
    "-p",
    String(b.port),
    "--json",
    "--broker-pid",
    String(b.pid),
  ];
  return new Promise((res) => {
    const child = spawn(
      "sh",
      ["-c", 'ulimit -n 65536 2>/dev/null; exec "$@"', "sh", bun, ...args],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.on("exit", () => {
      try {
        res(JSON.parse(out.trim().split("\n").pop()));
      } catch {
        res({ errors: ["no result"] });
      }
    });
  });
}

async function once(dir, scenario, flags) {
  const b = await startBroker(dir);
  await sleep(300);
  const r = await loadGen(scenario, flags, b);
  await b.stop();
  return r;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (n, d = 0) =>
  n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });

const loadBefore = loadavg().map((x) => x.toFixed(2)).join(" ");
const rows = [];
for (const [label, scenario, flags] of CASES) {
  if (only && !only.split(",").includes(label)) continue;
  const a = [], b = [];
  for (let i = 0; i < reps; i++) {
    const f = [...flags, "-d", duration, "--warmup", "1"];
    // A B, then B A: whichever runs second in a pair is not always the same build.
    if (i % 2 === 0) {
      a.push(await once(dirA, scenario, f));
      b.push(await once(dirB, scenario, f));
    } else {
      b.push(await once(dirB, scenario, f));
      a.push(await once(dirA, scenario, f));
    }
  }
  const rate = (r) => r.msgRate ?? 0;
  const eff = (r) => (r.brokerCpu ? r.msgRate / r.brokerCpu : 0);
  const lost = [...a, ...b].reduce((n, r) => n + (r.lost ?? 0) + (r.errors?.length ?? 0), 0);
  rows.push(
    `| ${label} | ${fmt(median(a.map(rate)))} | ${fmt(median(b.map(rate)))} | ${
      fmt(median(a.map((r, i) => rate(b[i]) / rate(r))), 3)
    } | ${fmt(median(a.map(eff)))} | ${fmt(median(b.map(eff)))} | ${
      fmt(median(a.map((r, i) => eff(b[i]) / eff(r))), 3)
    } | ${lost} |`,
  );
  console.error(`${label}: done`);
}
const sa = [], sb = [];
for (let i = 0; i < (storm === "0" ? 0 : reps); i++) {
  sa.push(await once(dirA, "conn-storm", ["-n", storm]));
  sb.push(await once(dirB, "conn-storm", ["-n", storm]));
}
const kb = (r) => r.storm?.perConnectionKb ?? NaN;
const loadAfter = loadavg().map((x) => x.toFixed(2)).join(" ");

console.log(
  `A: ${dirA}\nB: ${dirB}\n${reps} runs each, ${duration} s measured; load average ${loadBefore} before, ${loadAfter} after.\n`,
);
console.log(
  "| case | msg/s A | msg/s B | B ÷ A (pairs) | msg per broker CPU-s A | B | B ÷ A (pairs) | lost + errors |",
);
console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
for (const r of rows) console.log(r);
if (storm !== "0") {
  console.log(
    `| idle connections (${storm}): KB each | ${fmt(median(sa.map(kb)), 2)} | ${
      fmt(median(sb.map(kb)), 2)
    } | ${fmt(median(sa.map((r, i) => kb(sb[i]) / kb(r))), 3)} | | | | ${
      [...sa, ...sb].reduce((n, r) => n + (r.storm?.failed ?? 0), 0)
    } |`,
  );
}
