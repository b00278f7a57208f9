#!/usr/bin/env node
/**
 * The `midge` command of a source checkout (package.json "bin"): runs src/main.ts with the Bun
 * that `npm ci` installed, so `npx midge serve`, `npx midge pub ...` work without a global Bun
 * or a compiled executable. Builds the WebAssembly first if it has not been built yet, passes
 * signals on (SIGHUP reloads, SIGTERM/SIGINT stop) and exits with the command's exit code.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const bun = join(root, "node_modules", "bun", "bin", "bun.exe");
if (!existsSync(bun)) {
  process.stderr.write(`midge: ${bun} is missing: run "npm ci" in ${root} first\n`);
  process.exit(1);
}
if (!existsSync(join(root, "src", "codec", "wasm_bytes.generated.ts"))) {
  const built = spawnSync(process.execPath, [join(root, "scripts", "build-wasm.mjs")], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  if (built.status !== 0) {
    process.stderr.write(`${built.stdout}${built.stderr}midge: building the WebAssembly failed\n`);
    process.exit(built.status ?? 1);
  }
}
const child = spawn(bun, [join(root, "src", "main.ts"), ...process.argv.slice(2)], {
  stdio: "inherit",
});
for (const sig of ["SIGHUP", "SIGINT", "SIGTERM"]) {
  try {
    process.on(sig, () => child.kill(sig));
  } catch {
    // No such signal on this platform (Windows: SIGHUP).
  }
}
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
