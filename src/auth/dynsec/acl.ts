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
import { ACCESS_READ, ACCESS_SUBSCRIBE, ACCESS_UNSUBSCRIBE, ACCESS_WRITE } from "../chain_types.ts";
import type { Access, Verdict } from "../chain_types.ts";
import type { AclType, DynsecData, Role } from "./model.ts";

/** Who is asking. */
export interface Who {
  readonly clientId: string;
  readonly username: string | undefined;
}

/** User names whose role lists are cached before the cache starts over. */
const ROLE_CACHE = 10_000;

/** Evaluates ACLs over one `DynsecData`; call `changed()` after every change to it. */
export class DynsecAcl {
  #data: DynsecData;
  /** User name (or "" for anonymous, keyed with a NUL) → its roles in evaluation order. */
  readonly #roles = new Map<string, Role[] | null>();

  constructor(data: DynsecData) {
    this.#data = data;
  }

  /** Use `data` from now on (a reload). */
  set data(data: DynsecData) {
    this.#data = data;
    this.#roles.clear();
  }

  /** Clients, groups or roles changed: forget the cached role lists. */
  changed(): void {
    this.#roles.clear();
  }

  /** The roles of `username` (undefined: anonymous) in order; null when the user is unknown. */
  rolesOf(username: string | undefined): Role[] | null {
    const key = username ?? "\0anonymous";
    let roles = this.#roles.get(key);
    if (roles !== undefined) return roles;
    const d = this.#data;
    roles = [];
    const addGroup = (name: string) => {
      const g = d.groups.get(name);
      if (g) { for (const r of g.roles) roles!.push(d.roles.get(r.name)!); }
    };
    if (username === undefined) {
      if (d.anonymousGroup !== undefined) addGroup(d.anonymousGroup);
    } else {
      const c = d.clients.get(username);
      if (c === undefined) roles = null;
      else {
        for (const r of c.roles) roles.push(d.roles.get(r.name)!);
        for (const g of c.groups) addGroup(g.name);
      }
    }
    if (this.#roles.size >= ROLE_CACHE) this.#roles.clear();
    this.#roles.set(key, roles);
    return roles;
  }

  /** Decide one access to `topic` (a topic name, or a filter for subscribe and unsubscribe). */
  check(who: Who, access: Access, topic: string): Verdict {
    const roles = this.rolesOf(who.username);
    if (roles === null) return "next";
    const sub = access === ACCESS_SUBSCRIBE || access === ACCESS_UNSUBSCRIBE;
    for (const role of roles) {
      const v = sub ? checkSub(role, access, topic, who) : checkPub(role, access, topic, who);
      if (v !== "next") return v;
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

function checkPub(role: Role, access: Access, topic: string, who: Who): Verdict {
  const type: AclType = access === ACCESS_WRITE ? "publishClientSend" : "publishClientReceive";
  for (const a of role.acls) {
    if (a.acltype === type && topicMatches(a.topic, topic, who)) return a.allow ? "allow" : "deny";
  }
  return "next";
}

function checkSub(role: Role, access: Access, filter: string, who: Who): Verdict {
  const subscribe = access === ACCESS_SUBSCRIBE;
  if (subscribe && !role.allowwildcardsubs && /[+#]/.test(filter)) return "deny";
  const literal: AclType = subscribe ? "subscribeLiteral" : "unsubscribeLiteral";
  const pattern: AclType = subscribe ? "subscribePattern" : "unsubscribePattern";
  for (const a of role.acls) {
    if (a.acltype === literal && a.topic === filter) return a.allow ? "allow" : "deny";
  }
  for (const a of role.acls) {
    if (a.acltype === pattern && filterCovered(a.topic, filter, who)) {
      return a.allow ? "allow" : "deny";
    }
  }
  return "next";
}

/** The value `%c` / `%u` stands for at this level, or null when it cannot match anything. */
function substitute(level: string, who: Who): string | null | undefined {
  if (level !== "%c" && level !== "%u") return undefined;
  const v = level === "%c" ? who.clientId : who.username;
  if (v === undefined || v === "" || v === "+" || v === "#" || v.includes("/")) return null;
  return v;
}

/** Does ACL filter `acl` (with %c/%u) match topic name `topic`? `$` topics need a `$` ACL. */
export function topicMatches(acl: string, topic: string, who: Who): boolean {
  if ((acl.charCodeAt(0) === 36) !== (topic.charCodeAt(0) === 36)) return false;
  const f = acl.split("/");
  const t = topic.split("/");
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

/**
 * Does ACL filter `acl` (with %c/%u) cover every topic that subscription filter `sub` matches
 * (Mosquitto's subscribePattern check)? `+` in the ACL covers any one level but `#`.
 */
export function filterCovered(acl: string, sub: string, who: Who): boolean {
  if ((acl.charCodeAt(0) === 36) !== (sub.charCodeAt(0) === 36)) return false;
  const f = acl.split("/");
  const s = sub.split("/");
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
