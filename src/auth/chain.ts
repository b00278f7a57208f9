/**
 * One auth chain: the authenticators and authorizers of a listener in their configured order,
 * asked one after the other until one answers "allow" or "deny". Also the per-session state the
 * broker keeps for authorization (`SessionAuth`), which the session carries itself.
 */
import type {
  AccessRequest,
  Authenticator,
  Authorizer,
  ChainLink,
  LoginAnswer,
  LoginRequest,
  Principal,
  Verdict,
} from "./chain_types.ts";

/** A configured link: an authenticator, an authorizer or both, with optional state to load. */
export type Link =
  & ChainLink
  & { readonly name: string }
  & Partial<Authenticator>
  & Partial<Authorizer>
  & {
    /** False while the link has no rules (an acl_file link without a file): not asked. */
    readonly active?: boolean;
  };

/** A chain's answer to a login: the link's, with the name of the link that gave it. */
export type ChainAnswer = LoginAnswer & { readonly link?: string };

/** Answer of a chain whose authenticators all said "next". */
const NOBODY: LoginAnswer = { verdict: "deny", reason: "no authenticator accepted the client" };

/** The links of one chain, in order. */
export class AuthChain {
  /** Names in configured order (for logs). */
  readonly names: readonly string[];
  readonly authenticators: readonly Authenticator[];
  readonly #authorizers: readonly (Authorizer & { active?: boolean })[];
  /** The authorizers in force (those with rules), recomputed by `refresh`. */
  #active: Authorizer[] = [];
  /** Whether every authorizer in force may have its answers remembered per session. */
  #cacheable = true;
  /** Whether an authorizer is in force: false means every topic is allowed (without grants). */
  authorizing = false;
  /** What applies when every authorizer (and the client's own grants) said "next". */
  readonly noMatch: "allow" | "deny";

  constructor(links: readonly Link[], noMatch: "allow" | "deny") {
    this.names = links.map((l) => l.name);
    this.authenticators = links.filter((l): l is Link & Authenticator =>
      typeof l.authenticate === "function"
    );
    this.#authorizers = links.filter((l): l is Link & Authorizer =>
      typeof l.authorize === "function"
    );
    this.noMatch = noMatch;
    this.refresh();
  }

  /** Re-reads which authorizers are in force (after a load or a reload). */
  refresh(): void {
    this.#active = this.#authorizers.filter((a) => a.active !== false);
    this.#cacheable = this.#active.every((a) => a.cacheable === true);
    this.authorizing = this.#active.length > 0;
  }

  /** Whether answers may be remembered per session (every authorizer in force is cacheable). */
  get cacheable(): boolean {
    return this.#cacheable;
  }

  /** Asks the authenticators in order; all "next" is a refusal carrying the last reason. */
  authenticate(req: LoginRequest, from = 0, why?: string): ChainAnswer | Promise<ChainAnswer> {
    const list = this.authenticators;
    for (let i = from; i < list.length; i++) {
      const a = list[i].authenticate(req);
      if (a instanceof Promise) {
        return a.then((r) =>
          r.verdict === "next" ? this.authenticate(req, i + 1, r.reason ?? why) : named(r, list[i])
        );
      }
      if (a.verdict !== "next") return named(a, list[i]);
      if (a.reason !== undefined) why = a.reason;
    }
    return why === undefined ? NOBODY : { verdict: "deny", reason: why };
  }

  /**
   * Asks the client's own grants (its token's `acl` claim), then the authorizers in order;
   * all "next" is `noMatch`. Synchronous unless a link has to ask a remote service.
   */
  authorize(req: AccessRequest, grants: Authorizer | undefined): Verdict | Promise<Verdict> {
    if (grants !== undefined) {
      const g = grants.authorize(req);
      if (g instanceof Promise) return g.then((v) => v === "next" ? this.#rest(req, 0) : v);
      if (g !== "next") return g;
    }
    return this.#rest(req, 0);
  }

  #rest(req: AccessRequest, from: number): Verdict | Promise<Verdict> {
    const list = this.#active;
    for (let i = from; i < list.length; i++) {
      const v = list[i].authorize(req);
      if (v instanceof Promise) return v.then((r) => r === "next" ? this.#rest(req, i + 1) : r);
      if (v !== "next") return v;
    }
    return this.noMatch;
  }
}

/** `a` with the name of its link, when the broker will need it (attributes). */
function named(a: LoginAnswer, by: Authenticator): ChainAnswer {
  return a.attributes ? { ...a, link: by.name } : a;
}

/**
 * What a bound session's checks need: who it is, its chain, its grants, and the answers
 * remembered per topic. Sessions that need no checks (no authorizer, no grants, superuser)
 * carry null instead.
 */
export class SessionAuth {
  readonly principal: Principal;
  readonly chain: AuthChain;
  readonly grants: Authorizer | undefined;
  /** The rules' generation the remembered answers belong to. */
  gen = -1;
  /** The last topic checked and its bits: most clients use one topic over and over. */
  lastTopic = "";
  lastBits = 0;
  /**
   * topic → bits, two per kind of access (known, allowed): read, then write at each QoS and
   * retain flag. Made on the first miss of the last-topic memo.
   */
  cache: Map<string, number> | null = null;

  constructor(principal: Principal, chain: AuthChain, grants: Authorizer | undefined) {
    this.principal = principal;
    this.chain = chain;
    this.grants = grants;
  }
}
