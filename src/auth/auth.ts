/**
 * The broker's one object for authentication and authorization. It builds an auth chain per
 * listener from `auth_chain` (links shared where the settings are the same), and the broker asks
 * it `checkLogin` on CONNECT (and v5 re-authentication), `canPublish` / `canSubscribe` /
 * `canRead` on PUBLISH, SUBSCRIBE and each delivery. It also slows down repeated failed logins
 * from one address, and remembers each session's answers per topic. `reload()` re-reads every
 * link's files (SIGHUP).
 *
 * Dynamic security (a `[[plugins]]` table), when configured, is the first link of every chain,
 * as Mosquitto asks its plugins before the files: its "allow" or "deny" decides; on "next" the
 * configured links do. The broker also asks `canUnsubscribe` on UNSUBSCRIBE for its rules.
 */
import { isIP } from "node:net";
import type { Config, ListenerConfig } from "../config/schema.ts";
import { listenerSecurity } from "../config/listener_security.ts";
import type { Logger } from "../sys/log.ts";
import type { Session } from "../broker/session.ts";
import type { Outgoing } from "../broker/outgoing.ts";
import {
  ACCESS_READ,
  ACCESS_SUBSCRIBE,
  ACCESS_UNSUBSCRIBE,
  ACCESS_WRITE,
  type AccessRequest,
  type LoginAnswer,
  type LoginRequest,
  type Principal,
} from "./chain_types.ts";
import { AuthChain, type ChainAnswer, type Link, SessionAuth } from "./chain.ts";
import { LINK_KINDS, type LinkContext, type LinkKind } from "./links.ts";
import { PasswordFileLink } from "./password_link.ts";
import { DynamicSecurity } from "./dynsec/dynsec.ts";

export { AuthFileError } from "./auth_file.ts";

/** The answer to a login: accepted (with what the link said), or refused with a reason for the log. */
export type LoginResult =
  | { ok: true; answer?: LoginAnswer }
  | {
    ok: false;
    /** For the broker's log only: never a password or a token. */
    reason: string;
    /** How long to wait before sending the refusal (repeated failures from one address). */
    delayMs: number;
    /** The v5 reason code when not 0x87 Not authorized (0x86 Bad user name or password, …). */
    code?: number;
  };

/**
 * What the checks need of a session: who it belongs to, and its auth state (`bind`):
 * undefined before it is bound, null when it may do anything, its chain when nothing about it
 * is remembered yet, a `SessionAuth` once it has been checked or came with grants.
 */
export interface AclHolder {
  readonly clientId: string;
  username: string | undefined;
  auth: SessionAuth | AuthChain | null | undefined;
  /** The current connection, whose listener the principal names. */
  readonly connection?: { readonly listener: ListenerConfig | undefined } | null;
}

/** Failed logins of one remote address. */
interface Failures {
  count: number;
  last: number;
}

const OK: LoginResult = { ok: true };
/** Topics whose answers are remembered per session before the memory starts over. */
const TOPIC_CACHE = 256;
/** Remote addresses tracked for failed logins; the oldest is forgotten beyond this. */
export const MAX_TRACKED_ADDRESSES = 10_000;
/** Refusal delay: none for the first failure, then FIRST_DELAY doubling up to MAX_DELAY. */
const FIRST_DELAY_MS = 200;
export const MAX_DELAY_MS = 5000;
/** Failures older than this are forgotten. */
const FAILURE_MEMORY_MS = 10 * 60 * 1000;

/** Is `host` a loopback address or name (127.0.0.0/8, ::1, localhost)? */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (h === "::1") return true;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  return mapped !== null && mapped[1].startsWith("127.");
}

/** Bits of one kind of access in a remembered answer: read is 0, write 1 + qos * 2 + retain. */
function slot(access: number, qos: number, retain: boolean): number {
  return access === ACCESS_READ ? 0 : 1 + qos * 2 + (retain ? 1 : 0);
}

export class Auth {
  readonly #config: Config;
  readonly #log: Logger;
  /** Every link made, by kind and settings (`LinkKind.key`). */
  readonly #links = new Map<string, Link>();
  /** The chain of each configured listener; `#default` for the others (bridges, restored sessions). */
  readonly #chains = new Map<ListenerConfig, AuthChain>();
  readonly #default: AuthChain;
  readonly #all: AuthChain[] = [];
  /** Bumped whenever rules change (reload, a link's own change), so remembered answers go. */
  #gen = 0;
  readonly #failures = new Map<string, Failures>();
  /** Dynamic security, when a [[plugins]] table names it. */
  readonly dynsec: DynamicSecurity | null = null;

