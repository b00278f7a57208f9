/**
 * The `password_file` link: Mosquitto's password file and `allow_anonymous`, as an authenticator
 * of the auth chain. Successful logins are remembered (by a keyed MAC of the password) so that a
 * reconnecting client does not pay for a slow hash again.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { ListenerConfig } from "../config/schema.ts";
import type { Logger } from "../sys/log.ts";
import type { Authenticator, ChainLink, LoginAnswer, LoginRequest } from "./chain_types.ts";
import { readAuthFile } from "./auth_file.ts";
import {
  cheapToVerify,
  parsePasswordFile,
  type PasswordHash,
  verifyPassword,
  verifyPasswordSync,
} from "./password.ts";
import { AuthFileError } from "./auth_file.ts";

/** Successful logins remembered (by a keyed MAC of the password) to skip slow hashes next time. */
const SUCCESS_CACHE = 4096;

const ALLOW: LoginAnswer = { verdict: "allow" };

/**
 * Authenticates against a password file. Without a password file, or for a client without a
 * user name, `allow_anonymous` decides: allowed, or "next" (the next link, or the chain's
 * refusal). An unknown user is "next" too; a known user with a wrong password is denied.
 */
export class PasswordFileLink implements Authenticator, ChainLink {
  readonly name = "password_file";
  readonly #path: () => string;
  readonly #anonymous: (l: ListenerConfig | undefined) => boolean;
  readonly #log: Logger;
  readonly #afterPlugin: boolean;
  #users: Map<string, PasswordHash> | null = null;
  /** Bumped when the users change, so a check begun before a reload is not remembered. */
  #gen = 0;
  readonly #macKey = randomBytes(32);
  readonly #verified = new Map<string, { hash: PasswordHash; mac: Uint8Array }>();
  /** A hash with the cost of a real entry, checked for unknown users so timing tells nothing. */
  #decoy: PasswordHash | null = null;

  /**
   * `path` is read at every load and reload (SIGHUP may change it); `anonymous` tells whether a
   * listener accepts clients without a user name. `afterPlugin`: a plugin (dynamic security)
   * is asked first; as in Mosquitto, a user name it does not know is then not let in by
   * allow_anonymous when there is no password file.
   */
  constructor(
    path: () => string,
    anonymous: (l: ListenerConfig | undefined) => boolean,
    log: Logger,
    afterPlugin = false,
  ) {
    this.#afterPlugin = afterPlugin;
    this.#path = path;
    this.#anonymous = anonymous;
    this.#log = log;
  }

  /** Number of users in the password file (0 when there is none). */
  get userCount(): number {
    return this.#users?.size ?? 0;
  }

  /** Whether a password file is in force. */
  get active(): boolean {
    return this.#users !== null;
  }

  /** Reads the password file. Throws `AuthFileError` if it cannot be used. */
  async load(): Promise<void> {
    this.#install(await this.#read());
  }

  /** Reads it again; a file with problems is logged and the old users stay. */
  async reload(): Promise<boolean> {
    try {
      this.#install(await this.#read());
      return true;
    } catch (e) {
      logFileError(this.#log, e, "password_file");
      return false;
    }
  }

  async #read(): Promise<Map<string, PasswordHash> | null> {
    const path = this.#path();
    if (!path) return null;
    const { users, problems } = parsePasswordFile(await readAuthFile(path));
    if (problems.length) throw new AuthFileError(path, problems);
    return users;
  }

  #install(users: Map<string, PasswordHash> | null): void {
    if (users !== this.#users) this.#gen++;
    this.#users = users;
    this.#verified.clear();
    this.#decoy = users?.values().next().value ?? null;
    if (users) this.#log.info(`Password file ${this.#path()}: ${users.size} users.`);
  }

  authenticate(req: LoginRequest): LoginAnswer | Promise<LoginAnswer> {
    const { username, password } = req;
    const users = this.#users;
    if (username === undefined || users === null) {
      // Mosquitto: without a password file (or without a user name) allow_anonymous decides;
      // when every plugin deferred, only for a client without a user name.
      if (username !== undefined && this.#afterPlugin) {
        return next(`user "${username}" is not known to dynamic security`);
      }
      if (this.#anonymous(req.listener)) return ALLOW;
      return next(
        username === undefined ? "anonymous clients are not allowed" : "no password_file is set",
      );
    }
    const entry = users.get(username);
    const gen = this.#gen;
    if (entry === undefined || password === undefined) {
      // Spend the time a real check takes, so an unknown user cannot be told by timing.
      const decoy = entry ?? this.#decoy;
      const answer = entry === undefined
        ? next(`unknown user "${username}"`)
        : deny("no password given");
      if (decoy === null || cheapToVerify(decoy)) {
        if (decoy) verifyPasswordSync(decoy, password ?? new Uint8Array());
        return answer;
      }
      return verifyPassword(decoy, password ?? new Uint8Array()).then(() => answer, () => answer);
    }
    const mac = this.#mac(username, password);
    const known = this.#verified.get(username);
    if (known && known.hash === entry && timingSafeEqual(known.mac, mac)) return ALLOW;
    const done = (ok: boolean): LoginAnswer => {
      if (!ok) return deny(`wrong password for user "${username}"`);
      if (gen === this.#gen) this.#remember(username, entry, mac);
      return ALLOW;
    };
    if (cheapToVerify(entry)) return done(verifyPasswordSync(entry, password));
    return verifyPassword(entry, password).then(done, (e) => {
      this.#log.error(`Password check for user "${username}" failed: ${e}`);
      return deny("password check failed");
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
}

function next(reason: string): LoginAnswer {
  return { verdict: "next", reason };
}

function deny(reason: string): LoginAnswer {
  return { verdict: "deny", reason };
}

/** Logs why a file was not reloaded, one line per problem, and that the old one stays. */
export function logFileError(log: Logger, e: unknown, key: string): void {
  const text = e instanceof Error ? e.message : String(e);
  for (const line of text.split("\n")) log.error(`Error: ${line}`);
  log.error(`The ${key} was not reloaded; the previous one stays in force.`);
}
