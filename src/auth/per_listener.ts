/**
 * Mosquitto's `per_listener_settings`: one authentication and ACL state per distinct set of
 * listener security settings (listeners with the same files share one), and a dispatcher with
 * the `Auth` interface that answers each question with the state of the client's listener. A
 * session is tied to its listener's state when its client connects (`bind`); a session restored
 * from disk whose client has not come back is tied to none: it may not publish (its will is
 * not sent) and messages for it are queued and checked when its client connects.
 */
import type { Config, ListenerConfig } from "../config/schema.ts";
import { listenerSecurity, sameSecurity } from "../config/listener_security.ts";
import type { Logger } from "../sys/log.ts";
import type { Outgoing, Session } from "../broker/session.ts";
import { type AclHolder, Auth, type LoginResult } from "./auth.ts";

/** The configuration one listener's `Auth` sees: the broker's, with that listener's files. */
function listenerView(config: Config, listeners: ListenerConfig[]): Config {
  const first = listeners[0];
  return Object.create(config, {
    password_file: { get: () => listenerSecurity(config, first).password_file },
    acl_file: { get: () => listenerSecurity(config, first).acl_file },
    allow_anonymous: { get: () => listenerSecurity(config, first).allow_anonymous },
    listeners: { value: listeners },
    // Plugins are the broker's, not a listener's: the loader refuses them with per_listener_settings.
    plugins: { value: [] },
  });
}

/** Authentication and ACLs per listener, with the same methods the broker calls on `Auth`. */
export class PerListenerAuth {
  readonly #byListener = new Map<ListenerConfig, Auth>();
  readonly #bySession = new WeakMap<AclHolder, Auth>();
  readonly #all: Auth[] = [];
  /** For clients that came through no listener: the top-level settings. */
  readonly #fallback: Auth;
  /** Dynamic security is not available per listener (the loader refuses the combination). */
  readonly dynsec: null = null;

  constructor(config: Config, log: Logger) {
    const groups: ListenerConfig[][] = [];
    for (const l of config.listeners) {
      const sec = listenerSecurity(config, l);
      const g = groups.find((g) => sameSecurity(listenerSecurity(config, g[0]), sec));
      if (g) g.push(l);
      else groups.push([l]);
    }
    for (const g of groups) {
      const auth = new Auth(listenerView(config, g), log);
      this.#all.push(auth);
      for (const l of g) this.#byListener.set(l, auth);
    }
    this.#fallback = new Auth(
      { ...config, per_listener_settings: false, listeners: [], plugins: [] },
      log,
    );
  }

  #of(listener: ListenerConfig | undefined): Auth {
    return (listener && this.#byListener.get(listener)) ?? this.#fallback;
  }

  /** Whether any listener has an acl_file in force. */
  get aclActive(): boolean {
    return this.#all.some((a) => a.aclActive);
  }

  /** Users over every listener's password file. */
  get userCount(): number {
    return this.#all.reduce((n, a) => n + a.userCount, 0);
  }

  /** Reads every listener's files. Throws `AuthFileError` if one cannot be used. */
  async load(): Promise<void> {
    for (const a of this.#all) await a.load();
  }

  /** Re-reads every listener's files (SIGHUP); true when all were reloaded. */
  async reload(): Promise<boolean> {
    let ok = true;
    for (const a of this.#all) if (!(await a.reload())) ok = false;
    return ok;
  }

  /** Whether clients without a user name may connect through `listener`. */
  anonymousAllowed(listener: ListenerConfig | undefined): boolean {
    return this.#of(listener).anonymousAllowed(listener);
  }

  /** CONNECT through `listener`: checked against that listener's password file. */
  checkLogin(
    listener: ListenerConfig | undefined,
    address: string,
    username: string | undefined,
    password: Uint8Array | undefined,
  ): LoginResult | Promise<LoginResult> {
    return this.#of(listener).checkLogin(listener, address, username, password);
  }

  /** Ties the session to the state of the listener its client is connected through. */
  bind(session: AclHolder): void {
    const listener = (session as Partial<Session>).connection?.listener;
    if (!listener) {
      this.#bySession.delete(session);
      session.aclBound = false;
      return;
    }
    const auth = this.#of(listener);
    this.#bySession.set(session, auth);
    auth.bind(session);
  }

  /** May the session publish to `topic`? Not while it is tied to no listener (ACLs in force). */
  canPublish(session: AclHolder, topic: string): boolean {
    const a = this.#bySession.get(session);
    return a ? a.canPublish(session, topic) : !this.aclActive;
  }

  /** May the session receive `topic`? Deferred (true) while it is tied to no listener. */
  canRead(session: AclHolder, topic: string): boolean {
    const a = this.#bySession.get(session);
    return a ? a.canRead(session, topic) : true;
  }

  /** May the session subscribe to `filter`? */
  canSubscribe(session: AclHolder, filter: string): boolean {
    const a = this.#bySession.get(session);
    return a ? a.canSubscribe(session, filter) : !this.aclActive;
  }

  /** May the session unsubscribe from `filter`? (Only dynamic security restricts this.) */
  canUnsubscribe(session: AclHolder, filter: string): boolean {
    const a = this.#bySession.get(session);
    return a ? a.canUnsubscribe(session, filter) : true;
  }

  /** Drops queued messages the reconnected client may not read (see `Auth.dropUnreadable`). */
  dropUnreadable(session: Session): Outgoing[] {
    return this.#bySession.get(session)?.dropUnreadable(session) ?? [];
  }

  /** Recent failed logins counted for `address` over every listener. */
  failures(address: string): number {
    return this.#all.reduce((n, a) => n + a.failures(address), 0);
  }

  /** Addresses tracked for failed logins over every listener. */
  get trackedAddresses(): number {
    return this.#all.reduce((n, a) => n + a.trackedAddresses, 0);
  }
}
