/**
 * Who is using the admin API and the web console. A request is authenticated by the header
 * `Authorization: Bearer <admin_token>` (scripts) or by the session cookie the console gets when
 * it signs in (HttpOnly, SameSite=Strict). A write made with the cookie must also carry the
 * session's CSRF token in the `X-CSRF-Token` header, which a cross-site form cannot send; a
 * Bearer request is itself such a header. Sessions are bounded in number and expire when idle.
 *
 * Signing in with a user name and password goes to dynamic security when it is loaded (a client
 * with an admin role: see `passwordSignInOf`), or to `ConsoleSessions.passwordSignIn` when that
 * hook is set; without either only the token is accepted, and the sign-in page shows no user
 * name field.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Broker } from "../broker/broker.ts";
import { tokenMatches } from "./admin.ts";

/** The session cookie's name. */
export const COOKIE = "midge_console";
/** The header that carries the CSRF token on writes. */
export const CSRF_HEADER = "x-csrf-token";
/** Sessions kept at most; signing in beyond that ends the least recently used one. */
export const MAX_SESSIONS = 64;
/**
 * Sign-ins checked at once at most; more are answered 429 at once. A refused one is held for a
 * second, so this also bounds guesses to about this many per second.
 */
export const MAX_SIGNINS = 16;
/** A session ends after this long without a request, ms. */
export const IDLE_MS = 8 * 60 * 60 * 1000;

/** A signed-in console. */
export interface ConsoleSession {
  readonly id: string;
  readonly csrf: string;
  /** Who signed in: "admin_token" or a user name. */
  readonly who: string;
  lastSeen: number;
}

/** How a request was authenticated. */
export interface Caller {
  /** "admin_token" or the signed-in user's name. */
  who: string;
  via: "bearer" | "cookie";
  session?: ConsoleSession;
}

/**
 * Checks a user name and password for the console (dynamic security: a client holding an admin
 * role). Resolves with the name to log, or null when refused.
 */
export type PasswordSignIn = (username: string, password: string) => Promise<string | null>;

/**
 * The password sign-in in force: the sessions' own when set, else dynamic security's (an enabled
 * client whose roles let it send to the control topic, as `mosquitto_ctrl` needs), else null.
 */
export function passwordSignInOf(
  broker: Broker,
  sessions: ConsoleSessions,
): PasswordSignIn | null {
  if (sessions.passwordSignIn) return sessions.passwordSignIn;
  const ds = broker.auth.dynsec;
  if (!ds) return null;
  return async (username, password) => (await ds.adminSignIn(username, password)) ? username : null;
}

function digest(s: string): Uint8Array {
  return createHash("sha256").update(s).digest();
}

/** Compares two secrets in constant time. */
export function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b)) && a.length > 0;
}

/** Reads one cookie from a Cookie header. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

/** The console's sessions. */
export class ConsoleSessions {
  #sessions = new Map<string, ConsoleSession>();
  /** Set by the dynamic-security plugin to let its admin users sign in. */
  passwordSignIn: PasswordSignIn | null = null;

  #signingIn = 0;

  /** Take a sign-in slot; false when MAX_SIGNINS are taken (answer 429). */
  beginSignIn(): boolean {
    if (this.#signingIn >= MAX_SIGNINS) return false;
    this.#signingIn++;
    return true;
  }

  /** Give back a slot taken by `beginSignIn`. */
  endSignIn(): void {
    if (this.#signingIn > 0) this.#signingIn--;
  }

  /** Number of open sessions. */
  get size(): number {
    return this.#sessions.size;
  }

  /** A new session for `who`. */
  create(who: string, now = Date.now()): ConsoleSession {
    this.#expire(now);
    if (this.#sessions.size >= MAX_SESSIONS) {
      let oldest: ConsoleSession | undefined;
      for (const s of this.#sessions.values()) {
        if (!oldest || s.lastSeen < oldest.lastSeen) oldest = s;
      }
      if (oldest) this.#sessions.delete(oldest.id);
    }
    const s: ConsoleSession = {
      id: randomBytes(32).toString("base64url"),
      csrf: randomBytes(32).toString("base64url"),
      who,
      lastSeen: now,
    };
    this.#sessions.set(s.id, s);
    return s;
  }

  /** End a session. */
  end(id: string): void {
    this.#sessions.delete(id);
  }

  /** End every session (the admin token changed). */
  clear(): void {
    this.#sessions.clear();
  }

  /** The live session a cookie names, touched; undefined when none. */
  lookup(cookieHeader: string | undefined, now = Date.now()): ConsoleSession | undefined {
    const id = cookieValue(cookieHeader, COOKIE);
    if (!id) return undefined;
    const s = this.#sessions.get(id);
    if (!s) return undefined;
    if (now - s.lastSeen > IDLE_MS) {
      this.#sessions.delete(id);
      return undefined;
    }
    s.lastSeen = now;
    return s;
  }

  /**
   * Who makes a request: a Bearer admin token or a session cookie; null when neither is valid.
   */
  authenticate(
    token: string,
    authorization: string | undefined,
    cookie: string | undefined,
  ): Caller | null {
    if (authorization !== undefined) {
      return tokenMatches(authorization, token) ? { who: "admin_token", via: "bearer" } : null;
    }
    const s = this.lookup(cookie);
    return s ? { who: s.who, via: "cookie", session: s } : null;
  }

  /** Whether a write by `caller` carries what CSRF protection asks (see the module comment). */
  csrfOk(caller: Caller, header: string | undefined): boolean {
    if (caller.via === "bearer") return true;
    return caller.session !== undefined && header !== undefined &&
      sameSecret(header, caller.session.csrf);
  }

  #expire(now: number): void {
    for (const [id, s] of this.#sessions) if (now - s.lastSeen > IDLE_MS) this.#sessions.delete(id);
  }
}
