/**
 * Mosquitto's own configuration format (mosquitto.conf), read as Mosquitto 2.0 reads it: one
 * `option value` per line, `#` comments, repeated options, `listener` blocks, the default
 * listener, `per_listener_settings`, `include_dir`, bridges (`connection`), and the 1.x/2.0
 * aliases still found in old files. The file is translated into the equivalent Midge TOML
 * (comments carried over), which `midge convert` prints and the loader checks with the TOML
 * schema; every option that is left out takes Mosquitto's default, not Midge's.
 *
 * Problems are collected, never stopped at: every malformed line of every file is reported at
 * once with file:line. Options Midge cannot honour produce a warning with file, line and reason.
 */
import { readdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { BRIDGE_KEYS, GLOBAL_KEYS, LISTENER_KEYS, Problem, type Schema } from "./schema.ts";

/** A place in a configuration file. */
export interface Where {
  file: string;
  line: number;
}

/** A message about one line (line 0: about the file as a whole). */
export interface ConfMessage extends Where {
  message: string;
}

/** The result of translating a mosquitto.conf. */
export interface Translation {
  /** The equivalent Midge TOML, comments carried over. */
  toml: string;
  /** Malformed lines: the file must not be used. */
  errors: ConfMessage[];
  /** Options Midge does not honour, each with its reason. */
  warnings: ConfMessage[];
  /** Recommendations about Mosquitto defaults that are unsafe (meaning unchanged). */
  notes: ConfMessage[];
  /** Where each TOML key ("max_qos", "listener[1].certfile") came from, for error messages. */
  sources: Map<string, Where>;
}

/**
 * Whether `text` is in Mosquitto's format rather than TOML: a non-comment line of the form
 * `option value` (no `=` after the first word, not a `[table]` header). A file of comments only
 * is taken as Mosquitto's when its name ends in `.conf`.
 */
export function isMosquittoConf(text: string, path = ""): boolean {
  let sawOption = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    sawOption = true;
    if (line.startsWith("[")) return false;
    const m = /^[A-Za-z_][A-Za-z0-9_.-]*(\s*)(.?)/.exec(line);
    if (!m) return false;
    if (m[2] === "=" || m[2] === ".") return false;
    return true;
  }
  return !sawOption && /\.conf$/i.test(path);
}

// ---------------------------------------------------------------------------------------------
// The model the lines are applied to: sections (global, listeners, bridges), each with its keys
// in the order they appeared, the comments that came before them, and where each came from.

interface Item {
  comments: string[];
  /** Midge keys this line set (emitted at the first item naming them). */
  keys: string[];
  /** A line that sets nothing, emitted as a comment: the original text and why. */
  note?: string;
  /** Set by `mosquittoDefault`: a default the file did not give. */
  defaults?: boolean;
}

class Section {
  readonly items: Item[] = [];
  readonly values = new Map<string, unknown>();
  readonly src = new Map<string, Where>();
  /** Whether an option in this section was given (for the default listener). */
  touched = false;
  constructor(readonly header: string) {}

  set(key: string, value: unknown, where: Where, item: Item): void {
    this.values.set(key, value);
    this.src.set(key, where);
    if (!item.keys.includes(key)) item.keys.push(key);
  }
  push(key: string, value: unknown, where: Where, item: Item): void {
    const list = (this.values.get(key) as unknown[] | undefined) ?? [];
    list.push(value);
    this.set(key, list, where, item);
  }
  has(key: string): boolean {
    return this.values.has(key);
  }
  /** A key set to Mosquitto's default (it differs from Midge's), with a comment saying so. */
  mosquittoDefault(key: string, value: unknown): void {
    if (this.values.has(key)) return;
    this.values.set(key, value);
    const last = this.items.at(-1);
    const comments = last?.defaults
      ? []
      : ["# Mosquitto's defaults, where they differ from Midge's:"];
    this.items.push({ comments, keys: [key], defaults: true });
  }
}

/** Per listener: its settings and security options (per_listener_settings). */
interface ListenerState {
  section: Section;
  anonymous?: boolean;
  anonymousAt?: Where;
}

/** State while reading one configuration (the main file and its include_dir files). */
class Reader {
  readonly errors: ConfMessage[] = [];
  readonly warnings: ConfMessage[] = [];
  readonly notes: ConfMessage[] = [];
  readonly global = new Section("");
  readonly defaultListener: ListenerState = { section: new Section("[[listener]]") };
  readonly listeners: ListenerState[] = [];
  readonly bridges: Section[] = [];
  cur: ListenerState = this.defaultListener;
  bridge: Section | null = null;
  localOnly = true;
  perListener = false;
  /** A security option was seen (per_listener_settings must come before any). */
  securitySeen = false;
  globalAnonymous?: boolean;
  /** An explicit check_retain_source line. */
  checkRetainSource?: { value: boolean; where: Where };
  /** The plugin that the following plugin_opt_* lines belong to. */
  plugin: { kind: "dynsec" | "other"; where: Where; configFile?: string } | null = null;
  readonly plugins: { where: Where; configFile?: string }[] = [];
  trailing: string[] = [];
  pending: string[] = [];
  /** Whether an option line has been read (a blank line before the first is dropped). */
  sawOption = false;

  error(where: Where, message: string): void {
    this.errors.push({ ...where, message });
  }
  warn(where: Where, message: string): void {
    this.warnings.push({ ...where, message });
  }
}

/** A read value: the TOML-like value given to the schema (integers as bigint). */
type Kind = "int" | "bool" | "string" | "word";

