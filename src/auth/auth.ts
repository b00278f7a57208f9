/**
 * Authentication and authorization state of a broker: the password file, the ACL file,
 * `allow_anonymous`, dynamic security (a `[[plugins]]` table), the slow-down of repeated failed
 * logins, and per-session ACL views. The broker asks it `checkLogin` on CONNECT, `canPublish` /
 * `canSubscribe` / `canUnsubscribe` / `canRead` on PUBLISH, SUBSCRIBE, UNSUBSCRIBE and each
 * delivery; `reload()` re-reads the files (SIGHUP).
 *
 * With dynamic security, it is asked first, as Mosquitto asks its plugins: its "allow" or
 * "deny" decides; on "next" the password file and ACL file decide, and when neither is set the
 * answer is a refusal (except that clients without a user name follow allow_anonymous).
 */
import { readFile } from "node:fs/promises";
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { isIP } from "node:net";
import type { Config, ListenerConfig } from "../config/schema.ts";
import type { LoginAnswer } from "./chain_types.ts";
import type { Logger } from "../sys/log.ts";
import type { Outgoing, Session } from "../broker/session.ts";
import { messageBytes } from "../broker/message.ts";
import { type Acl, AclView, parseAcl, READ, WRITE } from "./acl.ts";
import { type Access, ACCESS_SUBSCRIBE, ACCESS_UNSUBSCRIBE } from "./chain_types.ts";
import { DynamicSecurity } from "./dynsec/dynsec.ts";
import {
  cheapToVerify,
  type FileProblem,
  parsePasswordFile,
  type PasswordHash,
  verifyPassword,
  verifyPasswordSync,
} from "./password.ts";

/** The answer to a login: accepted, or refused with a reason for the log (never for the client). */
export type LoginResult =
  | { ok: true }
  | {
    ok: false;
    /** For the broker's log only: the CONNACK is the same whatever the reason. */
    reason: string;
    /** How long to wait before sending the refusal (repeated failures from one address). */
    delayMs: number;
  };

/** A file that cannot be used: names the file and every line at fault. */
export class AuthFileError extends Error {
  constructor(readonly file: string, readonly problems: FileProblem[]) {
    super(
      problems.map((p) => p.line > 0 ? `${file}:${p.line}: ${p.message}` : `${file}: ${p.message}`)
        .join("\n"),
    );
    this.name = "AuthFileError";
  }
}

/**
 * What the ACL checks need of a session: who it belongs to, and whether that is known yet
 * (`bind`). The session carries these itself, so a broker without an acl_file keeps nothing more.
 */
export interface AclHolder {
  readonly clientId: string;
  username: string | undefined;
  aclBound: boolean;
}

/** A bound session's ACL view with a per-topic cache, made on its first check. */
interface Bound {
  clientId: string;
  username: string | undefined;
  gen: number;
  view: AclView | null;
  /**
   * topic → bits: 1 read known, 2 read allowed, 4 write known, 8 write allowed. Made on the first
   * check (only with an acl_file), so sessions without one carry no map.
   */
  cache: Map<string, number> | null;
}

/** Failed logins of one remote address. */
interface Failures {
  count: number;
  last: number;
}

const OK: LoginResult = { ok: true };
/** Topics whose ACL answers are cached per session before the cache starts over. */
const TOPIC_CACHE = 256;
/** Remote addresses tracked for failed logins; the oldest is forgotten beyond this. */
export const MAX_TRACKED_ADDRESSES = 10_000;
/** Refusal delay: none for the first failure, then FIRST_DELAY doubling up to MAX_DELAY. */
const FIRST_DELAY_MS = 200;
export const MAX_DELAY_MS = 5000;
/** Failures older than this are forgotten. */
const FAILURE_MEMORY_MS = 10 * 60 * 1000;
/** Successful logins remembered (by a keyed MAC of the password) to skip slow hashes next time. */
const SUCCESS_CACHE = 4096;

/** Is `host` a loopback address or name (127.0.0.0/8, ::1, localhost)? */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (h === "::1") return true;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  return mapped !== null && mapped[1].startsWith("127.");
}

export class Auth {
  readonly #config: Config;
  readonly #log: Logger;
  #users: Map<string, PasswordHash> | null = null;
  #acl: Acl | null = null;
  /** Bumped whenever the rules change, so cached views and answers are rebuilt. */
  #gen = 0;
  /** ACL views of sessions that have been checked; entries are made only with an acl_file. */
  readonly #bound = new WeakMap<AclHolder, Bound>();
  readonly #failures = new Map<string, Failures>();
  readonly #macKey = randomBytes(32);
  readonly #verified = new Map<string, { hash: PasswordHash; mac: Uint8Array }>();
  /** A hash with the cost of a real entry, checked for unknown users so timing tells nothing. */
  #decoy: PasswordHash | null = null;
  /** Dynamic security, when a [[plugins]] table names it. */
  readonly dynsec: DynamicSecurity | null = null;

