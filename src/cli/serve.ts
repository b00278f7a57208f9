/**
 * `midge serve`: start the broker on a configuration and run until SIGINT/SIGTERM. Next to the
 * broker run the log destinations, $SYS, metrics and the admin API (src/sys/ops.ts); SIGHUP
 * re-reads the configuration file and applies what can be applied without a restart.
 */
import process from "node:process";
import { DEFAULT_FILE, loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import type { Broker } from "../broker/broker.ts";
import { assembleBroker } from "../assemble.ts";
import { Logger } from "../sys/log.ts";
import { configureLog, Ops } from "../sys/ops.ts";
import { type ClusterParts, joinCluster } from "../cluster/cluster.ts";
import { NodeView } from "../cluster/view.ts";
import { installLastResort } from "../sys/last_resort.ts";
import { conversionMessages } from "../config/mosquitto_conf.ts";
import { dropPrivileges, removePidFile, writePidFile } from "../sys/process.ts";
import { openStartReport, reportStart } from "./daemon.ts";

export interface ServeOptions {
  verbose: boolean;
  /** `-p PORT`: replaces the first listener's port (also after a reload). */
  port?: number;
}

/**
 * Start a broker, print one `listening <protocol> on <host>:<port>` line per listener (and
 * `listening http on ...` for `http_listener`).
 */
export async function serve(config: Config, opts: ServeOptions): Promise<Broker> {
  openStartReport();
  if (opts.verbose) config.log_type = ["all"];
  const log = new Logger(config.log_type, {
    timestamp: config.log_timestamp,
    timestampFormat: config.log_timestamp_format,
    format: config.log_format,
  });
  // Nothing a client sends may take the process down: what escapes is logged and survived.
  installLastResort(log);
  let cluster: ClusterParts | null = null;
  if (config.cluster) {
    try {
      cluster = await joinCluster(config.cluster, log);
    } catch (e) {
      console.error(`midge: cluster: ${e instanceof Error ? e.message : String(e)}`);
      reportStart(`midge: cluster: ${e instanceof Error ? e.message : String(e)}\n`, false);
      process.exit(1);
    }
  }
  const { broker } = assembleBroker(config, log, cluster ?? {});
  cluster?.attach(broker);
  const ops = new Ops(broker);
  const view = cluster ? new NodeView(cluster.node, cluster.fabric, broker) : null;
  if (view) {
    view.start();
    ops.setCluster(view);
  }
  let bound;
  try {
    configureLog(log, broker, config);
    // A mosquitto.conf: the options Midge does not honour, and recommendations.
    const { warnings, notes } = conversionMessages(config);
    for (const w of warnings) log.warning(`Warning: ${w}`);
    for (const n of notes) log.notice(`Note: ${n}`);
    if (config.pid_file) writePidFile(config.pid_file);
    bound = await broker.start();
    await ops.start();
    dropPrivileges(config.user, log);
  } catch (e) {
    // A corrupt store, a port in use, a log file that cannot be opened: one clear line, exit 1.
    const text = e instanceof Error ? e.message : String(e);
    for (const line of text.split("\n")) console.error(`midge: ${line}`);
    reportStart(`midge: ${text}\n`, false);
    await ops.stop().catch(() => {});
    await broker.stop().catch(() => {});
    if (config.pid_file) removePidFile(config.pid_file);
    process.exit(1);
  }
  const show = (h: string) => (h.includes(":") ? `[${h}]` : h);
  const lines = bound.map((l) => `listening ${l.protocol} on ${show(l.host)}:${l.port}`);
  if (ops.http) lines.push(`listening http on ${show(ops.http.host)}:${ops.http.port}`);
  for (const l of lines) console.log(l);
  reportStart(lines.map((l) => l + "\n").join(""), true);

  /** The configuration file again, with the same command-line overrides. */
  const reread = async (): Promise<Config> => {
    const next = await loadConfig(config.file === DEFAULT_FILE ? undefined : config.file);
    if (opts.port !== undefined) next.listeners[0].port = opts.port;
    if (opts.verbose) next.log_type = ["all"];
    return next;
  };
  let reloading = Promise.resolve();
  const reload = () => {
    reloading = reloading.then(async () => {
      log.notice(`Received SIGHUP, reloading the configuration from ${config.file}.`);
      let next: Config;
      try {
        next = await reread();
      } catch (e) {
        // A ConfigError holds one line per problem: each is logged as a line of its own.
        for (const line of String((e as Error).message ?? e).split("\n")) {
          log.error(`Reload failed, the running configuration stays: ${line}`);
        }
        return;
      }
      await ops.reload(next);
    }).catch((e) => log.error(`Reload failed: ${(e as Error).message ?? e}`));
  };

  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.notice(`Received ${sig}, shutting down.`);
    await ops.stop();
    view?.stop();
    // Stops accepting, sends MQTT 5 clients DISCONNECT 0x8B, commits and closes the store.
    await broker.stop();
    await cluster?.node.stop();
    if (config.pid_file) removePidFile(config.pid_file);
    log.notice("Shut down.");
    log.close();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
  try {
    process.on("SIGHUP", reload);
  } catch {
    // No SIGHUP on Windows.
  }
  return broker;
}