/** Reads the value of an option (`rest` is the line after the option name). */
function value(r: Reader, where: Where, name: string, rest: string, kind: Kind): unknown {
  const text = kind === "string" ? rest.trim() : rest.trim().split(/\s+/)[0] ?? "";
  if (text === "") {
    r.error(where, `${name}: empty value`);
    return undefined;
  }
  if (kind === "int") {
    if (!/^[+-]?\d+$/.test(text)) {
      r.error(where, `${name}: expected an integer, got ${JSON.stringify(text)}`);
      return undefined;
    }
    return BigInt(text);
  }
  if (kind === "bool") {
    if (text !== "true" && text !== "false") {
      r.error(where, `${name}: expected true or false, got ${JSON.stringify(text)}`);
      return undefined;
    }
    return text === "true";
  }
  return text;
}

/** Checks `v` against the schema entry of `key`; returns the converted value or undefined. */
function check(r: Reader, where: Where, name: string, schema: Schema, key: string, v: unknown) {
  if (v === undefined) return undefined;
  try {
    return schema[key].type.read(v);
  } catch (e) {
    if (!(e instanceof Problem)) throw e;
    r.error(where, `${name}: ${e.message}`);
    return undefined;
  }
}

/** Why a TLS-PSK option cannot be honoured (psk_file, psk_hint, --psk). */
export const PSK_REASON =
  "TLS-PSK is not available: it fails in Bun's TLS library and Deno has none (checked against a node:tls PSK server); use client certificates instead (cafile, require_certificate, use_identity_as_username)";

/** Top-level options that map one to one onto a Midge key (name, kind). */
const GLOBAL_SIMPLE: Record<string, [string, Kind]> = {
  clientid_prefixes: ["clientid_prefixes", "string"],
  connection_messages: ["connection_messages", "bool"],
  log_timestamp: ["log_timestamp", "bool"],
  log_timestamp_format: ["log_timestamp_format", "string"],
  max_keepalive: ["max_keepalive", "int"],
  message_size_limit: ["message_size_limit", "int"],
  persistence: ["persistence", "bool"],
  retained_persistence: ["persistence", "bool"],
  persistence_location: ["persistence_location", "string"],
  persistent_client_expiration: ["persistent_client_expiration", "word"],
  pid_file: ["pid_file", "string"],
  queue_qos0_messages: ["queue_qos0_messages", "bool"],
  retain_available: ["retain_available", "bool"],
  sys_interval: ["sys_interval", "int"],
  upgrade_outgoing_qos: ["upgrade_outgoing_qos", "bool"],
  user: ["user", "string"],
};

/** Listener options that map one to one onto a [[listener]] key. */
const LISTENER_SIMPLE: Record<string, [string, Kind]> = {
  cafile: ["cafile", "string"],
  certfile: ["certfile", "string"],
  keyfile: ["keyfile", "string"],
  crlfile: ["crlfile", "string"],
  ciphers: ["ciphers", "string"],
  require_certificate: ["require_certificate", "bool"],
  use_identity_as_username: ["use_identity_as_username", "bool"],
  use_subject_as_username: ["use_subject_as_username", "bool"],
  use_username_as_clientid: ["use_username_as_clientid", "bool"],
  http_dir: ["http_dir", "string"],
};

/** Options accepted and not needed: what Midge does anyway, with the reason. */
const ACCEPTED: Record<string, string> = {
  autosave_interval: "Midge commits every acknowledged message at once",
  autosave_on_changes: "Midge commits every acknowledged message at once",
  websockets_log_level: "libwebsockets' own log; Midge logs WebSocket events at websockets",
  websockets_headers_size: "Midge sizes WebSocket headers itself (bounded)",
  packet_buffer_size: "Midge sizes its read buffers itself",
};

/** Why check_retain_source (Mosquitto's default true) is not honoured. */
const CHECK_RETAIN_SOURCE =
  "not honoured: a retained message is not checked again against its publisher's current ACL before it is sent (as with check_retain_source false)";

/** Options that cannot be honoured, with the reason (each gets a warning). */
const UNSUPPORTED: Record<string, string> = {
  psk_file: PSK_REASON,
  psk_hint: PSK_REASON,
  capath: "a CA directory is not supported: put the certificates in one file and use cafile",
  "ciphers_tls1.3": "TLS 1.3 cipher suites cannot be chosen (the runtime's defaults apply)",
  dhparamfile: "not needed: Midge offers ECDHE key exchange only",
  tls_engine: "OpenSSL engines are not available",
  tls_keyform: "OpenSSL engines are not available (keys are read as PEM)",
  tls_engine_kpass_sha1: "OpenSSL engines are not available",
  bind_interface: "binding to an interface is not supported: use the interface's address",
  log_facility: "Midge does not log to syslog",
  retry_interval: "no longer available (as in Mosquitto 2.0)",
  store_clean_interval: "no longer available (Mosquitto 1.x)",
  global_max_clients: "not supported: use max_connections",
  global_max_connections: "not supported: use max_connections",
  retain_expiry_interval: "not supported: expired retained messages are removed when read",
  enable_control_api: "the $CONTROL/broker/v1 API is not available",
  accept_protocol_versions: "every protocol version is accepted",
  proxy_protocol_v2_require_tls: "not supported",
  max_topic_alias_broker: "", // set below: it is a Midge key
};
delete UNSUPPORTED.max_topic_alias_broker;

/** Options of UNSUPPORTED that belong to a listener (the warning's comment goes there). */
const LISTENER_LEVEL: ReadonlySet<string> = new Set([
  "psk_hint",
  "capath",
  "ciphers_tls1.3",
  "dhparamfile",
  "tls_engine",
  "tls_keyform",
  "tls_engine_kpass_sha1",
  "bind_interface",
]);

