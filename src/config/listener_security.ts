/**
 * Which security settings apply to the clients of one listener: Mosquitto's
 * `per_listener_settings`. This is the one place that decides it; authentication and
 * authorization ask here rather than reading the keys themselves.
 */
import type { Config, ListenerConfig } from "./schema.ts";

/** The password file, ACL file and anonymous rule in force on one listener. */
export interface ListenerSecurity {
  /** "" = no password file. */
  password_file: string;
  /** "" = no ACL (every topic allowed). */
  acl_file: string;
  /** true, false, or "localhost" (allowed when the listener is bound to a loopback address). */
  allow_anonymous: boolean | "localhost";
}

/**
 * The settings for clients of `listener` (undefined: a client that came through no listener,
 * such as a bridge's local side). With `per_listener_settings` the listener's own files apply;
 * otherwise the top-level ones. A listener's allow_anonymous applies in both cases unless it is
 * "global" (the top-level value).
 */
export function listenerSecurity(
  config: Config,
  listener: ListenerConfig | undefined,
): ListenerSecurity {
  const own = listener?.allow_anonymous ?? "global";
  const allow_anonymous = own === "global" ? config.allow_anonymous : own;
  if (config.per_listener_settings && listener) {
    return { password_file: listener.password_file, acl_file: listener.acl_file, allow_anonymous };
  }
  return { password_file: config.password_file, acl_file: config.acl_file, allow_anonymous };
}

/** Whether two listeners have the same security settings (they can share one state). */
export function sameSecurity(a: ListenerSecurity, b: ListenerSecurity): boolean {
  return a.password_file === b.password_file && a.acl_file === b.acl_file &&
    a.allow_anonymous === b.allow_anonymous;
}
