// The same executables built with `deno compile` instead of Bun, into dist/deno/. `deno compile`
// downloads the `denort` runtime for each target from Deno's own download host (not from the npm
// registry), so this works only on machines that can reach it; `npm run compile` (Bun) is the
// supported build.
// Usage: node scripts/compile-deno.mjs [target...]   (targets as for scripts/compile.mjs)
import { spawnSync } from "node:child_process";
import { mkdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const TRIPLES = {
  "linux-x64": "x86_64-unknown-linux-gnu",
  "linux-arm64": "aarch64-unknown-linux-gnu",
  "darwin-x64": "x86_64-apple-darwin",
  "darwin-arm64": "aarch64-apple-darwin",
  "windows-x64": "x86_64-pc-windows-msvc",
};
const wanted = process.argv.slice(2);
const targets = wanted.length ? wanted : Object.keys(TRIPLES);
const deno = join(root, "node_modules", ".bin", "deno");
let failed = 0;
for (const t of targets) {
  if (!TRIPLES[t]) {
    console.error(`unknown target ${t}; one of ${Object.keys(TRIPLES).join(", ")}`);
    process.exit(1);
  }
  const out = join(root, "dist", "deno", `midge-${t}${t.startsWith("windows") ? ".exe" : ""}`);
  mkdirSync(dirname(out), { recursive: true });
  const r = spawnSync(deno, [
    "compile",
    "--allow-all",
    "--no-check",
    "--target",
    TRIPLES[t],
    "--output",
    out,
    join(root, "src", "main.ts"),
  ], { cwd: root, stdio: "inherit" });
  if (r.status !== 0) {
    failed++;
    console.error(`deno compile for ${t} failed (it needs Deno's download host for denort)`);
    continue;
  }
  console.log(`${out}: ${(statSync(out).size / 1048576).toFixed(1)} MB`);
}
process.exit(failed ? 1 : 0);