/** Bridge options that map onto a [[bridge]] key. */
const BRIDGE_SIMPLE: Record<string, [string, Kind]> = {
  bridge_protocol_version: ["bridge_protocol_version", "word"],
  remote_clientid: ["remote_clientid", "string"],
  clientid: ["remote_clientid", "string"],
  local_clientid: ["local_clientid", "string"],
  remote_username: ["remote_username", "string"],
  username: ["remote_username", "string"],
  remote_password: ["remote_password", "string"],
  password: ["remote_password", "string"],
  cleansession: ["cleansession", "bool"],
  keepalive_interval: ["keepalive_interval", "int"],
  restart_timeout: ["restart_timeout", "string"],
  notifications: ["notifications", "bool"],
  notification_topic: ["notification_topic", "string"],
  try_private: ["try_private", "bool"],
  bridge_cafile: ["bridge_cafile", "string"],
  bridge_certfile: ["bridge_certfile", "string"],
  bridge_keyfile: ["bridge_keyfile", "string"],
  bridge_insecure: ["bridge_insecure", "bool"],
  start_type: ["start_type", "word"],
  threshold: ["threshold", "int"],
  idle_timeout: ["idle_timeout", "int"],
  bridge_outgoing_retain: ["bridge_outgoing_retain", "bool"],
  bridge_max_packet_size: ["bridge_max_packet_size", "int"],
  round_robin: ["round_robin", "bool"],
};

/** Bridge options Midge does not have, with the reason. */
const BRIDGE_UNSUPPORTED: Record<string, string> = {
  bridge_attempt_unsubscribe: "not supported",
  bridge_capath: "a CA directory is not supported: use bridge_cafile",
  bridge_tls_version: "the bridge uses TLS 1.2 or 1.3",
  bridge_alpn: "not supported",
  bridge_identity: PSK_REASON,
  bridge_psk: PSK_REASON,
  bridge_bind_address: "not supported",
  bridge_require_ocsp: "not supported",
  local_cleansession: "the local session follows cleansession",
  local_username: "the bridge's local side is not authenticated",
  local_password: "the bridge's local side is not authenticated",
  notifications_local_only: "not supported",
};

/** Mosquitto's plugin for dynamic security, matched on the file name of `plugin`. */
const DYNSEC = /(^|[\\/])mosquitto_dynamic_security(\.[A-Za-z0-9]+)*$/;

/** Reads one file into the reader; `level` 0 is the main file (include_dir only there). */
function readInto(r: Reader, file: string, text: string, level: number): void {
  const lines = text.replace(/^\uFEFF/, "").split("\n");
  let first = level > 0;
  lines.forEach((raw, i) => {
    const line = raw.replace(/\r$/, "");
    const where = { file, line: i + 1 };
    const trimmed = line.trim();
    if (trimmed === "") {
      if (r.pending.at(-1) !== "") r.pending.push("");
      return;
    }
    if (trimmed.startsWith("#")) {
      r.pending.push(trimmed);
      return;
    }
    // Blank lines are kept as separators, one at most, never as the first line of the output.
    const comments = r.pending.filter((c, k) => c !== "" || k > 0 || r.sawOption);
    r.sawOption = true;
    r.pending = [];
    if (first) {
      comments.unshift(`# (from ${file})`);
      first = false;
    }
    const m = /^(\S+)\s*(.*)$/.exec(trimmed)!;
    option(r, where, m[1], m[2], comments, line, level);
  });
}

