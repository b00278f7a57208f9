/**
 * MQTT topics and filters as NATS subjects, exactly: one NATS token per MQTT level, so that NATS
 * routing by interest gives the same answer as MQTT matching for every topic and filter.
 *
 * A subject is `<prefix>.<class>.<level>…<level>.<end>`:
 * - **class** is `s` for a topic whose first level starts with `$` and `t` otherwise. A filter
 *   that starts with `+` or `#` only ever gets `t`, so NATS itself keeps `$SYS/…` away from `#`
 *   and `+/…` [MQTT-4.7.2-1].
 * - **level**: the bytes `[A-Za-z0-9_-]` stand for themselves; every other UTF-8 byte becomes `=`
 *   and two upper-case hex digits (so `.`, `*`, `>`, spaces and `=` itself never reach NATS as
 *   such). The empty level is the token `=`, which no non-empty level can produce.
 * - **end** is `==`, which no level can produce. Every subject ends with it, so the filter `a/#`
 *   becomes the one subscription `<prefix>.t.a.>`, which matches `a` (`<prefix>.t.a.==`) and all
 *   of its children [MQTT-4.7.1-2 v3.1.1][MQTT-4.7.1-1 v5].
 *
 * The same string without the prefix is a valid JetStream KV key (`^[-/=.\w]+$`), so retained
 * messages and sessions use this mapping too.
 *
 * NATS bounds a subject's length (the protocol's control line, 4 KB by default). A topic whose
 * subject would be longer than `MAX_SUBJECT` travels on the overflow subject `<prefix>.x` instead,
 * which every node subscribes to and filters with its own matcher. A filter whose subject is too
 * long needs no NATS subscription of its own: every topic it matches has a subject at least as
 * long (a `+` or `#` token is one byte and matches one or more non-empty tokens), so all of them
 * travel on the overflow subject.
 */

/** The longest subject sent to NATS; longer topics use the overflow subject. */
export const MAX_SUBJECT = 2048;

/** Token of the empty level. */
const EMPTY = "=";
/** Token that ends every subject. */
export const END = "==";
const HEX = "0123456789ABCDEF";
const encoder = new TextEncoder();

/** Is this byte kept as it is in a token? [A-Za-z0-9_-] */
function plain(b: number): boolean {
  return (b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a) || (b >= 0x30 && b <= 0x39) ||
    b === 0x5f || b === 0x2d;
}

/** One MQTT level as one NATS token. */
export function levelToken(level: string): string {
  if (level === "") return EMPTY;
  // Fast path: a level of plain ASCII is its own token.
  let simple = true;
  for (let i = 0; i < level.length; i++) {
    if (!plain(level.charCodeAt(i))) {
      simple = false;
      break;
    }
  }
  if (simple) return level;
  let out = "";
  for (const b of encoder.encode(level)) {
    out += plain(b) ? String.fromCharCode(b) : "=" + HEX[b >> 4] + HEX[b & 15];
  }
  return out;
}

/** The inverse of `levelToken`. */
export function tokenLevel(token: string): string {
  if (token === EMPTY) return "";
  if (!token.includes("=")) return token;
  const bytes: number[] = [];
  for (let i = 0; i < token.length; i++) {
    const c = token.charCodeAt(i);
    if (c === 0x3d) {
      bytes.push(parseInt(token.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(c);
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** The subject's class token for a topic or a filter whose first level is `first`. */
function classOf(first: string): string {
  return first.charCodeAt(0) === 0x24 /* $ */ ? "s" : "t";
}

/**
 * The key of a topic without a prefix: `<class>.<level>….==`. Used as a KV key for retained
 * messages, and (with a prefix) as the subject a message is published on.
 */
export function topicKey(topic: string): string {
  const levels = topic.split("/");
  let key = classOf(levels[0]);
  for (const l of levels) key += "." + levelToken(l);
  return key + "." + END;
}

/** The MQTT topic of a `topicKey` (the inverse). */
export function keyTopic(key: string): string {
  const tokens = key.split(".");
  return tokens.slice(1, -1).map(tokenLevel).join("/");
}

/**
 * The subject a message on `topic` is published on under `prefix`, or null when it would be
 * longer than MAX_SUBJECT (send it on `overflowSubject(prefix)`).
 */
export function topicSubject(prefix: string, topic: string): string | null {
  const s = prefix + "." + topicKey(topic);
  return s.length <= MAX_SUBJECT ? s : null;
}

/** The subject that carries messages whose topic is too long for a subject of its own. */
export function overflowSubject(prefix: string): string {
  return prefix + ".x";
}

/**
 * The NATS subscription subject for a valid MQTT filter (without any `$share/group/` prefix), or
 * null when it would be longer than MAX_SUBJECT (the overflow subscription covers it).
 */
export function filterSubject(prefix: string, filter: string): string | null {
  const levels = filter.split("/");
  const first = levels[0];
  let s = prefix + "." + (first === "+" || first === "#" ? "t" : classOf(first));
  for (const l of levels) {
    if (l === "#") return s.length + 2 <= MAX_SUBJECT ? s + ".>" : null;
    s += "." + (l === "+" ? "*" : levelToken(l));
  }
  s += "." + END;
  return s.length <= MAX_SUBJECT ? s : null;
}

/** NATS's own matching of a subscription subject against a published subject. */
export function subjectMatches(sub: string, subject: string): boolean {
  const a = sub.split(".");
  const b = subject.split(".");
  for (let i = 0; i < a.length; i++) {
    if (a[i] === ">") return b.length > i;
    if (i >= b.length) return false;
    if (a[i] !== "*" && a[i] !== b[i]) return false;
  }
  return a.length === b.length;
}
