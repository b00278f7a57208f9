/**
 * Permissions carried in a token: the `acl` claim in EMQX's format, compiled for one client into
 * an authorizer. Rules are checked in order and the first that matches answers; a request no
 * rule matches is "next" (the chain's authorizers decide).
 *
 *   [{"permission": "allow", "action": "publish", "topic": "d/${clientid}/#", "qos": [0, 1],
 *     "retain": false},
 *    {"permission": "allow", "action": "subscribe", "topics": ["c/${clientid}", "eq all/#"]},
 *    {"permission": "deny", "action": "all", "topic": "#"}]
 *
 * and EMQX's older form {"pub": [...], "sub": [...], "all": [...]} (allow lists). Subscribe
 * rules also grant (or deny) reading, which Midge checks on every delivery.
 */
import {
  ACCESS_READ,
  ACCESS_SUBSCRIBE,
  ACCESS_UNSUBSCRIBE,
  ACCESS_WRITE,
  type AccessRequest,
  type Authorizer,
  type Verdict,
} from "./chain_types.ts";
import { covers, matchLevels } from "./acl.ts";

/** Who the placeholders stand for. */
export interface ClaimSubject {
  readonly clientId: string;
  readonly username: string | undefined;
}

interface Filter {
  /** "eq": the filter is compared as a string, not matched. */
  readonly eq: boolean;
  readonly text: string;
  readonly levels: string[];
}

interface Rule {
  readonly allow: boolean;
  readonly publish: boolean;
  readonly subscribe: boolean;
  /** null: every topic (a deny rule whose placeholder could not be filled safely). */
  readonly filters: Filter[] | null;
  readonly qos: readonly number[] | null;
  readonly retain: boolean | null;
}

/** Rules a claim may hold, at most (the token came from a client). */
const MAX_RULES = 1000;

/** A claim that is not in either form: the token is refused with this reason. */
export class ClaimError extends Error {}

/**
 * Compiles an `acl` claim for `who`. Throws `ClaimError` when the claim has the wrong shape
 * (a token whose permissions cannot be read is refused, not given more than it says).
 */
export function compileAclClaim(claim: unknown, who: ClaimSubject): Authorizer {
  const rules: Rule[] = [];
  if (Array.isArray(claim)) {
    if (claim.length > MAX_RULES) throw new ClaimError(`more than ${MAX_RULES} acl rules`);
    for (const r of claim) rules.push(rule(r, who));
  } else if (claim !== null && typeof claim === "object") {
    const old = claim as Record<string, unknown>;
    for (const [key, action] of [["pub", "publish"], ["sub", "subscribe"], ["all", "all"]]) {
      const list = old[key];
      if (list === undefined) continue;
      if (!Array.isArray(list) || list.some((t) => typeof t !== "string")) {
        throw new ClaimError(`acl.${key} is not a list of topics`);
      }
      rules.push(rule({ permission: "allow", action, topics: list }, who));
    }
    if (rules.length > MAX_RULES) throw new ClaimError(`more than ${MAX_RULES} acl rules`);
  } else {
    throw new ClaimError("the acl claim is neither a list of rules nor {pub, sub, all}");
  }
  return new ClaimGrants(rules);
}

function rule(r: unknown, who: ClaimSubject): Rule {
  if (r === null || typeof r !== "object") throw new ClaimError("an acl rule is not an object");
  const o = r as Record<string, unknown>;
  const allow = o.permission === "allow";
  if (!allow && o.permission !== "deny") throw new ClaimError("acl rule without permission");
  const action = o.action ?? "all";
  const publish = action === "publish" || action === "pub" || action === "all";
  const subscribe = action === "subscribe" || action === "sub" || action === "all";
  if (!publish && !subscribe) throw new ClaimError(`unknown acl action ${JSON.stringify(action)}`);
  const texts = o.topics ?? (o.topic === undefined ? undefined : [o.topic]);
  if (!Array.isArray(texts) || texts.some((t) => typeof t !== "string")) {
    throw new ClaimError("acl rule without topic");
  }
  let filters: Filter[] | null = [];
  for (const t of texts as string[]) {
    const f = filter(t, who);
    if (f === null) {
      // A placeholder the client could abuse (a client id with + or #): an allow rule grants
      // nothing, a deny rule denies everything.
      if (!allow) filters = null;
      continue;
    }
    filters?.push(f);
  }
  let qos: number[] | null = null;
  if (o.qos !== undefined) {
    const q = Array.isArray(o.qos) ? o.qos : [o.qos];
    if (q.some((x) => x !== 0 && x !== 1 && x !== 2)) throw new ClaimError("acl rule qos not 0-2");
    qos = q as number[];
  }
  let retain: boolean | null = null;
  if (o.retain === true || o.retain === false) retain = o.retain;
  else if (o.retain !== undefined && o.retain !== "all") {
    throw new ClaimError('acl rule retain not true, false or "all"');
  }
  return { allow, publish, subscribe, filters, qos, retain };
}

/** The rule's topic with placeholders filled, or null when a value is unsafe or missing. */
function filter(text: string, who: ClaimSubject): Filter | null {
  let eq = false;
  let t = text;
  if (t.startsWith("eq ")) {
    eq = true;
    t = t.slice(3);
  }
  let unsafe = false;
  t = t.replace(/\$\{(clientid|username)\}/g, (_, name: string) => {
    const v = name === "clientid" ? who.clientId : who.username;
    if (v === undefined || v === "" || /[+#/]/.test(v)) unsafe = true;
    return v ?? "";
  });
  if (unsafe) return null;
  return { eq, text: t, levels: t.split("/") };
}

/** The compiled rules of one token. */
class ClaimGrants implements Authorizer {
  readonly name = "jwt";
  readonly cacheable = true;
  readonly #rules: Rule[];

  constructor(rules: Rule[]) {
    this.#rules = rules;
  }

  authorize(req: AccessRequest): Verdict {
    const { access, topic } = req;
    // The claim has no unsubscribe rules.
    if (access === ACCESS_UNSUBSCRIBE) return "next";
    const levels = access === ACCESS_SUBSCRIBE ? null : topic.split("/");
    const dollar = topic.charCodeAt(0) === 0x24; /* $ */
    for (const r of this.#rules) {
      if (access === ACCESS_WRITE ? !r.publish : !r.subscribe) continue;
      if (access !== ACCESS_READ && req.qos !== undefined && r.qos && !r.qos.includes(req.qos)) {
        continue;
      }
      if (access === ACCESS_WRITE && r.retain !== null && req.retain !== r.retain) continue;
      if (r.filters === null) return r.allow ? "allow" : "deny";
      for (const f of r.filters) {
        let hit: boolean;
        if (access === ACCESS_SUBSCRIBE) hit = f.eq ? f.text === topic : covers(f.text, topic);
        else if (f.eq && !r.allow && access === ACCESS_READ) hit = false;
        else if (f.eq && access === ACCESS_WRITE) hit = f.text === topic;
        else hit = matchLevels(f.levels, levels!, dollar);
        if (hit) return r.allow ? "allow" : "deny";
      }
    }
    return "next";
  }
}