/** Applies one option line. */
function option(
  r: Reader,
  where: Where,
  name: string,
  rest: string,
  comments: string[],
  original: string,
  level: number,
): void {
  const item: Item = { comments, keys: [] };
  const to = (s: Section) => {
    s.items.push(item);
    s.touched = true;
    return s;
  };
  const skip = (s: Section, why: string, label = "not used") => {
    item.note = `# ${original.trim()}    (${label}: ${why})`;
    s.items.push(item);
  };
  const unsupported = (s: Section, why: string) => {
    r.warn(where, `${name}: ${why}`);
    skip(s, why);
  };

  if (Object.hasOwn(GLOBAL_SIMPLE, name)) {
    const [key, kind] = GLOBAL_SIMPLE[name];
    const v = check(r, where, name, GLOBAL_KEYS, key, value(r, where, name, rest, kind));
    to(r.global);
    if (v !== undefined) r.global.set(key, v, where, item);
    if (name === "retained_persistence") {
      item.comments.push("# (Mosquitto 1.x: retained_persistence)");
    }
    return;
  }
  if (Object.hasOwn(ACCEPTED, name)) {
    skip(r.global, ACCEPTED[name], "not needed");
    return;
  }
  if (Object.hasOwn(UNSUPPORTED, name)) {
    const here = LISTENER_LEVEL.has(name) || (name === "psk_file" && r.perListener);
    unsupported(here ? r.cur.section : r.global, UNSUPPORTED[name]);
    return;
  }
  if (Object.hasOwn(LISTENER_SIMPLE, name)) {
    const [key, kind] = LISTENER_SIMPLE[name];
    const v = check(r, where, name, LISTENER_KEYS, key, value(r, where, name, rest, kind));
    to(r.cur.section);
    if (v !== undefined) r.cur.section.set(key, v, where, item);
    return;
  }
  if (r.bridge && Object.hasOwn(BRIDGE_SIMPLE, name)) {
    const [key, kind] = BRIDGE_SIMPLE[name];
    let v = value(r, where, name, rest, kind);
    // Mosquitto raises values below the minimum with a notice rather than refusing them.
    const min: Record<string, bigint> = { keepalive_interval: 5n, threshold: 1n, idle_timeout: 1n };
    if (typeof v === "bigint" && key in min && v < min[key]) {
      r.notes.push({
        ...where,
        message: `${name} ${v} is too low, using ${min[key]} (as Mosquitto)`,
      });
      v = min[key];
    }
    v = check(r, where, name, BRIDGE_KEYS, key, v);
    to(r.bridge);
    if (v !== undefined) r.bridge.set(key, v, where, item);
    return;
  }
  if (r.bridge && Object.hasOwn(BRIDGE_UNSUPPORTED, name)) {
    unsupported(r.bridge, BRIDGE_UNSUPPORTED[name]);
    return;
  }

  switch (name) {
    case "listener": {
      r.localOnly = false;
      const words = rest.trim().split(/\s+/).filter((w) => w !== "");
      if (words[1]?.startsWith("#")) words.length = 1;
      if (words.length === 0) return r.error(where, "listener: empty value");
      if (!/^\d+$/.test(words[0]) || Number(words[0]) > 65535) {
        return r.error(where, `listener: invalid port ${JSON.stringify(words[0])}`);
      }
      const port = Number(words[0]);
      if (port === 0 && words.length < 2) {
        return r.error(where, "listener: a listener with port 0 must give a Unix socket path");
      }
      const l: ListenerState = { section: new Section("[[listener]]") };
      r.listeners.push(l);
      r.cur = l;
      to(l.section);
      if (port === 0) {
        const path = check(r, where, name, LISTENER_KEYS, "unix_socket", words[1]);
        if (path !== undefined) l.section.set("unix_socket", path, where, item);
        l.section.set("port", 0, where, item);
      } else {
        l.section.set("port", port, where, item);
        if (words[1] !== undefined) {
          const host = check(r, where, name, LISTENER_KEYS, "bind_address", words[1]);
          if (host !== undefined) l.section.set("bind_address", host, where, item);
        }
      }
      return;
    }
    case "port": {
      r.localOnly = false;
      const v = value(r, where, name, rest, "int");
      to(r.defaultListener.section);
      if (v !== undefined) {
        if ((v as bigint) < 1n || (v as bigint) > 65535n) {
          return r.error(where, `port: invalid port ${v}`);
        }
        r.defaultListener.section.set("port", Number(v), where, item);
      }
      return;
    }
    case "bind_address": {
      const v = check(
        r,
        where,
        name,
        LISTENER_KEYS,
        "bind_address",
        value(r, where, name, rest, "word"),
      );
      to(r.defaultListener.section);
      if (v !== undefined) r.defaultListener.section.set("bind_address", v, where, item);
      return;
    }
    case "socket_domain": {
      const v = value(r, where, name, rest, "word");
      to(r.cur.section);
      if (v === undefined) return;
      if (v !== "ipv4" && v !== "ipv6") {
        return r.error(where, `socket_domain: expected ipv4 or ipv6, got ${JSON.stringify(v)}`);
      }
      r.cur.section.values.set("socket_domain", v);
      r.cur.section.src.set("socket_domain", where);
      item.note = `# ${original.trim()}    (sets bind_address below)`;
      return;
    }
    case "protocol": {
      const v = value(r, where, name, rest, "word");
      if (v === "mqttsn" || v === "http_api") {
        return unsupported(r.cur.section, `protocol ${v} is not supported`);
      }
      const p = check(r, where, name, LISTENER_KEYS, "protocol", v);
      to(r.cur.section);
      if (p !== undefined) r.cur.section.set("protocol", p, where, item);
      return;
    }
    case "tls_version": {
      const v = value(r, where, name, rest, "word");
      if (v === "tlsv1.1" || v === "tlsv1") {
        r.cur.section.touched = true;
        return unsupported(
          r.cur.section,
          `${v} is obsolete (RFC 8996) and not offered; TLS 1.2 and 1.3 are accepted`,
        );
      }
      const t = check(r, where, name, LISTENER_KEYS, "tls_version", v);
      to(r.cur.section);
      if (t !== undefined) r.cur.section.set("tls_version", t, where, item);
      return;
    }
    case "max_connections": {
      const v = value(r, where, name, rest, "int");
      to(r.cur.section);
      if (v !== undefined) {
        const n = (v as bigint) < 0n ? -1n : v as bigint;
        if (n === 0n) {
          // Mosquitto: 0 refuses every client. Midge's key has no such value; say so.
          return r.error(
            where,
            "max_connections: 0 would refuse every client; use -1 for no limit",
          );
        }
        const c = check(r, where, name, LISTENER_KEYS, "max_connections", n);
        if (c !== undefined) r.cur.section.set("max_connections", c, where, item);
      }
      return;
    }
    case "mount_point": {
      if (r.listeners.length === 0) {
        return r.error(where, "mount_point: a listener must be defined before mount_point");
      }
      const v = check(
        r,
        where,
        name,
        LISTENER_KEYS,
        "mount_point",
        value(r, where, name, rest, "string"),
      );
      to(r.cur.section);
      if (v !== undefined) r.cur.section.set("mount_point", v, where, item);
      return;
    }
    case "websockets_origin": {
      const v = value(r, where, name, rest, "string");
      to(r.cur.section);
      if (v !== undefined) r.cur.section.push("websockets_origin", v, where, item);
      return;
    }
    case "enable_proxy_protocol": {
      const v = value(r, where, name, rest, "int");
      const p = check(r, where, name, LISTENER_KEYS, "enable_proxy_protocol", v);
      to(r.cur.section);
      if (p !== undefined) r.cur.section.set("enable_proxy_protocol", p, where, item);
      return;
    }
    case "listener_allow_anonymous": {
      const v = value(r, where, name, rest, "bool");
      to(r.cur.section);
      if (v !== undefined) r.cur.section.set("allow_anonymous", v, where, item);
      return;
    }
    case "max_qos":
    case "maximum_qos":
    case "max_topic_alias":
    case "max_topic_alias_broker": {
      // Per listener in Mosquitto; Midge has one value for all listeners.
      const key = name === "maximum_qos" ? "max_qos" : name;
      const v = check(r, where, name, GLOBAL_KEYS, key, value(r, where, name, rest, "int"));
      to(r.global);
      if (v === undefined) return;
      const before = r.global.values.get(key);
      if (r.listeners.length > 1 && before !== undefined && before !== v) {
        r.warn(where, `${name}: Midge has one ${key} for all listeners; ${v} applies to every one`);
      }
      r.global.set(key, v, where, item);
      return;
    }
    case "max_inflight_messages": {
      let v = value(r, where, name, rest, "int") as bigint | undefined;
      if (v !== undefined && (v < 0n || v === 65535n)) v = 0n;
      const c = check(r, where, name, GLOBAL_KEYS, "max_inflight_messages", v);
      to(r.global);
      if (c !== undefined) r.global.set("max_inflight_messages", c, where, item);
      return;
    }
    case "memory_limit": {
      const v = value(r, where, name, rest, "int") as bigint | undefined;
      if (v !== undefined && v < 0n) return r.error(where, `memory_limit: invalid value ${v}`);
      const c = check(r, where, name, GLOBAL_KEYS, name, v);
      to(r.global);
      if (c !== undefined) r.global.set(name, c, where, item);
      return;
    }
    case "max_queued_messages":
    case "max_queued_bytes":
    case "max_inflight_bytes": {
      let v = value(r, where, name, rest, "int") as bigint | undefined;
      if (v !== undefined && v < 0n) v = 0n;
      const c = check(r, where, name, GLOBAL_KEYS, name, v);
      to(r.global);
      if (c !== undefined) r.global.set(name, c, where, item);
      return;
    }
    case "max_packet_size": {
      const v = value(r, where, name, rest, "int") as bigint | undefined;
      const c = check(r, where, name, GLOBAL_KEYS, "max_packet_size", v === 0n ? 268435460n : v);
      to(r.global);
      if (c !== undefined) r.global.set("max_packet_size", c, where, item);
      return;
    }
    case "check_retain_source": {
      // Mosquitto's default is true; Midge behaves as false (see the check after reading).
      const v = value(r, where, name, rest, "bool");
      if (v === undefined) return;
      r.checkRetainSource = { value: v as boolean, where };
      if (v) return unsupported(r.global, CHECK_RETAIN_SOURCE);
      skip(
        r.global,
        "retained messages are not checked again against their publisher's ACL",
        "as Midge does",
      );
      return;
    }
    case "allow_duplicate_messages":
    case "auth_plugin_deny_special_chars": {
      // Midge behaves as one value of each: the other is warned about.
      const v = value(r, where, name, rest, "bool");
      if (v === undefined) return;
      const [honoured, what, why] = name === "allow_duplicate_messages"
        ? [
          false,
          "a client with overlapping subscriptions gets each message once",
          "true is not honoured: a client with overlapping subscriptions gets each message once (at the highest QoS)",
        ]
        : [
          true,
          "a client id or user name holding + or # never matches an ACL pattern",
          "false is not honoured: a client id or user name holding + or # never matches an ACL pattern",
        ];
      if (v !== honoured) return unsupported(r.global, why);
      skip(r.global, what, "as Midge does");
      return;
    }
    case "set_tcp_nodelay": {
      const v = value(r, where, name, rest, "bool");
      if (v === false) {
        return unsupported(
          r.global,
          "Midge always sets TCP_NODELAY and writes each batch of packets at once",
        );
      }
      skip(r.global, "TCP_NODELAY is always set", "as Midge does");
      return;
    }
    case "persistence_file": {
      const v = value(r, where, name, rest, "string");
      if (v === undefined) return;
      r.notes.push({
        ...where,
        message:
          `persistence_file ${v}: Midge keeps its own database (SQLite), midge.db in persistence_location; \`midge import-mosquitto ${v}\` copies Mosquitto's data into it`,
      });
      skip(r.global, "Midge's database is midge.db in persistence_location");
      return;
    }
    case "log_dest": {
      const words = rest.trim().split(/\s+/);
      const kind = words[0];
      to(r.global);
      if (!kind) return r.error(where, "log_dest: empty value");
      if (kind === "file") {
        const path = rest.trim().slice(4).trim();
        if (!path) return r.error(where, 'log_dest: empty "log_dest file" value');
        const list = (r.global.values.get("log_dest") as string[] | undefined) ?? [];
        r.global.set(
          "log_dest",
          [...list.filter((x) => x !== "none"), `file ${path}`],
          where,
          item,
        );
      } else if (kind === "none") {
        r.global.set("log_dest", ["none"], where, item);
      } else if (["stdout", "stderr", "topic"].includes(kind)) {
        const list = (r.global.values.get("log_dest") as string[] | undefined) ?? [];
        r.global.set("log_dest", [...list.filter((x) => x !== "none"), kind], where, item);
      } else if (kind === "syslog" || kind === "dlt") {
        r.warn(where, `log_dest ${kind}: not supported; use stderr (journald collects it) or file`);
      } else {
        r.error(where, `log_dest: invalid value ${JSON.stringify(kind)}`);
      }
      return;
    }
    case "log_type": {
      const v = value(r, where, name, rest, "word") as string | undefined;
      to(r.global);
      if (v === undefined) return;
      if (v === "internal") return;
      const t = check(r, where, name, GLOBAL_KEYS, "log_type", v) as string[] | undefined;
      // As in Mosquitto, "none" clears the types given before it.
      if (t?.[0] === "none") r.global.set("log_type", ["none"], where, item);
      else if (t !== undefined) {
        const list = (r.global.values.get("log_type") as string[] | undefined) ?? [];
        r.global.set("log_type", [...list.filter((x) => x !== "none"), t[0]], where, item);
      }
      return;
    }
    case "per_listener_settings": {
      const v = value(r, where, name, rest, "bool");
      to(r.global);
      if (v === undefined) return;
      if (v && r.securitySeen) {
        return r.error(
          where,
          "per_listener_settings must be set before any other security setting",
        );
      }
      r.perListener = v as boolean;
      r.global.set("per_listener_settings", v, where, item);
      return;
    }
    case "include_dir": {
      const dir = rest.trim();
      if (!dir) return r.error(where, "include_dir: empty value");
      if (level > 0) {
        skip(r.global, "include_dir is read in the main file only (as Mosquitto does)");
        return;
      }
      let names: string[];
      try {
        names = readdirSync(dir).filter((n) => n.endsWith(".conf")).sort();
      } catch (e) {
        return r.error(
          where,
          `include_dir: cannot read ${dir}: ${(e as { code?: string }).code ?? e}`,
        );
      }
      skip(r.global, "its *.conf files follow, in name order", "included");
      for (const n of names) {
        const path = join(dir, n);
        let text: string;
        try {
          text = readFileSync(path, "utf8");
        } catch (e) {
          r.error(where, `include_dir: cannot read ${path}: ${(e as { code?: string }).code ?? e}`);
          continue;
        }
        readInto(r, path, text, level + 1);
      }
      return;
    }
    case "connection": {
      const n = rest.trim();
      if (!n) return r.error(where, "connection: empty value");
      const b = new Section("[[bridge]]");
      if (r.bridges.some((o) => o.values.get("name") === n)) {
        r.error(where, `connection: duplicate bridge name ${JSON.stringify(n)}`);
      }
      r.bridges.push(b);
      r.bridge = b;
      to(b);
      b.set("name", n, where, item);
      return;
    }
    case "address":
    case "addresses": {
      if (!r.bridge) return r.error(where, `${name}: only in a bridge (after "connection")`);
      const words = rest.trim().split(/\s+/).filter((w) => w !== "");
      if (words.length === 0) return r.error(where, `${name}: empty value`);
      to(r.bridge);
      for (const w of words) r.bridge.push("addresses", w, where, item);
      return;
    }
    case "topic": {
      if (!r.bridge) return r.error(where, `topic: only in a bridge (after "connection")`);
      const t = check(r, where, name, BRIDGE_KEYS, "topic", rest.trim()) as string[] | undefined;
      to(r.bridge);
      if (t !== undefined) r.bridge.push("topic", t[0], where, item);
      return;
    }
    // Security options: global, or the current listener's with per_listener_settings.
    case "password_file":
    case "acl_file": {
      r.securitySeen = true;
      const s = r.perListener ? r.cur.section : r.global;
      const v = check(r, where, name, GLOBAL_KEYS, name, value(r, where, name, rest, "string"));
      to(s);
      if (v !== undefined) s.set(name, v, where, item);
      return;
    }
    case "allow_anonymous": {
      r.securitySeen = true;
      const v = value(r, where, name, rest, "bool") as boolean | undefined;
      if (r.perListener) {
        to(r.cur.section);
        r.cur.anonymous = v;
        r.cur.anonymousAt = where;
        if (v !== undefined) r.cur.section.set("allow_anonymous", v, where, item);
      } else {
        to(r.global);
        r.globalAnonymous = v;
        if (v !== undefined) r.global.set("allow_anonymous", v, where, item);
      }
      return;
    }
    case "allow_zero_length_clientid":
    case "auto_id_prefix": {
      r.securitySeen = true;
      const kind: Kind = name === "auto_id_prefix" ? "string" : "bool";
      const v = check(r, where, name, GLOBAL_KEYS, name, value(r, where, name, rest, kind));
      to(r.global);
      if (v === undefined) return;
      if (r.perListener && r.global.has(name) && r.global.values.get(name) !== v) {
        r.warn(
          where,
          `${name}: Midge has one ${name} for all listeners; this one applies to every one`,
        );
      }
      r.global.set(name, v, where, item);
      return;
    }
    case "plugin":
    case "auth_plugin":
    case "global_plugin": {
      r.securitySeen = true;
      const path = rest.trim();
      if (!path) return r.error(where, `${name}: empty value`);
      if (DYNSEC.test(path)) {
        r.plugin = { kind: "dynsec", where };
        r.plugins.push(r.plugin);
        item.comments.push(`# ${original.trim()}    (Midge's built-in dynamic security)`);
        to(r.global);
        if (r.perListener) {
          r.error(
            where,
            `${name}: Midge's dynamic security applies to every listener; it is not available with per_listener_settings true`,
          );
        }
        return;
      }
      r.plugin = { kind: "other", where };
      return unsupported(
        r.global,
        `the C plugin ${basename(path)} cannot be loaded (Midge has dynamic security built in)`,
      );
    }
    case "plugin_load":
    case "plugin_use":
      return unsupported(r.global, "named plugins (Mosquitto 2.1) are not supported");
  }
  if (name.startsWith("plugin_opt_") || name.startsWith("auth_opt_")) {
    const opt = name.replace(/^(plugin|auth)_opt_/, "");
    if (!r.plugin) return r.error(where, `${name}: no plugin before it`);
    if (r.plugin.kind === "other") {
      skip(r.global, "its plugin is not loaded");
      return;
    }
    if (opt === "config_file") {
      const v = rest.trim();
      if (!v) return r.error(where, `${name}: empty value`);
      r.plugin.configFile = v;
      to(r.global);
      r.global.src.set("plugins", where);
      item.keys.push("plugins");
      return;
    }
    return unsupported(r.global, `dynamic security option ${opt} is not supported`);
  }
  if (Object.hasOwn(BRIDGE_SIMPLE, name) || Object.hasOwn(BRIDGE_UNSUPPORTED, name)) {
    return r.error(where, `${name}: only in a bridge (after "connection")`);
  }
  r.error(where, `unknown configuration option ${JSON.stringify(name)}`);
}

