/**
 * Child processes for end-to-end tests: their output collected, waits on it with bounded
 * timeouts, mosquitto_pub/mosquitto_sub runs, and a stack-trace check of what they printed.
 */
import { type ChildProcess, spawn } from "node:child_process";

/** A child process and everything it printed so far. */
export interface Proc {
  proc: ChildProcess;
  /** stdout and stderr, in arrival order. */
  out(): string;
  /** stderr only. */
  err(): string;
  /** Resolves with the first match of `re` in the output; rejects after `ms`, or if it exits. */
  waitFor(re: RegExp, ms: number, what: string): Promise<RegExpExecArray>;
  /** Resolves with the exit code (or signal name) within `ms`, else rejects. */
  exited(ms: number): Promise<number | string>;
  /** Signals it and waits for the exit (SIGKILL after `ms`). */
  stop(signal?: NodeJS.Signals, ms?: number): Promise<number | string>;
}

/** Starts `cmd args` with its output collected. */
export function run(cmd: string, args: string[], env: Record<string, string> = {}): Proc {
  const proc = spawn(cmd, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  let all = "", err = "";
  let exit: number | string | null = null;
  const exitWaiters: ((v: number | string) => void)[] = [];
  proc.stdout!.on("data", (b) => (all += b));
  proc.stderr!.on("data", (b) => {
    all += b;
    err += b;
  });
  proc.on("exit", (code, sig) => {
    exit = code ?? sig ?? "?";
    for (const w of exitWaiters.splice(0)) w(exit);
  });
  const p: Proc = {
    proc,
    out: () => all,
    err: () => err,
    waitFor(re, ms, what) {
      return new Promise((resolve, reject) => {
        const deadline = Date.now() + ms;
        const poll = () => {
          const m = re.exec(all);
          if (m) return resolve(m);
          if (exit !== null) {
            return reject(new Error(`${what}: exited (${exit}) first:\n${all.slice(-3000)}`));
          }
          if (Date.now() > deadline) {
            return reject(new Error(`${what}: not seen in ${ms} ms:\n${all.slice(-3000)}`));
          }
          setTimeout(poll, 50);
        };
        poll();
      });
    },
    exited(ms) {
      if (exit !== null) return Promise.resolve(exit);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`still running after ${ms} ms`)), ms);
        exitWaiters.push((v) => {
          clearTimeout(t);
          resolve(v);
        });
      });
    },
    async stop(signal = "SIGTERM", ms = 15_000) {
      if (exit !== null) return exit;
      proc.kill(signal);
      try {
        return await p.exited(ms);
      } catch {
        proc.kill("SIGKILL");
        return await p.exited(5000);
      }
    },
  };
  return p;
}

/** Lines that look like a JavaScript stack trace ("    at f (file:1:2)"). */
export function stackTraceLines(text: string): string[] {
  return text.split("\n").filter((l) => /^\s+at\s+\S.*(\(|:\d+:\d+)/.test(l));
}

/**
 * Runs mosquitto_sub on `port` for `topic` until it has `count` messages (`-v` lines), while
 * `publish()` is called every 300 ms (so a publish that raced the subscription is repeated).
 * Rejects after `ms`.
 */
export async function subWhilePublishing(
  port: number,
  topic: string,
  count: number,
  publish: () => Promise<unknown>,
  ms = 30_000,
): Promise<string[]> {
  const sub = run("mosquitto_sub", [
    "-h",
    "127.0.0.1",
    "-p",
    String(port),
    "-t",
    topic,
    "-q",
    "1",
    "-v",
    "-C",
    String(count),
    "-W",
    String(Math.ceil(ms / 1000)),
  ]);
  const deadline = Date.now() + ms;
  while (sub.proc.exitCode === null && Date.now() < deadline) {
    await publish();
    await new Promise((r) => setTimeout(r, 300));
  }
  const code = await sub.exited(5000).catch(() => sub.stop("SIGKILL"));
  if (code !== 0) throw new Error(`mosquitto_sub exited ${code}: ${sub.out()}`);
  return sub.out().trim().split("\n");
}

/** Runs mosquitto_pub once; resolves with its exit code. */
export function mosquittoPub(port: number, args: string[]): Promise<number | string> {
  const p = run("mosquitto_pub", ["-h", "127.0.0.1", "-p", String(port), ...args]);
  return p.exited(15_000).catch(() => p.stop("SIGKILL"));
}
