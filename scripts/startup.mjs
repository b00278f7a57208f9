// Start-up time of an executable: from spawn until it prints "listening" (the broker accepts
// connections from then on), over N runs in a fresh temporary directory each time.
// Usage: node scripts/startup.mjs [executable...] [--runs N]
//   default executable: dist/midge-<host target>
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
let runs = 20;
const exes = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--runs") runs = Number(args[++i]);
  else exes.push(args[i]);
}
if (!exes.length) exes.push(join(root, "dist", "midge-linux-x64"));

function once(exe, cmd) {
  const cwd = mkdtempSync(join(tmpdir(), "midge-start-"));
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(cmd[0], [...cmd.slice(1), "serve", "-p", "0"], { cwd });
    let out = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${exe}: no "listening" line after 10 s: ${out}`));
    }, 10000);
    child.stdout.on("data", (d) => {
      out += d;
      if (out.includes("listening")) {
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        clearTimeout(timer);
        child.kill("SIGKILL");
        child.on("exit", () => {
          rmSync(cwd, { recursive: true, force: true });
          resolve(ms);
        });
      }
    });
  });
}

for (const exe of exes) {
  const cmd = exe.split(" ").map((w) => existsSync(w) ? resolve(w) : w);
  const times = [];
  await once(exe, cmd); // warm the page cache
  for (let i = 0; i < runs; i++) times.push(await once(exe, cmd));
  times.sort((a, b) => a - b);
  const med = times[Math.floor(times.length / 2)];
  let size = "";
  try {
    size = ` ${(statSync(cmd[0]).size / 1048576).toFixed(1)} MB,`;
  } catch { /* a command, not a file */ }
  console.log(
    `${exe}:${size} start-up to listening: median ${med.toFixed(1)} ms, min ${
      times[0].toFixed(1)
    } ms, max ${times[times.length - 1].toFixed(1)} ms (${runs} runs)`,
  );
}