/** Whether the default listener (options before any `listener`) exists, as Mosquitto decides. */
function defaultListenerUsed(r: Reader): boolean {
  const s = r.defaultListener.section;
  const keys = [...s.values.keys()].filter((k) => k !== "allow_anonymous");
  return keys.length > 0;
}

/** Renders a value as TOML. */
function toml(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
  if (Array.isArray(v)) return `[${v.map(toml).join(", ")}]`;
  if (v && typeof v === "object") {
    return `{ ${Object.entries(v).map(([k, x]) => `${k} = ${toml(x)}`).join(", ")} }`;
  }
  return JSON.stringify(String(v));
}

/** Emits one section: comments, `key = value` at each key's first line, notes. */
function emit(s: Section, out: string[], prefix: string, sources: Map<string, Where>): void {
  const done = new Set<string>();
  s.items.forEach((item, i) => {
    out.push(...item.comments);
    if (i === 0 && s.header) out.push(s.header);
    if (item.note) out.push(item.note);
    for (const k of item.keys) {
      if (done.has(k) || !s.values.has(k)) continue;
      done.add(k);
      out.push(`${k} = ${toml(s.values.get(k))}`);
    }
  });
  if (s.items.length === 0 && s.header) out.push(s.header);
  for (const [k, v] of s.values) {
    if (!done.has(k) && k !== "socket_domain") out.push(`${k} = ${toml(v)}`);
  }
  for (const [k, w] of s.src) sources.set(prefix + k, w);
}

