/** `midge serve`: start the broker on a configuration and run until SIGINT/SIGTERM. */
import process from "node:process";
import type { Config } from "../config/schema.ts";
import { Broker } from "../broker/broker.ts";
import { Logger } from "../sys/log.ts";

export interface ServeOptions {
  verbose: boolean;
}

/** Start a broker, print one `listening <protocol> on <host>:<port>` line per listener. */
export async function serve(config: Config, opts: ServeOptions): Promise<Broker> {
  const log = new Logger(opts.verbose ? ["all"] : config.log_type, {
    timestamp: config.log_timestamp,
    sink: config.log_dest.includes("stdout")
      ? (line) => console.log(line)
      : (line) => console.error(line),
  });
  const broker = new Broker(config, log);
  let bound;
  try {
    bound = await broker.start();
  } catch (e) {
    // A corrupt store, a port in use, a missing certificate: one clear line, exit 1.
    console.error(`midge: ${e instanceof Error ? e.message : String(e)}`);
    await broker.stop().catch(() => {});
    process.exit(1);
  }
  for (const l of bound) {
    const host = l.host.includes(":") ? `[${l.host}]` : l.host;
    console.log(`listening ${l.protocol} on ${host}:${l.port}`);
  }
  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.notice(`Received ${sig}, shutting down.`);
    await broker.stop();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
  if (process.platform !== "win32") {
    // SIGHUP re-reads password_file and acl_file (and whatever else registers a reload hook);
    // a broken file keeps the previous one in force.
    process.on("SIGHUP", () => {
      log.notice("Received SIGHUP, reloading.");
      broker.reload().catch((e) => log.error(`Reload failed: ${e}`));
    });
  }
  return broker;
}
