/**
 * Real nats-server processes for the cluster tests: a cluster of N servers with JetStream on
 * loopback, every port chosen by the OS (read back from the servers' ports files), each server
 * killable (SIGKILL or SIGTERM) and restartable on the same ports.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** The nats-server executable, or null when it is not installed. */
export function natsServerPath(): string | null {
  for (const p of ["/usr/bin/nats-server", "/usr/local/bin/nats-server", "/usr/sbin/nats-server"]) {
    if (existsSync(p)) return p;
  }
  const r = spawnSync("sh", ["-c", "command -v nats-server"], { encoding: "utf8" });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : null;
}

/** One server of the cluster. */
export interface NatsServer {
  readonly name: string;
  /** `nats://127.0.0.1:PORT` */
  url: string;
  clientPort: number;
  routePort: number;
  proc: ChildProcess | null;
  /** Stops the process with `signal` and waits for it to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same ports and store directory. */
  restart(): Promise<void>;
}

/** A running cluster. */
export interface NatsCluster {
  readonly servers: NatsServer[];
  /** Every client URL. */
  urls(): string[];
  /** Stops every server and removes the store directories. */
  stop(): Promise<void>;
}

/** Reads the ports a server logs it listens on ("Listening for client connections on …"). */
function waitForPorts(
  proc: ChildProcess,
  wantRoute: boolean,
  timeoutMs: number,
): Promise<{ client: number; route: number }> {
  return new Promise((resolve, reject) => {
    let text = "";
    const found = { client: 0, route: 0 };
    const timer = setTimeout(
      () => done(new Error(`nats-server did not start:\n${text.slice(-2000)}`)),
      timeoutMs,
    );
    const done = (e?: Error) => {
      clearTimeout(timer);
      proc.stderr!.off("data", onData);
      proc.off("exit", onExit);
      proc.stderr!.resume();
      if (e) reject(e);
      else resolve(found);
    };
    const onExit = () => done(new Error(`nats-server exited:\n${text.slice(-2000)}`));
    const onData = (b: Buffer) => {
      text += b.toString();
      const c = /Listening for client connections on [^\s]*:(\d+)/.exec(text);
      const r = /Listening for route connections on [^\s]*:(\d+)/.exec(text);
      if (c) found.client = Number(c[1]);
      if (r) found.route = Number(r[1]);
      if (found.client && (!wantRoute || found.route)) done();
    };
    proc.stderr!.on("data", onData);
    proc.once("exit", onExit);
  });
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts `n` clustered nats-servers with JetStream (cluster name `c`), and resolves once every
 * server has a route to every other and JetStream has a meta leader.
 */
export async function startNatsCluster(
  n = 3,
  opts: { jetstream?: boolean; noAdvertise?: boolean } = {},
): Promise<NatsCluster> {
  const bin = natsServerPath();
  if (!bin) throw new Error("nats-server is not installed (Debian: apt-get install nats-server)");
  const js = opts.jetstream ?? true;
  const root = mkdtempSync(join(tmpdir(), "midge-nats-"));
  const servers: NatsServer[] = [];

  const launch = async (s: NatsServer, index: number, seedRoute: number | null) => {
    const dir = join(root, s.name);
    mkdirSync(dir, { recursive: true });
    // JetStream clustering needs configured routes: every server lists every route port.
    const routes = servers.map((o) => `nats-route://127.0.0.1:${o.routePort}`);
    void seedRoute;
    const conf = [
      `server_name: ${s.name}`,
      `listen: 127.0.0.1:${s.clientPort || -1}`,
      js
        ? `jetstream { store_dir: "${
          join(dir, "js")
        }", max_memory_store: 64MB, max_file_store: 1GB }`
        : "",
      n > 1
        ? `cluster { name: c, listen: 127.0.0.1:${s.routePort || -1}, routes: [${
          [...new Set(routes)].map((r) => `"${r}"`).join(", ")
        }]${opts.noAdvertise ? ", no_advertise: true" : ""} }`
        : "",
    ].join("\n");
    writeFileSync(join(dir, "nats.conf"), conf);
    const proc = spawn(bin, ["-c", join(dir, "nats.conf")], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    s.proc = proc;
    const ports = await waitForPorts(proc, n > 1, 10_000);
    s.clientPort = ports.client;
    s.url = `nats://127.0.0.1:${s.clientPort}`;
    if (n > 1) s.routePort = ports.route;
    void index;
  };

  const make = (i: number): NatsServer => {
    const s: NatsServer = {
      name: `n${i + 1}`,
      url: "",
      clientPort: 0,
      routePort: 0,
      proc: null,
      kill(signal: NodeJS.Signals = "SIGTERM") {
        const p = s.proc;
        s.proc = null;
        if (!p || p.exitCode !== null) return Promise.resolve();
        return new Promise((resolve) => {
          p.once("exit", () => resolve());
          p.kill(signal);
        });
      },
      restart() {
        return launch(s, i, null);
      },
    };
    return s;
  };

  // Ports are chosen up front (the OS picks free ones), since every server must name the
  // others' route ports.
  // A port free when chosen may be taken by another process before the server binds it: then
  // every server starts again on new ports (a few times).
  for (let i = 0; i < n; i++) servers.push(make(i));
  for (let attempt = 1;; attempt++) {
    for (const s of servers) {
      s.clientPort = await freePort();
      if (n > 1) s.routePort = await freePort();
    }
    const started = await Promise.allSettled(servers.map((s, i) => launch(s, i, null)));
    const failed = started.find((r) => r.status === "rejected") as
      | PromiseRejectedResult
      | undefined;
    if (!failed) break;
    await Promise.all(servers.map((s) => s.kill("SIGKILL")));
    if (attempt >= 3 || !/address already in use/.test(String(failed.reason))) {
      rmSync(root, { recursive: true, force: true });
      throw failed.reason;
    }
    for (const s of servers) rmSync(join(root, s.name), { recursive: true, force: true });
  }
  const cluster: NatsCluster = {
    servers,
    urls: () => servers.map((s) => s.url),
    async stop() {
      await Promise.all(servers.map((s) => s.kill("SIGKILL")));
      rmSync(root, { recursive: true, force: true });
    },
  };
  try {
    await waitReady(servers, js, !opts.noAdvertise);
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}

/** Resolves when every server sees all the others (and JetStream answers, when enabled). */
async function waitReady(servers: NatsServer[], js: boolean, advertised = true): Promise<void> {
  const { connect } = await import("@nats-io/transport-node");
  const deadline = Date.now() + 30_000;
  for (const s of servers) {
    for (;;) {
      try {
        const nc = await connect({ servers: s.url, timeout: 1000 });
        try {
          if (servers.length > 1 && advertised) {
            const info = nc.info;
            // connect_urls lists the other servers once the routes are up (without
            // no_advertise; with it, JetStream answering says a majority is routed).
            if ((info?.connect_urls?.length ?? 0) < servers.length - 1) throw new Error("routes");
          }
          if (js) {
            const { jetstreamManager } = await import("@nats-io/jetstream");
            const jsm = await jetstreamManager(nc, { timeout: 2000 });
            await jsm.getAccountInfo();
          }
          break;
        } finally {
          await nc.close();
        }
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`nats-server ${s.name} not ready: ${e}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
}
