/**
 * `midge serve -d`: run the broker in the background, like `mosquitto -d`. The command starts
 * itself again, detached, without `-d`, its standard streams on /dev/null (log to a file or
 * the topic to keep the log); it returns once the background broker listens (printing its
 * `listening ...` lines) or has failed (printing why), so scripts can rely on the exit code.
 * The two processes talk through a status file named in MIDGE_DAEMON_STATUS.
 */
import process from "node:process";
import { spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** The environment variable naming the status file of a background start. */
export const STATUS_ENV = "MIDGE_DAEMON_STATUS";

/** How long the foreground waits for the background broker to listen or fail. */
const START_TIMEOUT_MS = 60_000;

/** The command that runs this program again (script runtimes and compiled executables). */
function selfCommand(): string[] {
  const g = globalThis as { Deno?: { execPath(): string } };
  const script = process.argv[1] ?? "";
  if (g.Deno) return [g.Deno.execPath(), "run", "-A", script];
  // A compiled executable embeds its script in a virtual file system.
  if (script.startsWith("/$bunfs/") || /^[A-Z]:[\\/]~BUN[\\/]/.test(script)) {
    return [process.execPath];
  }
  return [process.execPath, script];
}

/** The status file, opened at the start (before privileges are dropped); null in the foreground. */
let statusFd: number | null | undefined;

/** In the background broker: opens the status file while the process may still write it. */
export function openStartReport(): void {
  if (statusFd !== undefined) return;
  statusFd = null;
  const file = process.env[STATUS_ENV];
  if (!file) return;
  delete process.env[STATUS_ENV];
  try {
    statusFd = openSync(file + ".part", "w");
  } catch {
    // The foreground gave up waiting; nothing to tell.
  }
}

/** In the background broker: reports the outcome of the start to the waiting foreground. */
export function reportStart(text: string, ok: boolean): void {
  if (statusFd === undefined) openStartReport();
  if (statusFd === null || statusFd === undefined) return;
  try {
    writeSync(statusFd, `${ok ? "ok" : "fail"}\n${text}\u0000`);
    closeSync(statusFd);
  } catch {
    // The foreground gave up waiting; nothing to tell.
  }
  statusFd = null;
}

/**
 * Starts `midge serve <args>` in the background and waits for it. Returns the exit code:
 * 0 once it listens, 1 when it failed to start (its error printed).
 */
export async function daemonize(args: string[]): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "midge-start-"));
  const status = join(dir, "status");
  const [cmd, ...pre] = selfCommand();
  const child = spawn(cmd, [...pre, "serve", ...args], {
    detached: true,
    stdio: "ignore",
    env: { ...process.env, [STATUS_ENV]: status },
  });
  let exited: number | null = null;
  child.on("exit", (code) => (exited = code ?? 1));
  child.on("error", () => (exited = 1));
  try {
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const part = status + ".part";
      const report = existsSync(part) ? readFileSync(part, "utf8") : "";
      if (report.endsWith("\u0000")) {
        const [state, ...rest] = report.slice(0, -1).split("\n");
        const text = rest.join("\n");
        if (state === "ok") {
          process.stdout.write(text);
          process.stdout.write(`running in the background, pid ${child.pid}\n`);
          child.unref();
          return 0;
        }
        if (state === "fail") {
          process.stderr.write(text);
          return 1;
        }
      }
      if (exited !== null) {
        process.stderr.write(`midge: the background broker exited with code ${exited}\n`);
        return 1;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    process.stderr.write("midge: the background broker did not start within 60 s\n");
    return 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