  constructor(config: Config, log: Logger) {
    this.#config = config;
    this.#log = log;
    const ds = (config.plugins ?? []).find((p) => p.name === "dynamic-security");
    if (ds) this.dynsec = new DynamicSecurity(ds.config_file, log);
  }

  /**
   * Whether an acl_file or dynamic security is in force (false: every topic is allowed, checks
   * can be skipped).
   */
  get aclActive(): boolean {
    return this.#acl !== null || this.dynsec !== null;
  }

  /** Number of users in the password file (0 when there is none). */
  get userCount(): number {
    return this.#users?.size ?? 0;
  }

  /** Reads password_file and acl_file. Throws `AuthFileError` if either cannot be used. */
  async load(): Promise<void> {
    const [users, acl] = await Promise.all([this.#readUsers(), this.#readAcl()]);
    await this.dynsec?.load();
    this.#install(users, acl);
    const listeners = this.#config.listeners;
    for (const l of listeners) {
      if (!this.anonymousAllowed(l) && users === null && this.dynsec === null) {
        this.#log.warning(
          `Listener ${l.bind_address}:${l.port} refuses every client: allow_anonymous is off there and no password_file is set.`,
        );
      }
    }
  }

  /**
   * Reads both files again (SIGHUP). A file with problems is not used: the old users or rules
   * stay in force and each problem is logged with its file and line. Resolves to true when
   * everything was reloaded.
   */
  async reload(): Promise<boolean> {
    let users: Map<string, PasswordHash> | null = this.#users;
    let acl: Acl | null = this.#acl;
    let ok = true;
    try {
      users = await this.#readUsers();
    } catch (e) {
      ok = false;
      this.#logFileError(e, "password_file");
    }
    try {
      acl = await this.#readAcl();
    } catch (e) {
      ok = false;
      this.#logFileError(e, "acl_file");
    }
    this.#install(users, acl);
    await this.dynsec?.reload();
    return ok;
  }

  #logFileError(e: unknown, key: string): void {
    const text = e instanceof Error ? e.message : String(e);
    for (const line of text.split("\n")) this.#log.error(`Error: ${line}`);
    this.#log.error(`The ${key} was not reloaded; the previous one stays in force.`);
  }

  #install(users: Map<string, PasswordHash> | null, acl: Acl | null): void {
    if (users !== this.#users || acl !== this.#acl) this.#gen++;
    this.#users = users;
    this.#acl = acl;
    this.#verified.clear();
    this.#decoy = users?.values().next().value ?? null;
    if (users) this.#log.info(`Password file ${this.#config.password_file}: ${users.size} users.`);
    if (acl) {
      let n = acl.anonymous.length + acl.patterns.length;
      for (const r of acl.users.values()) n += r.length;
      this.#log.info(`ACL file ${this.#config.acl_file}: ${n} rules.`);
    }
  }

