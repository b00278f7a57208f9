/**
 * Mosquitto's `acl_file`: which topics a client may publish to (write) and receive (read).
 *
 * ```
 * # comment (a `#` in the first column)
 * topic read $SYS/#            rules before any `user` line: clients without a user name
 * user roger                   rules below: clients with user name "roger"
 * topic readwrite foo/#        access: read, write, readwrite (the default) or deny
 * pattern write sensor/%u/data rules for every client; %c = client id, %u = user name
 * ```
 *
 * Evaluation: a client with a user name gets the `topic` rules of that user, one without gets
 * the rules written before the first `user` line, and every client gets the `pattern` rules.
 * Every `deny` rule that matches wins over any grant (Mosquitto checks a user's denials, then
 * its grants, then the pattern denials, then the pattern grants; here all denials come first,
 * so a `pattern deny` also overrides a user's `topic` grant). No matching grant: no access.
 *
 * `%c` and `%u` must each be a whole topic level (`a/%c/b`, not `a/x%c`). A client id or user
 * name that is empty or contains `/`, `+` or `#`, or one that starts with `$` where it would
 * become the first level (`%c/#` for a client named "$SYS" would be `$SYS/#`), cannot be
 * substituted: the pattern then grants nothing, and a `pattern deny` denies the whole subtree it
 * would cover (so a client named "#", "victim/x" or "$SYS" can never widen a pattern into
 * someone else's topics or the broker's own).
 */
import { validTopicFilter } from "../broker/topic.ts";
import type { FileProblem } from "./password.ts";

/** Access bits. */
export const READ = 1;
export const WRITE = 2;

/** One `topic` or `pattern` line. */
export interface AclRule {
  /** READ, WRITE, READ|WRITE, or 0 for deny. */
  access: number;
  /** The topic filter as written (with %c/%u for patterns). */
  filter: string;
  /** Its levels, split once. */
  levels: string[];
  /** Levels holding %c / %u (patterns only). */
  subst: boolean;
  line: number;
}

/** A parsed acl_file. */
export interface Acl {
  /** Rules before the first `user` line: clients without a user name. */
  anonymous: AclRule[];
  /** Rules per user name. */
  users: Map<string, AclRule[]>;
  /** `pattern` rules: every client. */
  patterns: AclRule[];
}

/** Who a check is for. */
export interface AclSubject {
  clientId: string;
  username: string | undefined;
}

const ACCESS: Record<string, number> = {
  read: READ,
  write: WRITE,
  readwrite: READ | WRITE,
  deny: 0,
};

/** Parses acl_file text. Problems are returned with their line; a file with problems is not used. */
export function parseAcl(text: string): { acl: Acl; problems: FileProblem[] } {
  const acl: Acl = { anonymous: [], users: new Map(), patterns: [] };
  const problems: FileProblem[] = [];
  let current = acl.anonymous;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const raw = lines[i].trimEnd();
    if (raw.startsWith("#")) continue;
    const body = raw.trimStart();
    if (body === "") continue;
    const m = /^(\S+)(?:[ \t]+(.*))?$/.exec(body)!;
    const keyword = m[1];
    const rest = (m[2] ?? "").trim();
    if (keyword === "user") {
      if (rest === "") {
        problems.push({ line, message: "`user` needs a user name" });
        continue;
      }
      let rules = acl.users.get(rest);
      if (!rules) acl.users.set(rest, rules = []);
      current = rules;
      continue;
    }
    if (keyword !== "topic" && keyword !== "pattern") {
      problems.push({
        line,
        message: `unknown keyword "${keyword.slice(0, 40)}" (expected topic, pattern or user)`,
      });
      continue;
    }
    // topic [read|write|readwrite|deny] <filter>; the filter is the rest of the line.
    const a = /^(\S+)(?:[ \t]+(.*))?$/.exec(rest);
    if (!a) {
      problems.push({ line, message: `\`${keyword}\` needs a topic` });
      continue;
    }
    let access = READ | WRITE;
    let filter = rest;
    if (a[2] !== undefined) {
      if (!Object.hasOwn(ACCESS, a[1])) {
        problems.push({
          line,
          message: `unknown access "${
            a[1].slice(0, 40)
          }" (expected read, write, readwrite or deny)`,
        });
        continue;
      }
      access = ACCESS[a[1]];
      filter = a[2].trim();
    } else if (Object.hasOwn(ACCESS, a[1])) {
      // Mosquitto would read "topic deny" as readwrite access to a topic named "deny".
      problems.push({ line, message: `\`${keyword} ${a[1]}\` needs a topic after the access` });
      continue;
    }
    if (!validTopicFilter(filter)) {
      problems.push({ line, message: `invalid topic filter "${filter.slice(0, 200)}"` });
      continue;
    }
    const levels = filter.split("/");
    let subst = false;
    if (keyword === "pattern") {
      const bad = levels.find((l) => l !== "%c" && l !== "%u" && /%[cu]/.test(l));
      if (bad !== undefined) {
        problems.push({
          line,
          message: `%c and %u must be a whole topic level (as in a/%c/b), not part of "${bad}"`,
        });
        continue;
      }
      subst = levels.includes("%c") || levels.includes("%u");
    }
    const rule: AclRule = { access, filter, levels, subst, line };
    if (keyword === "pattern") acl.patterns.push(rule);
    else current.push(rule);
  }
  return { acl, problems };
}