/**
 * Translates the text of a mosquitto.conf (`file` names it; include_dir paths are read from
 * disk) into Midge TOML with Mosquitto's defaults for everything it leaves out.
 */
export function translateMosquittoConf(text: string, file: string): Translation {
  const r = new Reader();
  readInto(r, file, text, 0);
  r.trailing = r.pending.filter((c) => c !== "");
  const g = r.global;
  const fileWhere = { file, line: 0 };

  // Plugins: dynamic security with its config file.
  const plugins = [];
  for (const p of r.plugins) {
    if (!p.configFile) {
      r.error(p.where, "dynamic security needs plugin_opt_config_file (its dynamic-security.json)");
    } else plugins.push({ name: "dynamic-security", config_file: p.configFile });
  }
  if (plugins.length > 1) r.error(r.plugins[1].where, "dynamic security is loaded twice");
  if (plugins.length > 0) g.values.set("plugins", plugins);

  // Listeners: those of the file, then the default listener (port/bind_address and listener
  // options given before any `listener`), or with neither Mosquitto 2.0's local-only mode.
  const listeners = [...r.listeners];
  if (r.localOnly) {
    const local: ListenerState = { section: new Section("[[listener]]") };
    local.section.items.push({
      comments: [
        "# No listener in the Mosquitto file: Mosquitto 2.0's local only mode, anonymous clients",
        "# accepted from this machine only.",
      ],
      keys: ["port", "bind_address", "allow_anonymous"],
    });
    local.section.values.set("port", 1883);
    local.section.values.set("bind_address", "127.0.0.1");
    local.section.values.set("allow_anonymous", true);
    listeners.splice(0, listeners.length, local);
    r.notes.push({
      ...fileWhere,
      message:
        "no listener defined: local only mode (127.0.0.1:1883, as Mosquitto 2.0); define a listener to allow remote access",
    });
  } else if (defaultListenerUsed(r)) {
    const d = r.defaultListener;
    if (!d.section.values.has("port")) d.section.values.set("port", 1883);
    listeners.push(d);
  }
  for (const l of listeners) {
    const s = l.section;
    if (!s.values.has("bind_address") && !s.values.has("unix_socket")) {
      const domain = s.values.get("socket_domain");
      s.values.set("bind_address", domain === "ipv6" ? "::" : "0.0.0.0");
      if (domain === undefined && s.values.get("port") !== 0) {
        s.items.push({
          comments: ['# Mosquitto: every interface (IPv4 here; socket_domain ipv6 gives "::")'],
          keys: ["bind_address"],
        });
      }
    }
    s.mosquittoDefault("websockets_path", "*");
    if (r.perListener && !r.localOnly) {
      s.mosquittoDefault("allow_anonymous", l.anonymous ?? false);
    }
  }

  // Mosquitto's defaults where they differ from Midge's.
  const anonymous = r.localOnly ? true : (r.globalAnonymous ?? false);
  if (!g.has("allow_anonymous")) {
    g.values.set("allow_anonymous", anonymous);
    g.items.push({
      comments: r.localOnly
        ? ["# Mosquitto 2.0 without a listener: anonymous clients on the local listener"]
        : ["# Mosquitto's default"],
      keys: ["allow_anonymous"],
    });
  } else if (r.localOnly) g.values.set("allow_anonymous", true);
  g.mosquittoDefault("persistence", false);
  g.mosquittoDefault("persistence_location", ".");
  g.mosquittoDefault("max_packet_size", 268435460);
  g.mosquittoDefault("max_subscriptions_per_client", 0);
  g.mosquittoDefault("user", "mosquitto");
  listeners.forEach((l) => {
    const s = l.section;
    const open = s.values.get("bind_address") !== "127.0.0.1" &&
      s.values.get("bind_address") !== "::1" && !s.values.has("unix_socket");
    const anon = r.perListener ? s.values.get("allow_anonymous") : g.values.get("allow_anonymous");
    if (open && anon === true && !r.localOnly) {
      r.notes.push({
        ...(s.src.get("port") ?? fileWhere),
        message: `allow_anonymous true on a listener open to the network (port ${
          s.values.get("port")
        }): anyone who can reach it may connect; a password_file is recommended`,
      });
    }
  });

  // check_retain_source is true by default in Mosquitto; it matters only with ACLs.
  const acl = g.has("acl_file") || listeners.some((l) => l.section.has("acl_file"));
  if (acl && r.checkRetainSource === undefined) {
    r.warn(fileWhere, `check_retain_source (Mosquitto's default true): ${CHECK_RETAIN_SOURCE}`);
  }

  // Recommendations where a Mosquitto default is unsafe (the meaning stays Mosquitto's).
  if (g.values.get("max_packet_size") === 268435460) {
    r.notes.push({
      ...fileWhere,
      message:
        "no max_packet_size (Mosquitto 2.0's default): one client may make the broker hold a 256 MB packet; max_packet_size 2000000 is recommended",
    });
  }
  if (g.values.get("persistence") === true) {
    r.notes.push({
      ...(g.src.get("persistence") ?? fileWhere),
      message: `persistence: Midge keeps its own database, midge.db in ${
        g.values.get("persistence_location")
      }; \`midge import-mosquitto\` copies a mosquitto.db into it`,
    });
  }
  if (g.values.get("persistence") === false) {
    r.notes.push({
      ...fileWhere,
      message:
        "persistence is off (Mosquitto's default): retained messages and persistent sessions are lost on restart; persistence true keeps them",
    });
  }

  // Output: top-level keys, then listeners, then bridges; comments where they were.
  const out: string[] = [
    "# Midge configuration converted from Mosquitto's",
    `# ${file}`,
    "# Options that file left out have Mosquitto's defaults here, so the meaning is the same.",
    "",
  ];
  const sources = new Map<string, Where>();
  emit(g, out, "", sources);
  if (r.plugins.length > 0) sources.set("plugins", r.plugins[0].where);
  listeners.forEach((l, i) => {
    out.push("");
    emit(l.section, out, `listener[${i}].`, sources);
    if (l.anonymousAt) sources.set(`listener[${i}].allow_anonymous`, l.anonymousAt);
  });
  r.bridges.forEach((b, i) => {
    out.push("");
    emit(b, out, `bridge[${i}].`, sources);
  });
  if (r.trailing.length > 0) out.push("", ...r.trailing);
  // Sections hold only their own keys: top-level keys never appear after a table header.
  return {
    toml: out.join("\n").replace(/\n{3,}/g, "\n\n") + "\n",
    errors: r.errors,
    warnings: r.warnings,
    notes: r.notes,
    sources,
  };
}

