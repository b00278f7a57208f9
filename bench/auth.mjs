// The auth chain's cost on the hot path: QoS 0 fan-in and pairwise against a broker without
// auth, and against one whose clients log in with JWTs carrying an `acl` claim (auth_chain =
// ["jwt"]; every publish and every delivery is checked against the claim). A fresh broker per
// run, the two variants alternating, medians of the runs.
//
//   node scripts/build-wasm.mjs && node bench/auth.mjs [runs=5] [seconds=5]
//
// Prints msg/s and msg per broker CPU-second (the second is steadier on a shared machine).
// MIDGE_BEFORE=<dir> adds a third variant: no auth, the broker of another checkout (e.g. the
// commit before the auth chain, built there with node scripts/build-wasm.mjs).
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const bun = join(root, "node_modules", ".bin", "bun");
const runs = Number(process.argv[2] ?? 5);
const seconds = Number(process.argv[3] ?? 5);
const SECRET = "bench-secret-of-more-than-32-bytes";
const dir = mkdtempSync(join(tmpdir(), "midge-auth-bench-"));

const variants = {
  "no auth": { conf: "allow_anonymous = true\n", args: [] },
  ...(process.env.MIDGE_BEFORE
    ? {
      "no auth, before": {
        conf: "allow_anonymous = true\n",
        args: [],
        main: join(process.env.MIDGE_BEFORE, "src/main.ts"),
      },
    }
    : {}),
  "jwt + acl claim": {
    conf: `allow_anonymous = false\nauth_chain = ["jwt"]\njwt_secret = "${SECRET}"\n`,
    args: ["--jwt-secret", SECRET],
  },
};

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

async function once(variant, scenario, port) {
  const v = variants[variant];
  const conf = join(dir, "midge.toml");
  writeFileSync(
    conf,
    `persistence = false\nconnection_messages = false\nlog_type = ["error"]\n${v.conf}` +
      `[[listener]]\nport = ${port}\n`,
  );
  const broker = spawn(bun, [v.main ?? join(root, "src/main.ts"), "serve", "-c", conf], {
    stdio: "ignore",
  });
  await sleep(1500);
  const r = spawnSync(bun, [
    join(root, "src/main.ts"),
    "bench",
    scenario,
    "-p",
    String(port),
    "-d",
    String(seconds),
    "--json",
    "--broker-pid",
    String(broker.pid),
    ...v.args,
  ], { encoding: "utf8" });
  broker.kill();
  await new Promise((res) => broker.once("exit", res));
  const j = JSON.parse(r.stdout);
  if (j.errors?.length || j.lost) throw new Error(`${variant} ${scenario}: ${r.stdout}`);
  return { rate: j.msgRate, perCpu: j.msgRate / j.brokerCpu, steal: j.stealCpu ?? 0 };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (n) => Math.round(n).toLocaleString("en-US");
let port = 18900;
console.log(
  `${runs} runs of ${seconds} s each, Bun ${spawnSync(bun, ["--version"]).stdout}`.trim(),
);
console.log("| case | variant | msg/s (median) | runs | msg per broker CPU-s (median) |");
console.log("|---|---|---:|---|---:|");
for (const scenario of ["fan-in", "pairwise"]) {
  const names = Object.keys(variants);
  const got = Object.fromEntries(names.map((n) => [n, []]));
  for (let i = 0; i < runs; i++) {
    // Each run rotates the order, so no variant always goes first.
    const order = names.map((_, k) => names[(k + i) % names.length]);
    for (const v of order) got[v].push(await once(v, scenario, port++));
  }
  for (const [v, rs] of Object.entries(got)) {
    console.log(
      `| ${scenario} QoS 0 | ${v} | ${fmt(median(rs.map((r) => r.rate)))} | ${
        rs.map((r) => fmt(r.rate / 1000) + "k").join(", ")
      } | ${fmt(median(rs.map((r) => r.perCpu)))} |`,
    );
  }
}
rmSync(dir, { recursive: true, force: true });
