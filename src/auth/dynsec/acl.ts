/**
 * Dynamic security's ACL evaluation, as Mosquitto documents and does it:
 *
 * 1. a client with a user name that dynamic security does not know: not decided here ("next");
 * 2. the client's roles, by priority, then its groups by priority and each group's roles by
 *    priority (a client without a user name: the anonymous group's roles);
 * 3. within a role its ACLs of the asked type by priority; the first that matches decides
 *    (allow or deny). For subscribe and unsubscribe the literal ACL equal to the filter is
 *    looked at before the patterns of the same role;
 * 4. nothing matched: the default access; when that is "deny" (or the topic is under
 *    `$CONTROL`, never granted by default) the answer is "next", which the chain ends as a
 *    denial.
 *
 * `%c` and `%u` in an ACL topic stand for the client id and user name when they are a whole
 * level (Mosquitto 2.1); an empty value, or one that is `+`, `#` or holds `/`, matches nothing.
 */
import { ACCESS_READ, ACCESS_SUBSCRIBE, ACCESS_WRITE } from "../chain_types.ts";
import type { Access, Verdict } from "../chain_types.ts";
import type { AclType, DynsecData, Role } from "./model.ts";

/** Who is asking. */
export interface Who {
  readonly clientId: string;
  readonly username: string | undefined;
}

/** User names whose role lists are cached before the cache starts over. */
const ROLE_CACHE = 10_000;

/** One ACL, its topic split into levels once. */
interface Compiled {
  levels: string[];
  allow: boolean;
}

/** A role's ACLs by type, in evaluation order. */
interface CompiledRole {
  send: Compiled[];
  recv: Compiled[];
  subLiteral: Map<string, boolean>;
  subPattern: Compiled[];
  unsubLiteral: Map<string, boolean>;
  unsubPattern: Compiled[];
  allowWildcardSubs: boolean;
}

function compile(role: Role): CompiledRole {
  const c: CompiledRole = {
    send: [],
    recv: [],
    subLiteral: new Map(),
    subPattern: [],
    unsubLiteral: new Map(),
    unsubPattern: [],
    allowWildcardSubs: role.allowwildcardsubs,
  };
  const lists: Record<AclType, Compiled[] | Map<string, boolean>> = {
    publishClientSend: c.send,
    publishClientReceive: c.recv,
    subscribeLiteral: c.subLiteral,
    subscribePattern: c.subPattern,
    unsubscribeLiteral: c.unsubLiteral,
    unsubscribePattern: c.unsubPattern,
  };
  for (const a of role.acls) {
    const l = lists[a.acltype];
    if (l instanceof Map) {
      if (!l.has(a.topic)) l.set(a.topic, a.allow);
    } else l.push({ levels: a.topic.split("/"), allow: a.allow });
  }
  return c;
}

/** Evaluates ACLs over one `DynsecData`; call `changed()` after every change to it. */
export class DynsecAcl {
  #data: DynsecData;
  /** User name (or NUL + "anonymous") → its roles, compiled, in evaluation order. */
  readonly #roles = new Map<string, CompiledRole[] | null>();
  #compiled = new WeakMap<Role, CompiledRole>();

  constructor(data: DynsecData) {
    this.#data = data;
  }

  /** Use `data` from now on (a reload). */
  set data(data: DynsecData) {
    this.#data = data;
    this.changed();
  }

  /** Clients, groups or roles changed: forget the cached role lists. */
  changed(): void {
    this.#roles.clear();
    this.#compiled = new WeakMap();
  }