  constructor(config: Config, log: Logger, kinds: Record<string, LinkKind> = LINK_KINDS) {
    this.#config = config;
    this.#log = log;
    const plugin = (config.plugins ?? []).find((p) => p.name === "dynamic-security");
    let first: Link | null = null;
    if (plugin) {
      const ds = this.dynsec = new DynamicSecurity(plugin.config_file, log);
      // Its answers depend only on its data; every change (a command, a reload) drops the
      // answers remembered.
      first = {
        name: ds.name,
        cacheable: true,
        load: () => ds.load(),
        reload: () => ds.reload(),
        close: () => ds.close(),
        watch: (changed) => (ds.onChange = changed),
        authenticate: (req) => ds.authenticate(req),
        authorize: (req) => ds.authorize(req),
      };
      first.watch!(() => this.#changed());
      this.#links.set("dynsec", first);
    }
    const byKey = new Map<string, AuthChain>();
    const build = (listener: ListenerConfig | undefined): AuthChain => {
      const own = (listener as { auth_chain?: string[] } | undefined)?.auth_chain;
      const names = own && own.length ? own : config.auth_chain;
      const ctx: LinkContext = {
        config,
        listener,
        log,
        anonymousAllowed: (l) => this.anonymousAllowed(l),
        afterPlugin: first !== null,
      };
      const links = names.map((name) => {
        const kind = kinds[name];
        if (!kind) throw new Error(`auth_chain: unknown link "${name}"`);
        const key = kind.key(ctx);
        let link = this.#links.get(key);
        if (!link) {
          link = kind.make(ctx);
          link.watch?.(() => this.#changed());
          this.#links.set(key, link);
        }
        return link;
      });
      const chainKey = names.map((n, i) => `${n}=${kinds[n].key(ctx)}#${i}`).join("|");
      let chain = byKey.get(chainKey);
      if (!chain) {
        chain = new AuthChain(first ? [first, ...links] : links, config.auth_no_match);
        byKey.set(chainKey, chain);
        this.#all.push(chain);
      }
      return chain;
    };
    this.#default = build(undefined);
    for (const l of config.listeners) this.#chains.set(l, build(l));
  }

  /** The rules changed: every remembered answer is dropped, and the chains look again. */
  #changed(): void {
    this.#gen++;
    for (const c of this.#all) c.refresh();
  }

  /** The chain a listener's clients go through. */
  chainFor(listener: ListenerConfig | undefined): AuthChain {
    return (listener && this.#chains.get(listener)) || this.#default;
  }

  /** Whether some chain has an authorizer in force (false: every topic is allowed). */
  get aclActive(): boolean {
    for (const c of this.#all) if (c.authorizing) return true;
    return false;
  }

  /** Number of users in the password files (0 when there is none). */
  get userCount(): number {
    let n = 0;
    for (const l of this.#links.values()) if (l instanceof PasswordFileLink) n += l.userCount;
    return n;
  }

  /** Loads every link (files, keys). Throws `AuthFileError` if a file cannot be used. */
  async load(): Promise<void> {
    for (const l of this.#links.values()) await l.load?.();
    this.#changed();
    for (const l of this.#config.listeners) {
      const chain = this.chainFor(l);
      const pw = chain.authenticators.find((a) => a instanceof PasswordFileLink);
      if (
        chain.authenticators.length === 1 && pw !== undefined && !pw.active &&
        !this.anonymousAllowed(l)
      ) {
        this.#log.warning(
          `Listener ${l.bind_address}:${l.port} refuses every client: allow_anonymous is off there and no password_file is set.`,
        );
      }
    }
  }

  /**
   * Re-reads every link (SIGHUP). A file with problems is not used: the old users or rules
   * stay in force and each problem is logged with its file and line. Resolves to true when
   * everything was reloaded.
   */
  async reload(): Promise<boolean> {
    let ok = true;
    for (const l of this.#links.values()) {
      if (l.reload && (await l.reload()) === false) ok = false;
    }
    this.#changed();
    return ok;
  }

  /** Releases what the links hold (timers, connection pools). */
  close(): void {
    for (const l of this.#links.values()) l.close?.();
  }

  /**
   * Whether clients without a user name may connect through `listener`: its own
   * allow_anonymous, or the top-level one for "global"; "localhost" means "when the listener is
   * bound to a loopback address".
   */
  anonymousAllowed(listener: ListenerConfig | undefined): boolean {
    const v = listenerSecurity(this.#config, listener).allow_anonymous;
    if (v === "localhost") return listener !== undefined && isLoopback(listener.bind_address);
    return v === true;
  }

  /** Whether a link of `listener`'s chain takes v5 enhanced authentication `method`. */
  supportsMethod(listener: ListenerConfig | undefined, method: string): boolean {
    return this.chainFor(listener).authenticators.some((a) => a.methods?.includes(method));
  }

  /**
   * CONNECT (or v5 re-authentication): may this client connect through `listener` from
   * `address`? Synchronous when no link has to wait (slow hash, token signature, remote
   * service), a Promise otherwise. A refusal carries the delay to wait before answering
   * (repeated failures from one address).
   */
  checkLogin(
    listener: ListenerConfig | undefined,
    address: string,
    username: string | undefined,
    password: Uint8Array | undefined,
    more: Partial<LoginRequest> = {},
  ): LoginResult | Promise<LoginResult> {
    const req: LoginRequest = {
      clientId: "",
      protocolVersion: 4,
      ...more,
      listener,
      address,
      username,
      password,
    };
    const a = this.chainFor(listener).authenticate(req);
    if (a instanceof Promise) {
      return a.then((r) => this.#result(address, r), (e) => {
        this.#log.error(`Authentication of ${address} failed: ${e}`);
        return this.#fail(address, "authentication failed");
      });
    }
    return this.#result(address, a);
  }

  #result(address: string, a: ChainAnswer): LoginResult {
    if (a.verdict === "allow") {
      return a.expiresAt || a.superuser || a.grants || a.attributes ? { ok: true, answer: a } : OK;
    }
    return this.#fail(address, a.reason ?? "not authorized", a.code);
  }

  #fail(address: string, reason: string, code?: number): LoginResult {
    const now = Date.now();
    const prev = this.#failures.get(address);
    const count = prev && now - prev.last < FAILURE_MEMORY_MS ? prev.count + 1 : 1;
    // Re-insert so the Map's order is least recently failed first.
    this.#failures.delete(address);
    if (this.#failures.size >= MAX_TRACKED_ADDRESSES) {
      this.#failures.delete(this.#failures.keys().next().value!);
    }
    this.#failures.set(address, { count, last: now });
    const r: LoginResult = { ok: false, reason, delayMs: refusalDelay(count) };
    if (code !== undefined) r.code = code;
    return r;
  }

  /** Recent failed logins counted for `address` (0 when none or forgotten). */
  failures(address: string): number {
    const f = this.#failures.get(address);
    return f && Date.now() - f.last < FAILURE_MEMORY_MS ? f.count : 0;
  }

  /** Addresses currently tracked for failed logins (bounded by MAX_TRACKED_ADDRESSES). */
  get trackedAddresses(): number {
    return this.#failures.size;
  }

  /**
   * Binds a session to its `clientId` and `username` (set before), the chain of `listener`,
   * and what its login answered (grants, superuser); called on every CONNECT and
   * re-authentication (a session resumed under another user name takes that user's rules). A
   * session not bound yet (restored from disk, its client not back) may not publish while an
   * authorizer is in force (its will is not sent); messages routed to it are queued and checked
   * by `dropUnreadable` when its client connects.
   */
  bind(session: AclHolder, listener?: ListenerConfig, answer?: LoginAnswer): void {
    if (listener === undefined && this.#config.per_listener_settings) {
      // Restored from disk: which listener's rules apply is known when its client is back.
      session.auth = undefined;
      return;
    }
    if (answer?.superuser) {
      session.auth = null;
      return;
    }
    const chain = this.chainFor(listener);
    session.auth = answer?.grants || answer?.attributes
      ? new SessionAuth(this.#principal(session, listener, answer), chain, answer.grants)
      : chain;
  }

  #principal(s: AclHolder, listener: ListenerConfig | undefined, a?: LoginAnswer): Principal {
    const p: { -readonly [K in keyof Principal]: Principal[K] } = {
      clientId: s.clientId,
      username: s.username,
      listener,
    };
    const link = (a as ChainAnswer | undefined)?.link;
    if (a?.attributes && link) p.attributes = { [link]: a.attributes };
    return p;
  }

  /** The session's checked state, made from its chain on first use; null: nothing to check. */
  #state(s: AclHolder, st: SessionAuth | AuthChain): SessionAuth | null {
    if (st instanceof SessionAuth) return st;
    if (!st.authorizing) return null;
    const made = new SessionAuth(this.#principal(s, s.connection?.listener), st, undefined);
    s.auth = made;
    return made;
  }

  /** May the session publish to `topic`? (Always true without an authorizer or grants.) */
  canPublish(s: AclHolder, topic: string, qos = 0, retain = false): boolean | Promise<boolean> {
    const st = s.auth;
    if (st === null) return true;
    if (st === undefined) return !this.aclActive;
    const b = this.#state(s, st);
    return b === null || this.#check(b, topic, ACCESS_WRITE, qos, retain);
  }

  /**
   * May the session receive messages published to `topic`? Always true without an authorizer
   * or grants, and deferred (true) for a session not bound yet: see `dropUnreadable`.
   */
  canRead(s: AclHolder, topic: string): boolean | Promise<boolean> {
    const st = s.auth;
    if (st === null || st === undefined) return true;
    const b = this.#state(s, st);
    return b === null || this.#check(b, topic, ACCESS_READ, 0, false);
  }

  /**
   * May the session subscribe to `filter` (shared-subscription prefix already removed) at
   * `qos`? With an acl_file: refused when nothing it matches is readable.
   */
  canSubscribe(s: AclHolder, filter: string, qos = 0): boolean | Promise<boolean> {
    const st = s.auth;
    if (st === null) return true;
    if (st === undefined) return !this.aclActive;
    const b = this.#state(s, st);
    if (b === null) return true;
    const req: AccessRequest = {
      principal: b.principal,
      topic: filter,
      access: ACCESS_SUBSCRIBE,
      qos,
    };
    const v = b.chain.authorize(req, b.grants);
    return v instanceof Promise ? v.then((r) => r === "allow") : v === "allow";
  }

  #check(
    b: SessionAuth,
    topic: string,
    access: typeof ACCESS_READ | typeof ACCESS_WRITE,
    qos: number,
    retain: boolean,
  ): boolean | Promise<boolean> {
    if (b.gen !== this.#gen) {
      b.gen = this.#gen;
      b.lastTopic = "";
      b.lastBits = 0;
      b.cache?.clear();
    }
    const known = 1 << (slot(access, qos, retain) * 2);
    let bits: number;
    if (topic === b.lastTopic) bits = b.lastBits;
    else {
      bits = b.cache?.get(topic) ?? 0;
      if (bits & known) {
        b.lastTopic = topic;
        b.lastBits = bits;
      }
    }
    if (bits & known) return (bits & (known << 1)) !== 0;
    const req: AccessRequest = access === ACCESS_READ
      ? { principal: b.principal, topic, access }
      : { principal: b.principal, topic, access, qos, retain };
    const v = b.chain.authorize(req, b.grants);
    if (v instanceof Promise) return v.then((r) => r === "allow");
    const allowed = v === "allow";
    if (b.chain.cacheable && b.grants?.cacheable !== false) {
      const cache = b.cache ??= new Map();
      if (cache.size >= TOPIC_CACHE && !cache.has(topic)) cache.clear();
      bits |= known | (allowed ? known << 1 : 0);
      cache.set(topic, bits);
      b.lastTopic = topic;
      b.lastBits = bits;
    }
    return allowed;
  }

  /**
   * May the session unsubscribe from `filter` (shared-subscription prefix removed)? Only
   * dynamic security has unsubscribe rules; the acl_file allows every unsubscribe. An answer
   * still pending allows it (an unsubscribe gives the client nothing).
   */
  canUnsubscribe(s: AclHolder, filter: string): boolean {
    const st = s.auth;
    if (st === null) return true;
    if (st === undefined) return !this.aclActive;
    const b = this.#state(s, st);
    if (b === null) return true;
    const req: AccessRequest = {
      principal: b.principal,
      topic: filter,
      access: ACCESS_UNSUBSCRIBE,
    };
    const v = b.chain.authorize(req, b.grants);
    return v instanceof Promise || v === "allow";
  }

  /**
   * When a CONNECT resumes a session (after `bind`): removes the messages queued for it, and the
   * in-flight ones not yet acknowledged, that this client may not read. They were queued while
   * no one was bound (restored from disk) or for a client with another user name. Returns them,
   * so their stored copies can be deleted; a Promise when an authorizer had to be asked.
   */
  dropUnreadable(session: Session): Outgoing[] | Promise<Outgoing[]> {
    if (!session.auth) return [];
    const denied = new Set<Outgoing>();
    const waits: Promise<void>[] = [];
    const ask = (o: Outgoing) => {
      const r = this.canRead(session, o.msg.topic);
      if (r === false) denied.add(o);
      else if (r instanceof Promise) {
        waits.push(r.then((ok) => {
          if (!ok) denied.add(o);
        }));
      }
    };
    for (const o of session.queue) ask(o);
    for (const f of session.inflight.values()) if (f.state !== "pubrel") ask(f);
    if (waits.length === 0) return session.discard(denied);
    return Promise.all(waits).then(() => session.discard(denied));
  }
}

/** The wait before refusing the `count`-th recent failure of one address. */
export function refusalDelay(count: number): number {
  if (count <= 1) return 0;
  return Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.min(count - 2, 20));
}
