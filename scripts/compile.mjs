// `npm run compile`: one self-contained executable per platform with `bun build --compile`.
// The WebAssembly modules and the default config.toml are already TypeScript modules
// (src/codec/wasm_bytes.generated.ts, src/config/default_config.generated.ts), so the bundle
// needs no files at run time. Bun fetches the runtime for each foreign target itself
// (the @oven/bun-<target> packages from the npm registry) and caches it.
//
// Usage: node scripts/compile.mjs [target...]     targets: linux-x64 linux-arm64 darwin-x64
//        darwin-arm64 windows-x64 (default: all), or "host" for this machine's platform.
// Output: dist/midge-<target>[.exe]
import { spawnSync } from "node:child_process";
import { mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
export const TARGETS = ["linux-x64", "linux-arm64", "darwin-x64", "darwin-arm64", "windows-x64"];

/** The target name for the machine running this script. */
export function hostTarget() {
  const os = { linux: "linux", darwin: "darwin", win32: "windows" }[process.platform];
  const arch = { x64: "x64", arm64: "arm64" }[process.arch];
  return os && arch ? `${os}-${arch}` : undefined;
}

/** Path of the executable for `target`. */
export function outputPath(target) {
  return join(root, "dist", `midge-${target}${target.startsWith("windows") ? ".exe" : ""}`);
}

/** Builds one target; returns the output path (throws when bun fails). */
export function compile(target, { quiet = false } = {}) {
  const out = outputPath(target);
  const tmp = `${out}.${process.pid}.tmp${target.startsWith("windows") ? ".exe" : ""}`;
  mkdirSync(dirname(out), { recursive: true });
  const bun = join(root, "node_modules", ".bin", process.platform === "win32" ? "bun.exe" : "bun");
  const args = [
    "build",
    "--compile",
    "--minify",
    // CommonJS bytecode: parsed ahead of time, so start-up skips most of the JS parse/compile.
    "--bytecode",
    "--format=cjs",
    `--target=bun-${target}`,
    join(root, "src", "main.ts"),
    "--outfile",
    tmp,
  ];
  const r = spawnSync(bun, args, { cwd: root, stdio: quiet ? "pipe" : "inherit" });
  if (r.status !== 0) {
    rmSync(tmp, { force: true });
    const why = quiet ? `\n${r.stdout}${r.stderr}` : "";
    throw new Error(`bun build --compile for ${target} failed (status ${r.status})${why}`);
  }
  // Rename into place: a test still copying or running the previous build keeps its file.
  renameSync(tmp, out);
  return out;
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("compile.mjs")) {
  const wanted = process.argv.slice(2).map((t) => t === "host" ? hostTarget() : t);
  const targets = wanted.length ? wanted : TARGETS;
  for (const t of targets) {
    if (!TARGETS.includes(t)) {
      console.error(`unknown target ${t}; one of ${TARGETS.join(", ")}`);
      process.exit(1);
    }
  }
  for (const t of targets) {
    const started = Date.now();
    const out = compile(t);
    const mb = (statSync(out).size / 1048576).toFixed(1);
    console.log(`${out}: ${mb} MB (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  }
}