  #role(name: string): CompiledRole | undefined {
    const r = this.#data.roles.get(name);
    if (r === undefined) return undefined;
    let c = this.#compiled.get(r);
    if (c === undefined) this.#compiled.set(r, c = compile(r));
    return c;
  }

  /** The roles of `username` (undefined: anonymous) in order; null when the user is unknown. */
  #rolesOf(username: string | undefined): CompiledRole[] | null {
    const key = username ?? "\0anonymous";
    let roles = this.#roles.get(key);
    if (roles !== undefined) return roles;
    const d = this.#data;
    const out: CompiledRole[] = [];
    const add = (name: string) => {
      const r = this.#role(name);
      if (r) out.push(r);
    };
    const addGroup = (name: string) => {
      const g = d.groups.get(name);
      if (g) { for (const r of g.roles) add(r.name); }
    };
    roles = out;
    if (username === undefined) {
      if (d.anonymousGroup !== undefined) addGroup(d.anonymousGroup);
    } else {
      const c = d.clients.get(username);
      if (c === undefined) roles = null;
      else {
        for (const r of c.roles) add(r.name);
        for (const g of c.groups) addGroup(g.name);
      }
    }
    if (this.#roles.size >= ROLE_CACHE) this.#roles.clear();
    this.#roles.set(key, roles);
    return roles;
  }

  /** Decide one access to `topic` (a topic name, or a filter for subscribe and unsubscribe). */
  check(who: Who, access: Access, topic: string): Verdict {
    const roles = this.#rolesOf(who.username);
    if (roles === null) return "next";
    if (roles.length > 0) {
      const levels = topic.split("/");
      const dollar = topic.charCodeAt(0) === 36;
      for (const role of roles) {
        let v: Verdict;
        if (access === ACCESS_WRITE) v = first(role.send, levels, dollar, who, matchTopic);
        else if (access === ACCESS_READ) v = first(role.recv, levels, dollar, who, matchTopic);
        else if (access === ACCESS_SUBSCRIBE) {
          if (!role.allowWildcardSubs && /[+#]/.test(topic)) return "deny";
          v = literal(role.subLiteral, topic) ??
            first(role.subPattern, levels, dollar, who, matchFilter);
        } else {
          v = literal(role.unsubLiteral, topic) ??
            first(role.unsubPattern, levels, dollar, who, matchFilter);
        }
        if (v !== "next") return v;
      }
    }
    const d = this.#data.defaultACLAccess;
    const dflt = access === ACCESS_WRITE
      ? d.publishClientSend
      : access === ACCESS_READ
      ? d.publishClientReceive
      : access === ACCESS_SUBSCRIBE
      ? d.subscribe
      : d.unsubscribe;
    // Mosquitto never grants $CONTROL topics by default: they must be granted explicitly.
    if (!dflt || topic.startsWith("$CONTROL")) return "next";
    return "allow";
  }
}

function literal(m: Map<string, boolean>, topic: string): Verdict | undefined {
  if (m.size === 0) return undefined;
  const a = m.get(topic);
  return a === undefined ? undefined : a ? "allow" : "deny";
}

type Matcher = (f: string[], t: string[], who: Who) => boolean;

function first(
  acls: Compiled[],
  levels: string[],
  dollar: boolean,
  who: Who,
  match: Matcher,
): Verdict {
  for (let i = 0; i < acls.length; i++) {
    const a = acls[i];
    // A `$` topic only matches an ACL that starts with `$`, and the other way round.
    if ((a.levels[0].charCodeAt(0) === 36) !== dollar) continue;
    if (match(a.levels, levels, who)) return a.allow ? "allow" : "deny";
  }
  return "next";
}

/** The value `%c` / `%u` stands for at this level, or null when it cannot match anything. */
function substitute(level: string, who: Who): string | null | undefined {
  if (level.length !== 2 || level.charCodeAt(0) !== 37 /* % */) return undefined;
  if (level !== "%c" && level !== "%u") return undefined;
  const v = level === "%c" ? who.clientId : who.username;
  if (v === undefined || v === "" || v === "+" || v === "#" || v.includes("/")) return null;
  return v;
}

/** Topic name levels `t` against ACL filter levels `f` (with %c/%u). */
function matchTopic(f: string[], t: string[], who: Who): boolean {
  for (let i = 0; i < f.length; i++) {
    let l = f[i];
    if (l === "#") return i === f.length - 1;
    if (i >= t.length) return false;
    const s = substitute(l, who);
    if (s === null) return false;
    if (s !== undefined) l = s;
    else if (l === "+") continue;
    if (l !== t[i]) return false;
  }
  return f.length === t.length;
}

/** Is every topic that subscription filter levels `s` match covered by ACL levels `f`? */
function matchFilter(f: string[], s: string[], who: Who): boolean {
  for (let i = 0; i < f.length; i++) {
    let l = f[i];
    if (l === "#") return true;
    if (i >= s.length) return false;
    const v = substitute(l, who);
    if (v === null) return false;
    if (v !== undefined) l = v;
    else if (l === "+") {
      if (s[i] === "#") return false;
      continue;
    }
    if (l !== s[i]) return false;
  }
  return f.length === s.length;
}

/** Does ACL filter `acl` (with %c/%u) match topic name `topic`? `$` topics need a `$` ACL. */
export function topicMatches(acl: string, topic: string, who: Who): boolean {
  if ((acl.charCodeAt(0) === 36) !== (topic.charCodeAt(0) === 36)) return false;
  return matchTopic(acl.split("/"), topic.split("/"), who);
}

/**
 * Does ACL filter `acl` (with %c/%u) cover every topic that subscription filter `sub` matches
 * (Mosquitto's subscribePattern check)? `+` in the ACL covers any one level but `#`.
 */
export function filterCovered(acl: string, sub: string, who: Who): boolean {
  if ((acl.charCodeAt(0) === 36) !== (sub.charCodeAt(0) === 36)) return false;
  return matchFilter(acl.split("/"), sub.split("/"), who);
}
