// Topic names and topic filters (MQTT 3.1.1 §4.7, MQTT 5.0 §4.7 and §4.8.2), in plain TypeScript.
// The broker's matcher is src/broker/matcher.ts (WASM); `topicMatches` here is the reference
// implementation the tests compare it with.

/** Largest UTF-8 length of a topic name or filter: a two-byte length prefix [MQTT-4.7.3-3]. */
export const MAX_TOPIC_BYTES = 65535;

/**
 * Checks the characters common to names and filters: no U+0000 [MQTT-4.7.3-2], no unpaired
 * surrogate (well-formed UTF-8, [MQTT-1.5.3-1 v3.1.1]) and at most 65535 UTF-8 bytes [MQTT-4.7.3-3].
 */
function validChars(s: string): boolean {
  let bytes = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) {
      if (c === 0) return false;
      bytes += 1;
    } else if (c < 0x800) {
      bytes += 2;
    } else if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return false;
      i++;
      bytes += 4;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return false;
    } else {
      bytes += 3;
    }
  }
  return bytes <= MAX_TOPIC_BYTES;
}

/** UTF-8 length of `s` in bytes (an unpaired surrogate counts 3, as the encoder writes U+FFFD). */
export function utf8Length(s: string): number {
  let bytes = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) bytes += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        // A pair: 2 UTF-16 units, 4 bytes.
        bytes += 2;
        i++;
      } else bytes += 2;
    } else bytes += 2;
  }
  return bytes;
}

/**
 * True when `prefix + topic` (a listener's mount_point or a bridge's prefix in front of a topic
 * name or filter) still fits the 65,535 bytes of a topic [MQTT-4.7.3-3]. Only called where a
 * prefix is added; short topics are settled without counting.
 */
export function fitsWithPrefix(prefix: string, topic: string): boolean {
  if ((prefix.length + topic.length) * 3 <= MAX_TOPIC_BYTES) return true;
  return utf8Length(prefix) + utf8Length(topic) <= MAX_TOPIC_BYTES;
}

/**
 * A valid topic filter: non-empty [MQTT-4.7.3-1]; '#' only as the whole last level
 * [MQTT-4.7.1-2 v3.1.1][MQTT-4.7.1-1 v5]; '+' only as a whole level
 * [MQTT-4.7.1-3 v3.1.1][MQTT-4.7.1-2 v5]; no U+0000; ≤ 65535 UTF-8 bytes.
 * "$share/…" filters are ordinary filters here; see `parseShared`.
 */
export function validTopicFilter(filter: string): boolean {
  if (filter.length === 0) return false; // [MQTT-4.7.3-1]
  const n = filter.length;
  for (let i = 0; i < n; i++) {
    const c = filter.charCodeAt(i);
    if (c === 0x23 /* # */) {
      // Alone in its level and the last character of the filter
      // [MQTT-4.7.1-2 v3.1.1][MQTT-4.7.1-1 v5].
      if (i !== n - 1 || (i > 0 && filter.charCodeAt(i - 1) !== 0x2f)) return false;
    } else if (c === 0x2b /* + */) {
      // [MQTT-4.7.1-3 v3.1.1][MQTT-4.7.1-2 v5] alone in its level
      if (i > 0 && filter.charCodeAt(i - 1) !== 0x2f) return false;
      if (i < n - 1 && filter.charCodeAt(i + 1) !== 0x2f) return false;
    }
  }
  return validChars(filter);
}

/** A valid topic name: non-empty [MQTT-4.7.3-1], no '+' or '#' [MQTT-3.3.2-2], no U+0000, ≤ 65535 bytes. */
export function validTopicName(topic: string): boolean {
  if (topic.length === 0) return false;
  for (let i = 0; i < topic.length; i++) {
    const c = topic.charCodeAt(i);
    if (c === 0x23 || c === 0x2b) return false; // [MQTT-3.3.2-2]
  }
  return validChars(topic);
}

/** Thrown by `parseShared` for a "$share/…" filter that is not a valid shared subscription. */
export class InvalidSharedFilter extends Error {
  constructor(readonly filter: string, reason: string) {
    super(`invalid shared subscription "${filter}": ${reason}`);
    this.name = "InvalidSharedFilter";
  }
}

/**
 * Splits a shared subscription (MQTT 5.0 §4.8.2) "$share/<group>/<filter>" into its parts.
 * Returns null when `filter` does not start with "$share/" (an ordinary filter). Throws
 * `InvalidSharedFilter` when it does but the share name is empty [MQTT-4.8.2-1 v5], contains '+' or
 * '#', or is not followed by "/" and a valid topic filter [MQTT-4.8.2-2 v5].
 * (In MQTT 3.1.1 "$share/…" is an ordinary filter; the caller decides by protocol version.)
 */
export function parseShared(filter: string): { group: string; filter: string } | null {
  if (!filter.startsWith("$share/")) return null;
  const slash = filter.indexOf("/", 7);
  // [MQTT-4.8.2-2 v5] the share name is followed by "/" and a topic filter
  if (slash < 0) throw new InvalidSharedFilter(filter, "no topic filter after the share name");
  const group = filter.slice(7, slash);
  if (group.length === 0) throw new InvalidSharedFilter(filter, "empty share name"); // [MQTT-4.8.2-1 v5]
  if (group.includes("+") || group.includes("#")) {
    throw new InvalidSharedFilter(filter, "share name contains '+' or '#'");
  }
  const inner = filter.slice(slash + 1);
  if (!validTopicFilter(inner)) throw new InvalidSharedFilter(filter, "invalid topic filter");
  return { group, filter: inner };
}

/**
 * Does `filter` match topic name `topic`? The reference implementation (string splitting),
 * used as the oracle for the WASM matcher. Levels compare exactly (case-sensitive; "a//b" has an
 * empty middle level; a leading "/" makes an empty first level) and without normalization [MQTT-4.7.3-4].
 */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split("/");
  const t = topic.split("/");
  // [MQTT-4.7.2-1] filters starting with a wildcard do not match topics starting with '$'
  if (topic.startsWith("$") && (f[0] === "#" || f[0] === "+")) return false;
  for (let i = 0; i < f.length; i++) {
    // '#' matches the parent and any number of levels [MQTT-4.7.1-2 v3.1.1][MQTT-4.7.1-1 v5].
    if (f[i] === "#") return true;
    if (i >= t.length) return false;
    // '+' matches one level [MQTT-4.7.1-3 v3.1.1][MQTT-4.7.1-2 v5].
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/**
 * True when a client (or its will) may not publish on `topic` because it is in the broker's own
 * `$SYS` tree. The one exception is `$SYS/broker/connection/+/state`, where bridges report their
 * connection state, as Mosquitto allows. Compared level by level: `$SYSTEM/x` is not `$SYS`.
 */
export function sysTopicDenied(topic: string): boolean {
  if (topic.charCodeAt(0) !== 0x24 /* $ */ || !topic.startsWith("$SYS")) return false;
  if (topic.length > 4 && topic.charCodeAt(4) !== 0x2f /* / */) return false;
  const levels = topic.split("/");
  return !(levels.length === 5 && levels[1] === "broker" && levels[2] === "connection" &&
    levels[4] === "state");
}
