/**
 * Configuration reload (SIGHUP): which keys take effect without a restart, and the comparison of
 * the running configuration with a freshly read one. The keys that can be reloaded are copied
 * into `broker.config` (the broker reads its limits from there on every use); the others are
 * reported as needing a restart. Mosquitto's reloadable set is the model (R/NR in its man page).
 */
import type { Config } from "../config/schema.ts";

/**
 * Top-level keys that take effect on reload. Code that owns a key and can apply it on reload
 * (reading it from `broker.config` in a hook registered in `broker.reloadHooks`) adds it here.
 */
export const RELOADABLE_KEYS: Set<string> = new Set([
  "max_inflight_messages",
  "max_queued_messages",
  "max_queued_bytes",
  "max_inflight_bytes",
  "memory_limit",
  "queue_qos0_messages",
  "upgrade_outgoing_qos",
  "max_keepalive",
  "max_packet_size",
  "message_size_limit",
  "max_qos",
  "retain_available",
  "max_topic_alias",
  "max_topic_alias_broker",
  "max_subscriptions_per_client",
  "max_subscription_bytes_per_client",
  "connect_timeout",
  "max_connections",
  "global_max_clients",
  "allow_zero_length_clientid",
  "auto_id_prefix",
  "persistent_client_expiration",
  "allow_anonymous",
  "password_file",
  "acl_file",
  "sys_interval",
  "log_type",
  "log_dest",
  "log_timestamp",
  "log_timestamp_format",
  "clientid_prefixes",
  "log_format",
  "connection_messages",
  "admin_token",
  "bridges",
]);

/** Reloaded keys that only apply to clients connecting after the reload. */
export const NEW_CONNECTIONS_ONLY: ReadonlySet<string> = new Set([
  "max_keepalive",
  "max_packet_size",
  "persistent_client_expiration",
  "max_topic_alias",
  "max_topic_alias_broker",
]);

/** Keys whose values must not appear in the log. */
const SECRET_KEYS: ReadonlySet<string> = new Set(["admin_token", "jwt_secret"]);

/** One difference between two configurations: a top-level key or `listener[i].key`. */
export interface Change {
  key: string;
  from: unknown;
  to: unknown;
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Every key whose value differs between `prev` and `next` (listeners key by key). */
export function diffConfig(prev: Config, next: Config): Change[] {
  const out: Change[] = [];
  const keys = new Set([...Object.keys(prev), ...Object.keys(next)]);
  for (const k of keys) {
    if (k === "file" || k === "listeners") continue;
    const a = (prev as unknown as Record<string, unknown>)[k];
    const b = (next as unknown as Record<string, unknown>)[k];
    if (!same(a, b)) out.push({ key: k, from: a, to: b });
  }
  const n = Math.max(prev.listeners.length, next.listeners.length);
  for (let i = 0; i < n; i++) {
    const a = prev.listeners[i] as unknown as Record<string, unknown> | undefined;
    const b = next.listeners[i] as unknown as Record<string, unknown> | undefined;
    if (!a || !b) {
      out.push({
        key: `listener[${i}]`,
        from: a ? "present" : "absent",
        to: b ? "present" : "absent",
      });
      continue;
    }
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (!same(a[k], b[k])) out.push({ key: `listener[${i}].${k}`, from: a[k], to: b[k] });
    }
  }
  return out;
}

/** What a reload did. */
export interface ReloadReport {
  /** Keys now in force. */
  applied: Change[];
  /** Keys that differ but need a restart. */
  notApplied: Change[];
}

/**
 * Copy the reloadable keys of `next` into `config` (in place: the broker holds this object) and
 * report the rest. Only keys that changed are touched.
 */
export function applyReloadable(config: Config, next: Config): ReloadReport {
  const report: ReloadReport = { applied: [], notApplied: [] };
  for (const c of diffConfig(config, next)) {
    if (RELOADABLE_KEYS.has(c.key)) {
      (config as unknown as Record<string, unknown>)[c.key] = c.to;
      report.applied.push(c);
    } else {
      report.notApplied.push(c);
    }
  }
  return report;
}

/** `key=value (was old)` for a log line; secrets hidden. */
export function describe(c: Change): string {
  if (SECRET_KEYS.has(c.key)) return `${c.key} (changed)`;
  const show = (v: unknown) => {
    const text = v === undefined ? "unset" : JSON.stringify(v);
    return text.length > 80 ? "(a different value)" : text; // [[bridge]] tables and the like
  };
  const when = NEW_CONNECTIONS_ONLY.has(c.key) ? ", for new connections" : "";
  return `${c.key}=${show(c.to)} (was ${show(c.from)}${when})`;
}
