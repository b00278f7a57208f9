/**
 * The auth chain's contract: an ordered list of authenticators (who may connect) and authorizers
 * (who may publish, subscribe and read what). Each link answers "allow", "deny" or "next" (not
 * mine: the next link decides); when every link says "next" the chain's default applies. The
 * password file and the ACL file are the first two links; dynamic security, JWT and HTTP are
 * others. Nothing here imports the broker: links see only these shapes.
 */
import type { ListenerConfig } from "../config/schema.ts";

/** A link's answer. "next" hands the question to the next link in the chain. */
export type Verdict = "allow" | "deny" | "next";

/** What a CONNECT asks of the authenticators. */
export interface LoginRequest {
  /** The listener the client came through (its allow_anonymous, per-listener files, …). */
  readonly listener: ListenerConfig | undefined;
  /** The remote address, for logs and failed-login slow-down. */
  readonly address: string;
  readonly clientId: string;
  readonly username: string | undefined;
  readonly password: Uint8Array | undefined;
  readonly protocolVersion: number;
  /** v5 enhanced authentication (AUTH method and data), when the client sent them. */
  readonly authMethod?: string;
  readonly authData?: Uint8Array;
  /** The user name taken from a client certificate (use_identity_as_username), if any. */
  readonly certUser?: string;
}

/** An authenticator's answer to one CONNECT (or one v5 re-authentication). */
export interface LoginAnswer {
  readonly verdict: Verdict;
  /** For the broker's log only, never sent to the client; never holds a password or token. */
  readonly reason?: string;
  /**
   * The v5 reason code of a refusal, when it should not be 0x87 Not authorized (0x86 Bad user
   * name or password, 0x8C Bad authentication method, …). v3 clients get CONNACK 5 (or 4).
   */
  readonly code?: number;
  /** The connection may last until this time (ms since the epoch), e.g. a token's `exp`. */
  readonly expiresAt?: number;
  /** May do anything: the authorizers are not asked (Mosquitto plugins' superuser). */
  readonly superuser?: boolean;
  /**
   * Permissions that came with the identity (a JWT `acl` claim, …). When present they are
   * consulted before the chain's authorizers; a request they do not cover goes on to them.
   */
  readonly grants?: Authorizer;
  /** Extra data a link keeps for its own authorizer (looked up by the link's name). */
  readonly attributes?: Readonly<Record<string, unknown>>;
}

/** Who is asking, once connected: what the authorizers see of a client. */
export interface Principal {
  readonly clientId: string;
  readonly username: string | undefined;
  readonly listener: ListenerConfig | undefined;
  /** Attributes the authenticators returned at login, by link name. */
  readonly attributes?: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
}

/** The kinds of access an authorizer is asked about (mosquitto-go-auth's `acc` numbers). */
export const ACCESS_READ = 1;
export const ACCESS_WRITE = 2;
export const ACCESS_SUBSCRIBE = 4;
/** Not in go-auth: an UNSUBSCRIBE (dynamic security's unsubscribe ACLs). */
export const ACCESS_UNSUBSCRIBE = 8;
/** One of ACCESS_READ, ACCESS_WRITE, ACCESS_SUBSCRIBE, ACCESS_UNSUBSCRIBE. */
export type Access = 1 | 2 | 4 | 8;

/** What a PUBLISH, a SUBSCRIBE, an UNSUBSCRIBE or a delivery asks of the authorizers. */
export interface AccessRequest {
  readonly principal: Principal;
  /** The topic (read, write) or the filter without its `$share/group/` prefix (subscribe). */
  readonly topic: string;
  readonly access: Access;
  readonly qos?: number;
  readonly retain?: boolean;
}

/** Decides whether a client may connect. */
export interface Authenticator {
  /** Short, unique in a chain ("password_file", "dynsec", "jwt", "http"); keys `attributes`. */
  readonly name: string;
  /**
   * v5 enhanced authentication methods this link answers (e.g. "OAUTH2-JWT"): a CONNECT naming
   * one of them is put to the chain instead of being refused, and the client may re-authenticate
   * with an AUTH packet of the same method. Absent: none.
   */
  readonly methods?: readonly string[];
  /** Synchronous when it can be (the hot path for cached or cheap answers). */
  authenticate(req: LoginRequest): LoginAnswer | Promise<LoginAnswer>;
}

/** Decides what a connected client may do. */
export interface Authorizer {
  readonly name: string;
  /**
   * True when an answer depends only on the request and the rules loaded (a file, claims in a
   * token): the chain then remembers it per session and topic until `ChainLink.watch`'s callback
   * or a reload says the rules changed. False or absent: asked every time (the link caches what
   * it can itself, with its own TTL).
   */
  readonly cacheable?: boolean;
  /**
   * Synchronous whenever the answer is known or cached; a Promise only on a cache miss of a link
   * that asks a remote service (the broker holds the client's later packets meanwhile).
   */
  authorize(req: AccessRequest): Verdict | Promise<Verdict>;
}

/** A link with state to load, re-read on SIGHUP, and release at shutdown. */
export interface ChainLink {
  /** Read files, fetch keys; throws an error naming the file and line on bad input. */
  load?(): Promise<void>;
  /**
   * As on SIGHUP: re-read, keeping the old state (and logging why) when the new one is bad.
   * May resolve to false to say that something was not reloaded.
   */
  reload?(): Promise<boolean | void>;
  /**
   * Called once when the chain is built: `changed` is to be called whenever the link's rules
   * change outside a reload (a control command), so remembered answers are dropped.
   */
  watch?(changed: () => void): void;
  close?(): void;
}

/**
 * A plugin that takes commands on a control topic, as Mosquitto's dynamic security does on
 * `$CONTROL/dynamic-security/v1`: the broker hands it every PUBLISH to that topic (after the
 * sender has been checked) and publishes the returned payload on `<topic>/response`.
 */
export interface ControlHandler {
  /** The control topic, e.g. "$CONTROL/dynamic-security/v1". */
  readonly topic: string;
  /** One request payload (JSON `{"commands":[…]}`) in, one response payload out. */
  control(payload: Uint8Array, from: Principal): Promise<Uint8Array>;
}
