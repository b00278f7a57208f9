/**
 * Connections to NATS for a cluster node, made from the [cluster] table: credentials, TLS, the
 * whole server list, reconnecting forever with a short wait (the client's default gives up after
 * 10 attempts). A node that cannot reach NATS at start says so in one line naming the URLs and
 * keeps trying; losses and returns at run time are logged once each.
 */
import { readFileSync } from "node:fs";
import { connect } from "@nats-io/transport-node";
import { credsAuthenticator, type NatsConnection, type Status } from "@nats-io/nats-core";
import type { ClusterConfig } from "../config/schema.ts";
import type { Logger } from "../sys/log.ts";

/** How long a node waits before saying that NATS cannot be reached at start. */
const FIRST_CONNECT_WARN_MS = 2000;

/** Opens one connection for `role` ("pub", "sub", …) and logs its state changes. */
export async function connectNats(
  cfg: ClusterConfig,
  role: string,
  log: Logger,
): Promise<NatsConnection> {
  const opts: Parameters<typeof connect>[0] = {
    servers: cfg.servers,
    name: `midge:${cfg.name}:${cfg.node_id}:${role}`,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: true,
    timeout: 2000,
    pingInterval: 10_000,
  };
  if (cfg.user) opts.user = cfg.user;
  if (cfg.password) opts.pass = cfg.password;
  if (cfg.token) opts.token = cfg.token;
  if (cfg.creds_file) opts.authenticator = credsAuthenticator(readFileSync(cfg.creds_file));
  if (cfg.tls_ca || cfg.tls_cert) {
    opts.tls = {
      ...(cfg.tls_ca ? { caFile: cfg.tls_ca } : {}),
      ...(cfg.tls_cert ? { certFile: cfg.tls_cert, keyFile: cfg.tls_key } : {}),
    };
  }
  const warn = setTimeout(() => {
    log.warning(
      `Cluster: cannot reach NATS at ${cfg.servers.join(", ")} yet; still trying.`,
    );
  }, FIRST_CONNECT_WARN_MS);
  let nc: NatsConnection;
  try {
    nc = await connect(opts);
  } finally {
    clearTimeout(warn);
  }
  watchStatus(nc, role, log);
  return nc;
}

/** Logs disconnects and reconnects, one line each; never throws. */
function watchStatus(nc: NatsConnection, role: string, log: Logger): void {
  (async () => {
    for await (const s of nc.status() as AsyncIterable<Status>) {
      if (s.type === "disconnect") {
        log.warning(`Cluster: NATS ${role} connection to ${s.server} lost.`);
      } else if (s.type === "reconnect") {
        log.notice(`Cluster: NATS ${role} connection back on ${s.server}.`);
      } else if (s.type === "ldm") {
        log.notice(`Cluster: NATS server ${s.server} is going away (lame duck).`);
      } else if (s.type === "error") log.warning(`Cluster: NATS ${role}: ${s.error.message}`);
    }
  })().catch(() => {});
}
