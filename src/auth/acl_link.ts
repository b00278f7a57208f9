/**
 * The `acl_file` link: Mosquitto's ACL file as an authorizer of the auth chain. Without a file
 * it answers "next" to everything (and the chain leaves it out of the hot path); with one, a
 * topic the file does not grant is denied, as in Mosquitto.
 */
import type { Logger } from "../sys/log.ts";
import {
  ACCESS_READ,
  ACCESS_SUBSCRIBE,
  ACCESS_UNSUBSCRIBE,
  ACCESS_WRITE,
  type AccessRequest,
  type Authorizer,
  type ChainLink,
  type Principal,
  type Verdict,
} from "./chain_types.ts";
import { type Acl, AclView, parseAcl, READ, WRITE } from "./acl.ts";
import { AuthFileError, readAuthFile } from "./auth_file.ts";
import { logFileError } from "./password_link.ts";

/** Authorizes against an ACL file; its answers depend only on the file, so they are cacheable. */
export class AclFileLink implements Authorizer, ChainLink {
  readonly name = "acl_file";
  readonly cacheable = true;
  readonly #path: () => string;
  readonly #log: Logger;
  #acl: Acl | null = null;
  /** Each principal's compiled rules, made on its first check and dropped on reload. */
  #views = new WeakMap<Principal, AclView>();

  /** `path` is read at every load and reload (SIGHUP may change it). */
  constructor(path: () => string, log: Logger) {
    this.#path = path;
    this.#log = log;
  }

  /** Whether an ACL file is in force. */
  get active(): boolean {
    return this.#acl !== null;
  }

  /** Reads the ACL file. Throws `AuthFileError` if it cannot be used. */
  async load(): Promise<void> {
    this.#install(await this.#read());
  }

  /** Reads it again; a file with problems is logged and the old rules stay. */
  async reload(): Promise<boolean> {
    try {
      this.#install(await this.#read());
      return true;
    } catch (e) {
      logFileError(this.#log, e, "acl_file");
      return false;
    }
  }

  async #read(): Promise<Acl | null> {
    const path = this.#path();
    if (!path) return null;
    const { acl, problems } = parseAcl(await readAuthFile(path));
    if (problems.length) throw new AuthFileError(path, problems);
    return acl;
  }

  #install(acl: Acl | null): void {
    this.#acl = acl;
    this.#views = new WeakMap();
    if (acl) {
      let n = acl.anonymous.length + acl.patterns.length;
      for (const r of acl.users.values()) n += r.length;
      this.#log.info(`ACL file ${this.#path()}: ${n} rules.`);
    }
  }

  authorize(req: AccessRequest): Verdict {
    const acl = this.#acl;
    if (acl === null) return "next";
    const p = req.principal;
    let view = this.#views.get(p);
    if (view === undefined) {
      view = new AclView(acl, p);
      this.#views.set(p, view);
    }
    switch (req.access) {
      case ACCESS_READ:
        return view.allows(req.topic, READ) ? "allow" : "deny";
      case ACCESS_WRITE:
        return view.allows(req.topic, WRITE) ? "allow" : "deny";
      case ACCESS_SUBSCRIBE:
        // Refused when nothing the filter matches may be read (see AclView.canSubscribe).
        return view.canSubscribe(req.topic) ? "allow" : "deny";
      case ACCESS_UNSUBSCRIBE:
        // The file has no unsubscribe rules: every unsubscribe is allowed.
        return "allow";
      default:
        return "next";
    }
  }
}