/** `file:line: message` (or `file: message` without a line). */
export function formatMessage(m: ConfMessage): string {
  return m.line > 0 ? `${m.file}:${m.line}: ${m.message}` : `${m.file}: ${m.message}`;
}

/** The Mosquitto line a TOML key came from ("listener[1].certfile" → its `certfile` line). */
function sourceOf(t: Translation, key: string, file: string): Where {
  for (let k = key; k;) {
    const where = t.sources.get(k);
    if (where) return where;
    const parent = k.replace(/(?:\[\d+\]|\.[^.[\]]*)$/, "");
    if (parent === k) break;
    k = parent;
  }
  return { file, line: 0 };
}

/** Translations of configurations read from Mosquitto files: their warnings and notes. */
const translations = new WeakMap<object, Translation>();

/**
 * What the loader logs after reading a Mosquitto file: warnings (options not honoured) and
 * notes (recommendations), each as `file:line: text`. Empty for a TOML configuration.
 */
export function conversionMessages(config: object): { warnings: string[]; notes: string[] } {
  const t = translations.get(config);
  return {
    warnings: t?.warnings.map(formatMessage) ?? [],
    notes: t?.notes.map(formatMessage) ?? [],
  };
}

/**
 * For a configuration read from a Mosquitto file: the file and line the TOML key `key`
 * ("listener[1].password_file") came from; undefined for a TOML configuration.
 */
