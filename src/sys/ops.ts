/**
 * What lets an operator see and steer a running broker, put together: log destinations, the
 * `$SYS` tree, the event-loop lag sampler, the HTTP listener (metrics, admin API), and the
 * reload of the configuration on SIGHUP. `midge serve` starts one `Ops` next to its broker.
 */
import type { Broker } from "../broker/broker.ts";
import { type Config, splitHostPort } from "../config/schema.ts";
import { ConsoleState } from "./console_api.ts";
import { type HttpListener, startHttp } from "./http.ts";
import { type Logger, sinksFor } from "./log.ts";
import { LagSampler } from "./metrics.ts";
import { applyReloadable, describe, type ReloadReport } from "./reload.ts";
import { SysTree } from "./systree.ts";
import type { ClusterView } from "./cluster_view.ts";

const enc = new TextEncoder();

/** `log_dest topic`: log lines published (not retained) to `$SYS/broker/log/<X>`. */
export function logPublisher(broker: Broker): (topic: string, line: string) => void {
  return (topic, line) =>
    broker.publish({
      topic,
      payload: enc.encode(line),
      qos: 0,
      retain: false,
      expiresAt: 0,
      origin: "",
    });
}

/** Point `log` at the destinations, types, format and timestamps of `config`. Throws (file). */
export function configureLog(log: Logger, broker: Broker, config: Config): void {
  const sinks = sinksFor(config.log_dest, logPublisher(broker));
  log.setTypes(config.log_type);
  log.configure({
    sinks,
    timestamp: config.log_timestamp,
    timestampFormat: config.log_timestamp_format,
    format: config.log_format,
  });
}

export class Ops {
  readonly broker: Broker;
  readonly log: Logger;
  readonly sys: SysTree;
  readonly lag = new LagSampler();
  /** The web console's state (history, log ring, topic counters, sign-ins). */
  readonly console: ConsoleState;
  http: HttpListener | null = null;

  constructor(broker: Broker) {
    this.broker = broker;
    this.log = broker.log;
    this.sys = new SysTree(broker);
    this.console = new ConsoleState(broker, this.lag);
  }

  /** Shows the cluster this broker is a node of in $SYS, /metrics, the admin API, the console. */
  setCluster(view: ClusterView): void {
    this.sys.extra = () => view.sys();
    this.console.cluster = view;
    this.console.nodes = () => view.nodes();
  }

  /**
   * Start $SYS, the lag sampler and (when `http_listener` is set) the HTTP listener with the
   * web console.
   */
  async start(): Promise<void> {
    this.lag.start();
    this.sys.start();
    const cfg = this.broker.config;
    const addr = cfg.http_listener;
    if (addr) {
      const { host, port } = splitHostPort(addr)!;
      const tls = cfg.http_certfile
        ? { certfile: cfg.http_certfile, keyfile: cfg.http_keyfile }
        : undefined;
      try {
        this.console.start();
        this.http = await startHttp(this.broker, host, port, this.lag, this.console, tls);
      } catch (e) {
        this.stop();
        throw new Error(`http_listener ${addr}: ${(e as Error).message ?? e}`);
      }
    }
  }

  /**
   * Apply a freshly read configuration: reloadable keys take effect, log files are reopened
   * (log rotation), reload hooks run (password and ACL files), and the log says what was applied
   * and what needs a restart. A log destination that cannot be opened keeps the old ones.
   */
  async reload(next: Config): Promise<ReloadReport> {
    const cfg = this.broker.config;
    const before = { log_dest: cfg.log_dest };
    const report = applyReloadable(cfg, next);
    try {
      configureLog(this.log, this.broker, cfg);
    } catch (e) {
      cfg.log_dest = before.log_dest;
      const i = report.applied.findIndex((c) => c.key === "log_dest");
      if (i >= 0) report.notApplied.push(...report.applied.splice(i, 1));
      this.log.error(`Reload: ${(e as Error).message}; the log destinations stay as they were.`);
      try {
        configureLog(this.log, this.broker, cfg);
      } catch { /* the old destinations were open a moment ago; keep whatever is set */ }
    }
    this.sys.restart();
    try {
      await this.broker.reload(); // the hooks others registered: password and ACL files, …
    } catch (e) {
      this.log.error(`Reload: ${(e as Error).message ?? e}`);
    }
    const applied = report.applied.map(describe);
    this.log.notice(
      `Configuration reloaded from ${cfg.file}: ${
        applied.length ? `applied ${applied.join(", ")}` : "no reloadable setting changed"
      }.`,
    );
    if (report.notApplied.length) {
      this.log.warning(
        `Not applied until restart: ${report.notApplied.map(describe).join(", ")}.`,
      );
    }
    return report;
  }

  /** Stop timers and the HTTP listener. */
  async stop(): Promise<void> {
    this.sys.stop();
    this.lag.stop();
    this.console.stop();
    const h = this.http;
    this.http = null;
    if (h) await h.close();
  }
}