/**
 * A substituted value that stays one topic level and cannot act as a wildcard; as the first
 * level it must not start with `$` either, which would reach topics such as `$SYS` that
 * wildcards never match [MQTT-4.7.2-1].
 */
function safeLevel(v: string | undefined, first: boolean, dollar = false): v is string {
  return v !== undefined && v !== "" && !/[/+#]/.test(v) && !v.includes("\0") &&
    (dollar || !(first && v.charCodeAt(0) === 0x24));
}

/**
 * The filter a pattern becomes for `who`: %c/%u replaced; `null` when a value is not safe
 * (with `dollar`, a first level starting with `$` is let through).
 */
function substitute(r: AclRule, who: AclSubject, dollar = false): string | null {
  if (!r.subst) return r.filter;
  const out: string[] = [];
  for (const l of r.levels) {
    const first = out.length === 0;
    if (l === "%c") {
      if (!safeLevel(who.clientId, first, dollar)) return null;
      out.push(who.clientId);
    } else if (l === "%u") {
      if (!safeLevel(who.username, first, dollar)) return null;
      out.push(who.username);
    } else {
      out.push(l);
    }
  }
  return out.join("/");
}

/**
 * A deny pattern whose value could not be substituted denies everything below its first
 * substituted level: `pattern deny a/%c/#` for client "#" denies `a/#`.
 */
function unsafeDenyFilter(r: AclRule): string {
  const i = r.levels.findIndex((l) => l === "%c" || l === "%u");
  return [...r.levels.slice(0, i), "#"].join("/");
}

/** The rules that apply to `who`, as [filter, access] pairs with denials first. */
export function rulesFor(acl: Acl, who: AclSubject): { deny: string[]; grant: [string, number][] } {
  const deny: string[] = [];
  const grant: [string, number][] = [];
  const own = who.username === undefined ? acl.anonymous : acl.users.get(who.username);
  for (const r of own ?? []) {
    if (r.access === 0) deny.push(r.filter);
    else grant.push([r.filter, r.access]);
  }
  for (const r of acl.patterns) {
    // As in Mosquitto, a pattern with %u does not apply to a client without a user name.
    if (who.username === undefined && r.levels.includes("%u")) continue;
    const f = substitute(r, who);
    if (r.access === 0) {
      if (f !== null) deny.push(f);
      else {
        deny.push(unsafeDenyFilter(r));
        // `pattern deny %c/#` for a client named "$SYS" denies "$SYS/#" as well ("#" does not
        // reach `$` topics): a denial may only grow.
        const literal = substitute(r, who, true);
        if (literal !== null) deny.push(literal);
      }
    } else if (f !== null) grant.push([f, r.access]);
  }
  return { deny, grant };
}

/** The compiled rules for one client: checks a topic or a subscription filter. */
export class AclView {
  readonly #deny: string[];
  readonly #grant: [string, number][];
  /** The same rules split into levels once, for `allows`. */
  readonly #denyLevels: string[][];
  readonly #grantLevels: string[][];
  readonly #grantAccess: number[];

  constructor(acl: Acl, who: AclSubject) {
    const { deny, grant } = rulesFor(acl, who);
    this.#deny = deny;
    this.#grant = grant;
    this.#denyLevels = deny.map((f) => f.split("/"));
    this.#grantLevels = grant.map(([f]) => f.split("/"));
    this.#grantAccess = grant.map(([, a]) => a);
  }

  /** May the client `access` (READ or WRITE) topic name `topic`? */
  allows(topic: string, access: number): boolean {
    const t = topic.split("/");
    const dollar = topic.charCodeAt(0) === 0x24; /* $ */
    const deny = this.#denyLevels;
    for (let i = 0; i < deny.length; i++) if (matchLevels(deny[i], t, dollar)) return false;
    const grant = this.#grantLevels;
    const acc = this.#grantAccess;
    for (let i = 0; i < grant.length; i++) {
      if ((acc[i] & access) !== 0 && matchLevels(grant[i], t, dollar)) return true;
    }
    return false;
  }

  /**
   * May the client subscribe to `filter`? Refused when a deny rule covers every topic the filter
   * matches, or when no read grant matches any of them. A filter that is only partly readable is
   * accepted: each message is then checked with `allows(topic, READ)` on delivery.
   */
  canSubscribe(filter: string): boolean {
    for (const d of this.#deny) if (covers(d, filter)) return false;
    for (const [f, a] of this.#grant) if ((a & READ) !== 0 && overlaps(f, filter)) return true;
    return false;
  }
}

/** `topicMatches` on pre-split levels: does filter `f` match topic `t`? */
export function matchLevels(f: string[], t: string[], dollar: boolean): boolean {
  // [MQTT-4.7.2-1] a filter starting with a wildcard does not match a topic starting with '$'.
  if (dollar && (f[0] === "#" || f[0] === "+")) return false;
  for (let i = 0; i < f.length; i++) {
    const l = f[i];
    if (l === "#") return true;
    if (i >= t.length || (l !== "+" && l !== t[i])) return false;
  }
  return f.length === t.length;
}

/** Whether a filter's first level is a wildcard (it then matches no `$` topic [MQTT-4.7.2-1]). */
function wildFirst(levels: string[]): boolean {
  return levels[0] === "+" || levels[0] === "#";
}

/** Does filter `outer` match every topic that filter `inner` matches? */
export function covers(outer: string, inner: string): boolean {
  const o = outer.split("/");
  const n = inner.split("/");
  if (wildFirst(o) && !wildFirst(n) && n[0].startsWith("$")) return false;
  for (let i = 0;; i++) {
    if (i < o.length && o[i] === "#") return true;
    if (i >= o.length || i >= n.length) return i >= o.length && i >= n.length;
    if (n[i] === "#") return false;
    if (n[i] === "+") {
      if (o[i] !== "+") return false;
    } else if (o[i] !== "+" && o[i] !== n[i]) {
      return false;
    }
  }
}

/** Is there a topic that both filters match? */
export function overlaps(a: string, b: string): boolean {
  const x = a.split("/");
  const y = b.split("/");
  if (wildFirst(x) && !wildFirst(y) && y[0].startsWith("$")) return false;
  if (wildFirst(y) && !wildFirst(x) && x[0].startsWith("$")) return false;
  for (let i = 0;; i++) {
    if ((i < x.length && x[i] === "#") || (i < y.length && y[i] === "#")) return true;
    if (i >= x.length || i >= y.length) return i >= x.length && i >= y.length;
    if (x[i] !== "+" && y[i] !== "+" && x[i] !== y[i]) return false;
  }
}