export function mosquittoSource(config: object, key: string): Where | undefined {
  const t = translations.get(config);
  if (!t) return undefined;
  const where = sourceOf(t, key, "");
  return where.file ? where : undefined;
}

/** The problems of a TOML check, as the loader's ConfigError carries them. */
interface KeyedError {
  key: string;
  problem: string;
  problems?: { key: string; problem: string }[];
}

/**
 * Reads a mosquitto.conf into a configuration: translates it, then checks the translation with
 * `parse` (the TOML loader). Malformed lines are all reported at once through `fail`, each with
 * its file and line; a problem the TOML check finds is reported at the Mosquitto line it came
 * from.
 */
export function readMosquittoConf<C extends object>(
  text: string,
  file: string,
  parse: (toml: string, file: string) => C,
  fail: (messages: ConfMessage[]) => Error,
): C {
  const t = translateMosquittoConf(text, file);
  if (t.errors.length > 0) throw fail(t.errors);
  let config: C;
  try {
    config = parse(t.toml, file);
  } catch (e) {
    const k = e as Partial<KeyedError>;
    if (typeof k.key !== "string" || typeof k.problem !== "string") throw e;
    const all = k.problems ?? [{ key: k.key, problem: k.problem }];
    throw fail(
      all.map((p) => ({ ...sourceOf(t, p.key, file), message: `${p.key}: ${p.problem}` })),
    );
  }
  translations.set(config, t);
  return config;
}