  async #readText(path: string): Promise<string> {
    try {
      return await readFile(path, "utf8");
    } catch (e) {
      const code = (e as { code?: string }).code;
      throw new AuthFileError(path, [{ line: 0, message: `cannot read the file (${code ?? e})` }]);
    }
  }

  async #readUsers(): Promise<Map<string, PasswordHash> | null> {
    const path = this.#config.password_file;
    if (!path) return null;
    const { users, problems } = parsePasswordFile(await this.#readText(path));
    if (problems.length) throw new AuthFileError(path, problems);
    return users;
  }

  async #readAcl(): Promise<Acl | null> {
    const path = this.#config.acl_file;
    if (!path) return null;
    const { acl, problems } = parseAcl(await this.#readText(path));
    if (problems.length) throw new AuthFileError(path, problems);
    return acl;
  }

  /**
   * Whether clients without a user name may connect through `listener`: its own
   * allow_anonymous, or the top-level one for "global"; "localhost" means "when the listener is
   * bound to a loopback address".
   */
  anonymousAllowed(listener: ListenerConfig | undefined): boolean {
    let v: boolean | string = listener?.allow_anonymous ?? "global";
    if (v === "global") v = this.#config.allow_anonymous;
    if (v === "localhost") return listener !== undefined && isLoopback(listener.bind_address);
    return v === true;
  }

  /**
   * CONNECT: may this user name and password connect through `listener` from `address`?
   * Synchronous when no slow hash is involved, a Promise otherwise. A refusal carries the delay
   * to wait before answering (repeated failures from one address).
   */
  checkLogin(
    listener: ListenerConfig | undefined,
    address: string,
    username: string | undefined,
    password: Uint8Array | undefined,
    clientId = "",
  ): LoginResult | Promise<LoginResult> {
    const ds = this.dynsec;
    if (ds === null) return this.#checkFile(listener, address, username, password);
    const r = ds.authenticate({
      listener,
      address,
      clientId,
      username,
      password,
      protocolVersion: 0,
    });
    const then = (a: LoginAnswer): LoginResult | Promise<LoginResult> => {
      if (a.verdict === "allow") return OK;
      if (a.verdict === "deny") {
        return this.#fail(address, a.reason ?? "refused by dynamic security");
      }
      if (username !== undefined && this.#users === null) {
        // Mosquitto: when every plugin defers, only a client without a user name may go on.
        return this.#fail(address, `user "${username}" is not known to dynamic security`);
      }
      return this.#checkFile(listener, address, username, password);
    };
    return r instanceof Promise ? r.then(then) : then(r);
  }

  /** The password file's and allow_anonymous's answer. */
  #checkFile(
    listener: ListenerConfig | undefined,
    address: string,
    username: string | undefined,
    password: Uint8Array | undefined,
  ): LoginResult | Promise<LoginResult> {
    const users = this.#users;
    if (username === undefined || users === null) {
      // Mosquitto: without a password file (or without a user name) allow_anonymous decides.
      if (this.anonymousAllowed(listener)) return OK;
      return this.#fail(
        address,
        username === undefined ? "anonymous clients are not allowed" : "no password_file is set",
      );
    }
    const entry = users.get(username);
    const gen = this.#gen;
    if (entry === undefined || password === undefined) {
      // Spend the time a real check takes, so an unknown user cannot be told by timing.
      const decoy = entry ?? this.#decoy;
      const why = entry === undefined ? `unknown user "${username}"` : "no password given";
      if (decoy === null || cheapToVerify(decoy)) {
        if (decoy) verifyPasswordSync(decoy, password ?? new Uint8Array());
        return this.#fail(address, why);
      }
      return verifyPassword(decoy, password ?? new Uint8Array()).then(
        () => this.#fail(address, why),
        () => this.#fail(address, why),
      );
    }
    const mac = this.#mac(username, password);
    const known = this.#verified.get(username);
    if (known && known.hash === entry && timingSafeEqual(known.mac, mac)) return OK;
    const done = (ok: boolean): LoginResult => {
      if (!ok) return this.#fail(address, `wrong password for user "${username}"`);
      if (gen === this.#gen) this.#remember(username, entry, mac);
      return OK;
    };
    if (cheapToVerify(entry)) return done(verifyPasswordSync(entry, password));
    return verifyPassword(entry, password).then(done, (e) => {
      this.#log.error(`Password check for user "${username}" failed: ${e}`);
      return this.#fail(address, "password check failed");
    });
  }

  #mac(username: string, password: Uint8Array): Uint8Array {
    return createHmac("sha256", this.#macKey).update(username).update("\0").update(password)
      .digest();
  }

  #remember(username: string, hash: PasswordHash, mac: Uint8Array): void {
    if (this.#verified.size >= SUCCESS_CACHE) {
      this.#verified.delete(this.#verified.keys().next().value!);
    }
    this.#verified.set(username, { hash, mac });
  }

  #fail(address: string, reason: string): LoginResult {
    const now = Date.now();
    const prev = this.#failures.get(address);
    const count = prev && now - prev.last < FAILURE_MEMORY_MS ? prev.count + 1 : 1;
    // Re-insert so the Map's order is least recently failed first.
    this.#failures.delete(address);
    if (this.#failures.size >= MAX_TRACKED_ADDRESSES) {
      this.#failures.delete(this.#failures.keys().next().value!);
    }
    this.#failures.set(address, { count, last: now });
    return { ok: false, reason, delayMs: refusalDelay(count) };
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
   * Marks a session as belonging to its `clientId` and `username`, for its ACL checks; called on
   * every CONNECT after the user name is set (a session resumed under another user name takes that
   * user's rules). A session not bound yet (restored from disk, its client not back) may not
   * publish (its will is not sent); messages routed to it are queued and checked by
   * `dropUnreadable` when its client connects.
   */
  bind(session: AclHolder): void {
    session.aclBound = true;
    this.#bound.delete(session);
  }

  /** The session's view and cache (made now), or undefined when it is not bound. */
  #boundOf(session: AclHolder): Bound | undefined {
    if (!session.aclBound) return undefined;
    let b = this.#bound.get(session);
    if (b === undefined) {
      const { clientId, username } = session;
      b = { clientId, username, gen: -1, view: null, cache: null };
      this.#bound.set(session, b);
    }
    return b;
  }

  /** May the session publish to `topic`? (Always true without an acl_file or dynamic security.) */
  canPublish(session: AclHolder, topic: string): boolean {
    if (!this.aclActive) return true;
    const b = this.#boundOf(session);
    return b !== undefined && this.#decide(b, topic, WRITE);
  }

  /**
   * Dynamic security's answer, then (on "next") the acl_file's; no acl_file: refused.
   * `access` is READ or WRITE (topic names) or ACCESS_SUBSCRIBE / ACCESS_UNSUBSCRIBE (filters).
   */
  #decide(b: Bound, topic: string, access: number): boolean {
    const ds = this.dynsec;
    if (ds !== null) {
      const v = ds.check(b, access as Access, topic);
      if (v !== "next") return v === "allow";
      if (this.#acl === null) return false;
    }
    if (access === ACCESS_UNSUBSCRIBE) return true;
    if (access === ACCESS_SUBSCRIBE) return this.#view(b).canSubscribe(topic);
    return this.#check(b, topic, access);
  }

  /**
   * May the session receive messages published to `topic`? Always true without an acl_file, and
   * deferred (true) for a session not bound yet: see `dropUnreadable`.
   */
  canRead(session: AclHolder, topic: string): boolean {
    if (!this.aclActive) return true;
    const b = this.#boundOf(session);
    return b === undefined || this.#decide(b, topic, READ);
  }

  /**
   * When a CONNECT resumes a session (after `bind`): removes the messages queued for it, and the
   * in-flight ones not yet acknowledged, that this client may not read. They were queued while
   * no one was bound (restored from disk) or for a client with another user name. Returns them,
   * so their stored copies can be deleted.
   */
  dropUnreadable(session: Session): Outgoing[] {
    if (!this.aclActive) return [];
    const b = this.#boundOf(session);
    if (b === undefined) return [];
    const dropped: Outgoing[] = [];
    const keep = (o: Outgoing) => {
      if (this.#decide(b, o.msg.topic, READ)) return true;
      dropped.push(o);
      return false;
    };
    session.queue = session.queue.filter(keep);
    for (const o of dropped) session.queuedBytes -= messageBytes(o.msg);
    for (const [id, f] of session.inflight) {
      if (f.state !== "pubrel" && !keep(f)) session.inflight.delete(id);
    }
    return dropped;
  }

  /**
   * May the session subscribe to `filter` (shared-subscription prefix already removed)? See
   * `AclView.canSubscribe`: refused when nothing it matches is readable.
   */
  canSubscribe(session: AclHolder, filter: string): boolean {
    if (!this.aclActive) return true;
    const b = this.#boundOf(session);
    return b !== undefined && this.#decide(b, filter, ACCESS_SUBSCRIBE);
  }

  /**
   * May the session unsubscribe from `filter` (shared-subscription prefix removed)? Only
   * dynamic security has unsubscribe rules; the acl_file allows every unsubscribe.
   */
  canUnsubscribe(session: AclHolder, filter: string): boolean {
    if (this.dynsec === null) return true;
    const b = this.#boundOf(session);
    return b !== undefined && this.#decide(b, filter, ACCESS_UNSUBSCRIBE);
  }

  /** The bound client's rules, rebuilt (and its cache emptied) after a reload. */
  #view(b: Bound): AclView {
    if (b.gen !== this.#gen || b.view === null) {
      b.gen = this.#gen;
      b.view = new AclView(this.#acl!, b);
      b.cache?.clear();
    }
    return b.view;
  }

  #check(b: Bound, topic: string, access: number): boolean {
    const view = this.#view(b);
    const cache = b.cache ??= new Map();
    const known = access === READ ? 1 : 4;
    const bits = cache.get(topic) ?? 0;
    if (bits & known) return (bits & (known << 1)) !== 0;
    const allowed = view.allows(topic, access);
    if (cache.size >= TOPIC_CACHE && !cache.has(topic)) cache.clear();
    cache.set(topic, bits | known | (allowed ? known << 1 : 0));
    return allowed;
  }
}

/** The wait before refusing the `count`-th recent failure of one address. */
export function refusalDelay(count: number): number {
  if (count <= 1) return 0;
  return Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.min(count - 2, 20));
}
