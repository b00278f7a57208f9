/**
 * The configuration schema: one declarative table per section (top level and [[listener]]),
 * one entry per key with its value type (which carries the range), default and a short doc.
 * Adding a key is one entry here plus its documented line in config.toml (a test checks that
 * both agree). The `Config` and `ListenerConfig` types are derived from these tables.
 */
import { isIP } from "node:net";

/** A problem with one value. The loader adds file, line and key; `at` extends the key ("[2]"). */
export class Problem extends Error {
  at: string;
  constructor(message: string, at = "") {
    super(message);
    this.at = at;
  }
}

/** How one value is checked and converted. `expected` completes "expected …, got …". */
export interface ValueType<T> {
  expected: string;
  /** Returns the converted value or throws a `Problem`. TOML integers arrive as bigint. */
  read(value: unknown): T;
}

/** One key: type (with its range), default and a one-line description. */
export interface Entry<T> {
  type: ValueType<T>;
  default: T;
  doc: string;
}

/** The values a schema table describes. */
export type Values<S> = { -readonly [K in keyof S]: S[K] extends Entry<infer T> ? T : never };

/** Renders a TOML value for an error message: strings quoted, floats with a point, tables by kind. */
export function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint" || typeof value === "boolean") return String(value);
  if (typeof value === "number") {
    if (Number.isNaN(value)) return "nan";
    if (!Number.isFinite(value)) return value > 0 ? "inf" : "-inf";
    return Number.isInteger(value) ? value.toFixed(1) : String(value);
  }
  if (value instanceof Date) return "a date-time";
  if (Array.isArray(value)) return "an array";
  return "a table";
}

function mismatch(expected: string, value: unknown): Problem {
  return new Problem(`expected ${expected}, got ${show(value)}`);
}

/** A TOML integer within [min, max] (floats such as 1.0 are refused). */
export function int(min: number, max: number): ValueType<number> {
  const expected = max === Number.MAX_SAFE_INTEGER
    ? `an integer >= ${min}`
    : `an integer ${min}-${max}`;
  return {
    expected,
    read(v) {
      if (typeof v !== "bigint" || v < BigInt(min) || v > BigInt(max)) throw mismatch(expected, v);
      return Number(v);
    },
  };
}

/** -1 (no limit) or an integer 1-max, like Mosquitto's connection limits. */
export function limit(max: number): ValueType<number> {
  const expected = `-1 (no limit) or an integer 1-${max}`;
  return {
    expected,
    read(v) {
      if (v === -1n) return -1;
      if (typeof v !== "bigint" || v < 1n || v > BigInt(max)) throw mismatch(expected, v);
      return Number(v);
    },
  };
}

export function bool(): ValueType<boolean> {
  const expected = "true or false";
  return {
    expected,
    read(v) {
      if (typeof v !== "boolean") throw mismatch(expected, v);
      return v;
    },
  };
}

/** A string of at most `max` characters; `check` returns a problem text or undefined. */
export function str(max: number, check?: (s: string) => string | undefined): ValueType<string> {
  const expected = `a string of at most ${max} characters`;
  return {
    expected,
    read(v) {
      if (typeof v !== "string" || v.length > max) throw mismatch(expected, v);
      const problem = check?.(v);
      if (problem) throw new Problem(problem);
      return v;
    },
  };
}

/**
 * One of a fixed set of strings. `later` names values that are known but not available yet,
 * each with the problem to report.
 */
export function oneOf<const T extends readonly string[]>(
  values: T,
  later: Record<string, string> = {},
): ValueType<T[number]> {
  const expected = values.length === 1
    ? JSON.stringify(values[0])
    : `one of ${values.map((x) => JSON.stringify(x)).join(", ")}`;
  return {
    expected,
    read(v) {
      if (typeof v === "string" && Object.hasOwn(later, v)) throw new Problem(later[v]);
      if (typeof v !== "string" || !values.includes(v)) throw mismatch(expected, v);
      return v;
    },
  };
}

/** An array of `item`; a single item is accepted as an array of one. */
export function list<T>(item: ValueType<T>): ValueType<T[]> {
  const expected = `${item.expected}, or an array of them`;
  return {
    expected,
    read(v) {
      if (!Array.isArray(v)) {
        try {
          return [item.read(v)];
        } catch {
          throw mismatch(expected, v);
        }
      }
      return v.map((x, i) => {
        try {
          return item.read(x);
        } catch (e) {
          if (e instanceof Problem) throw new Problem(e.message, `[${i}]${e.at}`);
          throw e;
        }
      });
    },
  };
}

const UNIT_SECONDS: Record<string, number> = {
  s: 1,
  h: 3600,
  d: 86400,
  w: 7 * 86400,
  m: 30 * 86400,
  y: 365 * 86400,
};

/**
 * A duration in seconds: a TOML integer, or Mosquitto's "<n>[s h d w m y]" string
 * (m = 30 days, y = 365 days). A string without unit counts seconds.
 */
export function duration(max: number): ValueType<number> {
  const expected = `a number of seconds 0-${max} or a string "<n><unit>" (unit s, h, d, w, m, y)`;
  return {
    expected,
    read(v) {
      let seconds: number;
      if (typeof v === "bigint") seconds = Number(v);
      else if (typeof v === "string") {
        const m = /^\s*(\d+)\s*([shdwmy]?)\s*$/.exec(v);
        if (!m) throw mismatch(expected, v);
        seconds = Number(m[1]) * (UNIT_SECONDS[m[2]] ?? 1);
      } else throw mismatch(expected, v);
      if (!(seconds >= 0 && seconds <= max)) throw mismatch(expected, v);
      return seconds;
    },
  };
}

const LOG_TYPES = [
  "debug",
  "error",
  "warning",
  "notice",
  "information",
  "subscribe",
  "unsubscribe",
  "websockets",
  "none",
  "all",
] as const;

/** A log destination: "stdout", "stderr", "topic", "none" or "file <path>". */
function logDest(): ValueType<string> {
  const expected = `one of "stdout", "stderr", "topic", "none", "file <path>"`;
  return {
    expected,
    read(v) {
      if (typeof v !== "string") throw mismatch(expected, v);
      const s = v.trim();
      if (["stdout", "stderr", "topic", "none"].includes(s)) return s;
      const file = /^file\s+(\S.*)$/.exec(s);
      if (file) return `file ${file[1]}`;
      throw mismatch(expected, v);
    },
  };
}

/**
 * Splits "host:port" or "[ipv6]:port" (port 0-65535); null when malformed. Used for
 * `http_listener`.
 */
export function splitHostPort(s: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(s);
  if (!m || Number(m[3]) > 65535) return null;
  const host = m[1] ?? m[2];
  if (m[1] !== undefined ? isIP(host) !== 6 : checkAddress(host) !== undefined) return null;
  return { host, port: Number(m[3]) };
}

/** `http_listener`: "" (off) or "host:port". */
function checkHostPort(s: string): string | undefined {
  if (s === "" || splitHostPort(s)) return undefined;
  return `expected "" or "<address>:<port>" such as "127.0.0.1:9883" or "[::1]:9883", got ${
    JSON.stringify(s)
  }`;
}

/** `admin_token`: "" (API off) or at least 16 characters without spaces (sent as a Bearer token). */
function checkToken(s: string): string | undefined {
  if (s === "") return undefined;
  if (!/^[\x21-\x7e]+$/.test(s)) return "the admin token must be printable ASCII without spaces";
  if (s.length < 16) return `the admin token must have at least 16 characters, got ${s.length}`;
  return undefined;
}

/** Host names and IP literals; the listener fails at bind time if the name does not resolve. */
function checkAddress(s: string): string | undefined {
  if (isIP(s) !== 0) return undefined;
  if (
    /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/
      .test(s)
  ) {
    return undefined;
  }
  return `expected an IP address or host name, got ${JSON.stringify(s)}`;
}

/**
 * `allow_anonymous`: true, false, "localhost" (only on listeners bound to a loopback address) and,
 * for a listener, "global" (use the top-level value).
 */
function anonymous<const T extends readonly string[]>(words: T): ValueType<boolean | T[number]> {
  const expected = `true, false or ${words.map((w) => JSON.stringify(w)).join(" or ")}`;
  return {
    expected,
    read(v) {
      if (typeof v === "boolean") return v;
      if (typeof v === "string" && words.includes(v)) return v as T[number];
      throw mismatch(expected, v);
    },
  };
}

/**
 * A mount point prefixes topics, so it follows PUBLISH topic rules: no wildcards
 * [MQTT-4.7.1-1 v3.1.1][MQTT-4.7.0-1 v5].
 */
function checkMountPoint(s: string): string | undefined {
  if (s.includes("+") || s.includes("#") || s.includes("\0")) {
    return `a mount point must not contain +, # or NUL, got ${JSON.stringify(s)}`;
  }
  return undefined;
}

/** A WebSocket path: "/" followed by URL path characters, or "*" for any path. */
function checkWsPath(s: string): string | undefined {
  if (s === "*" || /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$/.test(s)) return undefined;
  return `expected a path starting with "/" (or "*" for any path), got ${JSON.stringify(s)}`;
}

/** `enable_proxy_protocol`: false, 1 or 2 (that version only), or true (either). */
function proxyVersions(): ValueType<boolean | 1 | 2> {
  const expected = "false, true (v1 or v2), 1 or 2";
  return {
    expected,
    read(v) {
      if (typeof v === "boolean") return v;
      if (v === 1n) return 1;
      if (v === 2n) return 2;
      throw mismatch(expected, v);
    },
  };
}

/** The links an `auth_chain` can name (src/auth/links.ts makes them). */
export const AUTH_LINKS = ["password_file", "acl_file", "jwt", "http"] as const;

/** `jwt_verify_claims` entries: `claim=value`, the value with ${clientid} / ${username}. */
function checkClaim(s: string): string | undefined {
  if (/^[^=\s]+=.*$/.test(s)) return undefined;
  return `expected "claim=value" such as "sub=\${clientid}", got ${JSON.stringify(s)}`;
}

/** `jwt_jwks_url`: "" or an https URL. */
function checkHttpsUrl(s: string): string | undefined {
  if (s === "") return undefined;
  try {
    if (new URL(s).protocol === "https:") return undefined;
  } catch {
    // reported below
  }
  return `expected "" or an https:// URL, got ${JSON.stringify(s)}`;
}

/** A URI path of the HTTP auth service: "" (not asked) or starting with "/". */
function checkUri(s: string): string | undefined {
  if (s === "" || /^\/[\x21-\x7e]*$/.test(s)) return undefined;
  return `expected "" or a path starting with "/", got ${JSON.stringify(s)}`;
}

function key<T>(type: ValueType<T>, dflt: T, doc: string): Entry<T> {
  return { type, default: dflt, doc };
}

const I32 = 2147483647;
const U32 = 4294967295;

/** Top-level keys (documented in full in config.toml). */
export const GLOBAL_KEYS = {
  max_inflight_messages: key(
    int(0, 65535),
    20,
    "QoS 1/2 messages in flight to one client; 0 = no limit (65535)",
  ),
  max_queued_messages: key(int(0, I32), 1000, "messages queued per client; 0 = no limit"),
  max_queued_bytes: key(int(0, Number.MAX_SAFE_INTEGER), 0, "bytes queued per client; 0 = none"),
  memory_limit: key(
    int(0, Number.MAX_SAFE_INTEGER),
    0,
    "process memory (resident) above which clients and messages are refused; 0 = none",
  ),
  max_inflight_bytes: key(
    int(0, Number.MAX_SAFE_INTEGER),
    0,
    "payload bytes in flight to one client; 0 = no limit",
  ),
  queue_qos0_messages: key(bool(), false, "queue QoS 0 for offline persistent sessions"),
  upgrade_outgoing_qos: key(bool(), false, "deliver at the subscription's QoS"),
  max_keepalive: key(int(0, 65535), 65535, "largest keep-alive, seconds; 0 = no limit"),
  max_packet_size: key(int(20, 268435460), 2000000, "largest packet a client may send, bytes"),
  message_size_limit: key(int(0, 268435455), 0, "largest PUBLISH payload, bytes; 0 = MQTT max"),
  max_qos: key(int(0, 2), 2, "highest QoS supported"),
  retain_available: key(bool(), true, "retained messages supported"),
  max_topic_alias: key(int(0, 65535), 10, "client-to-broker topic aliases accepted"),
  max_topic_alias_broker: key(int(0, 65535), 10, "broker-to-client topic aliases used"),
  max_subscriptions_per_client: key(int(0, I32), 10000, "subscriptions per client; 0 = no limit"),
  max_subscription_bytes_per_client: key(
    int(0, Number.MAX_SAFE_INTEGER),
    1048576,
    "bytes of topic filters one client may hold; 0 = no limit",
  ),
  connect_timeout: key(int(1, 3600), 10, "seconds to complete CONNECT"),
  max_connections: key(limit(I32), -1, "connected clients over all listeners; -1 = no limit"),
  global_max_clients: key(limit(I32), -1, "sessions, offline ones included; -1 = no limit"),
  server_reference: key(str(1024), "", "Server Reference for v5 clients told to go at shutdown"),
  shutdown_grace: key(int(0, 60000), 1000, "ms clients have to leave at shutdown before closing"),
  allow_zero_length_clientid: key(bool(), true, "accept an empty client id and assign one"),
  auto_id_prefix: key(str(256), "auto-", "prefix of assigned client ids"),
  persistent_client_expiration: key(duration(U32), 0, "offline session lifetime; 0 = never"),
  persistence: key(bool(), true, "keep retained messages and sessions on disk"),
  persistence_location: key(str(4096), "data", "directory of the persistence database"),
  persistence_file: key(str(255), "midge.db", "file name of the persistence database"),
  persistence_sync: key(oneOf(["full", "normal", "off"]), "full", "fsync each group commit"),
  allow_anonymous: key<boolean | "localhost">(
    anonymous(["localhost"]),
    "localhost",
    "accept clients without a user name",
  ),
  password_file: key(str(4096), "", 'Mosquitto password file; "" = none'),
  acl_file: key(str(4096), "", 'Mosquitto ACL file; "" = no topic restrictions'),
  auth_chain: key<string[]>(
    list(oneOf(AUTH_LINKS)),
    ["password_file", "acl_file"],
    "authenticators and authorizers, asked in this order",
  ),
  auth_no_match: key(oneOf(["deny", "allow"]), "deny", "when every authorizer says next"),
  jwt_from: key(oneOf(["password", "username"]), "password", "CONNECT field holding the token"),
  jwt_secret: key(str(4096), "", 'HMAC secret for HS256/384/512; "" = none'),
  jwt_secret_base64: key(bool(), false, "jwt_secret is base64"),
  jwt_public_key_file: key(str(4096), "", 'PEM public key or certificate; "" = none'),
  jwt_jwks_file: key(str(4096), "", 'JWKS file; "" = none'),
  jwt_jwks_url: key(str(4096, checkHttpsUrl), "", 'JWKS https URL; "" = none'),
  jwt_jwks_refresh: key(int(1, 86400), 300, "seconds between JWKS refreshes"),
  jwt_cafile: key(str(4096), "", 'PEM CA for jwt_jwks_url; "" = system CAs'),
  jwt_issuer: key(str(4096), "", 'required "iss"; "" = any'),
  jwt_audience: key(str(4096), "", 'required in "aud"; "" = any'),
  jwt_clock_skew: key(int(0, 3600), 30, "seconds of clock skew allowed for exp/nbf/iat"),
  jwt_require_exp: key(bool(), true, 'tokens must carry "exp"'),
  jwt_verify_claims: key<string[]>(list(str(4096, checkClaim)), [], "claims that must equal"),
  jwt_acl_claim: key(str(256), "acl", 'claim holding EMQX-style permissions; "" = none'),
  auth_opt_http_host: key(str(253), "127.0.0.1", "HTTP auth service host"),
  auth_opt_http_port: key(int(1, 65535), 80, "HTTP auth service port"),
  auth_opt_http_with_tls: key(bool(), false, "HTTPS to the auth service"),
  auth_opt_http_cafile: key(str(4096), "", 'PEM CA for the auth service; "" = system CAs'),
  auth_opt_http_getuser_uri: key(str(2048, checkUri), "/auth", 'login check path; "" = not asked'),
  auth_opt_http_superuser_uri: key(str(2048, checkUri), "", 'superuser path; "" = not asked'),
  auth_opt_http_aclcheck_uri: key(str(2048, checkUri), "/acl", 'ACL check path; "" = not asked'),
  auth_opt_http_params_mode: key(oneOf(["json", "form"]), "json", "request body format"),
  auth_opt_http_response_mode: key(oneOf(["status", "json", "text"]), "status", "answer format"),
  auth_opt_http_timeout: key(int(1, 300), 5, "seconds before a request counts as failed"),
  auth_opt_http_max_sockets: key(int(1, 1024), 16, "connections kept to the service"),
  auth_opt_http_cache_seconds: key(int(0, 86400), 30, "answers remembered; 0 = none"),
  auth_opt_http_cache_size: key(int(0, 10_000_000), 10000, "answers remembered at most"),
  auth_opt_http_on_error: key(
    oneOf(["deny", "allow", "next"]),
    "deny",
    "when the service cannot answer",
  ),
  sys_interval: key(int(0, 86400), 10, "seconds between $SYS updates; 0 = off"),
  log_type: key<string[]>(list(oneOf(LOG_TYPES)), [
    "error",
    "warning",
    "notice",
    "information",
  ], "kinds of log message written"),
  log_dest: key<string[]>(list(logDest()), ["stderr"], "where log lines go"),
  log_timestamp: key(bool(), true, "timestamp each log line"),
  connection_messages: key(bool(), true, "log connects and disconnects"),
  log_format: key(oneOf(["text", "json"]), "text", "log line format: Mosquitto's text or JSON"),
  http_listener: key(str(300, checkHostPort), "", 'metrics and admin API address; "" = off'),
  admin_token: key(str(4096, checkToken), "", 'bearer token of the admin API; "" = API off'),
  http_certfile: key(
    str(4096),
    "",
    'PEM certificate (and chain) of http_listener; "" = plain HTTP',
  ),
  http_keyfile: key(str(4096), "", "PEM private key of http_certfile"),
  per_listener_settings: key(
    bool(),
    false,
    "each listener uses its own password_file, acl_file and allow_anonymous",
  ),
  pid_file: key(str(4096), "", 'file the process id is written to; "" = none'),
  user: key(str(256), "", 'user to switch to after binding, when started as root; "" = stay'),
  log_timestamp_format: key(str(256), "", 'strftime format of log timestamps; "" = unix seconds'),
  clientid_prefixes: key(str(65535), "", 'only client ids starting with this connect; "" = any'),
};

/** Keys of a [[listener]] table. */
export const LISTENER_KEYS = {
  port: key(int(0, 65535), 1883, "TCP port; 0 = chosen by the OS"),
  bind_address: key(str(253, checkAddress), "127.0.0.1", "address to listen on"),
  protocol: key(oneOf(["mqtt", "websockets"]), "mqtt", "protocol spoken on the listener"),
  unix_socket: key(str(107), "", 'Unix socket path to listen on instead of TCP; "" = TCP'),
  max_connections: key(limit(I32), -1, "connected clients on this listener; -1 = no limit"),
  mount_point: key(str(65535, checkMountPoint), "", "topic prefix isolating this listener"),
  websockets_path: key(str(2048, checkWsPath), "/mqtt", "HTTP path of the WebSocket endpoint"),
  websockets_origin: key<string[]>(list(str(2048)), [], "allowed Origin headers; [] = any"),
  enable_proxy_protocol: key(proxyVersions(), false, "expect a PROXY protocol v1/v2 header"),
  certfile: key(str(4096), "", "PEM server certificate (and chain); enables TLS"),
  keyfile: key(str(4096), "", "PEM private key of certfile"),
  cafile: key(str(4096), "", "PEM CA certificates client certificates must chain to"),
  crlfile: key(str(4096), "", "PEM certificate revocation list for client certificates"),
  require_certificate: key(bool(), false, "clients must present a valid certificate"),
  use_identity_as_username: key(bool(), false, "client certificate CN is the user name"),
  use_subject_as_username: key(bool(), false, "client certificate subject is the user name"),
  ciphers: key(str(4096), "", 'OpenSSL cipher list for TLS 1.2; "" = default'),
  tls_version: key(
    oneOf(["tlsv1.2", "tlsv1.3"], {
      "tlsv1.1": `TLS 1.1 is not supported (obsolete since RFC 8996); use "tlsv1.2" or "tlsv1.3"`,
      "tlsv1": `TLS 1.0 is not supported (obsolete since RFC 8996); use "tlsv1.2" or "tlsv1.3"`,
    }),
    "tlsv1.2",
    "lowest TLS version accepted",
  ),
  allow_anonymous: key<boolean | "localhost" | "global">(
    anonymous(["localhost", "global"]),
    "global",
    "accept clients without a user name here",
  ),
  password_file: key(str(4096), "", "this listener's password file (per_listener_settings)"),
  acl_file: key(str(4096), "", "this listener's ACL file (per_listener_settings)"),
  use_username_as_clientid: key(bool(), false, "the user name replaces the client id"),
  http_dir: key(str(4096), "", 'websockets: directory served to plain HTTP GETs; "" = none'),
  auth_chain: key<string[]>(list(oneOf(AUTH_LINKS)), [], "this listener's chain; [] = global"),
};

/** A bridge topic line, Mosquitto's form: `pattern [in|out|both [qos [local-prefix remote-prefix]]]`. */
function bridgeTopic(): ValueType<string> {
  const base = str(65535);
  return {
    ...base,
    read(v: unknown): string {
      const t = base.read(v);
      const err = bridgeTopicProblem(t);
      if (err) throw new Problem(err);
      return t;
    },
  };
}

/** Why a bridge topic line is wrong, or undefined. */
export function bridgeTopicProblem(line: string): string | undefined {
  const parts = splitBridgeTopic(line);
  if (parts.length < 1 || parts.length > 5 || parts.length === 4) {
    return `expected "pattern [in|out|both [qos [local-prefix remote-prefix]]]", got ${show(line)}`;
  }
  if (parts[1] !== undefined && !["in", "out", "both"].includes(parts[1])) {
    return `direction must be in, out or both, got ${show(parts[1])}`;
  }
  if (parts[2] !== undefined && !/^[012]$/.test(parts[2])) {
    return `qos must be 0, 1 or 2, got ${show(parts[2])}`;
  }
  const bytes = (s: string | undefined) => new TextEncoder().encode(s ?? "").length;
  if (Math.max(bytes(parts[3]), bytes(parts[4])) + bytes(parts[0]) > 65535) {
    return "a prefix and the pattern together exceed 65535 bytes, the longest topic filter";
  }
  return undefined;
}

/** Splits a bridge topic line on spaces; `""` stands for an empty prefix (as in Mosquitto). */
export function splitBridgeTopic(line: string): string[] {
  return line.trim().split(/\s+/).filter((p) => p !== "").map((p) => (p === '""' ? "" : p));
}

/** Keys of a [[bridge]] table (Mosquitto's bridge options, same names). */
export const BRIDGE_KEYS = {
  name: key(str(256), "", "connection name (required)"),
  addresses: key<string[]>(
    list(str(512)),
    [],
    "remote brokers, host[:port] or URLs, tried in order",
  ),
  round_robin: key(bool(), false, "after a failure try the next address, not the first"),
  topic: key<string[]>(list(bridgeTopic()), [], "topic lines: pattern direction qos prefixes"),
  bridge_protocol_version: key(
    oneOf(["mqttv31", "mqttv311", "mqttv50"]),
    "mqttv311",
    "MQTT version",
  ),
  remote_clientid: key(str(65535), "", 'client id on the remote; "" = <name>.<hostname>'),
  local_clientid: key(str(65535), "", 'local session id; "" = local.<remote_clientid>'),
  remote_username: key(str(65535), "", "user name on the remote"),
  remote_password: key(str(65535), "", "password on the remote"),
  cleansession: key(bool(), false, "clean session on the remote (false keeps queued messages)"),
  keepalive_interval: key(int(5, 65535), 60, "keep-alive with the remote, seconds"),
  restart_timeout: key(str(64), "5 30", 'reconnect backoff "base cap" seconds, or "constant"'),
  notifications: key(bool(), true, "publish connection state 1/0 (retained)"),
  notification_topic: key(str(65535), "", '"" = $SYS/broker/connection/<remote_clientid>/state'),
  try_private: key(bool(), true, "tell the remote this is a bridge (loop prevention)"),
  bridge_cafile: key(str(4096), "", "CA file to verify the remote (enables TLS)"),
  bridge_certfile: key(str(4096), "", "client certificate for the remote"),
  bridge_keyfile: key(str(4096), "", "client key for the remote"),
  bridge_insecure: key(bool(), false, "do not verify the remote's host name"),
  start_type: key(oneOf(["automatic", "lazy", "once"]), "automatic", "when to connect"),
  threshold: key(int(1, I32), 10, "lazy: queued messages that start the connection"),
  idle_timeout: key(int(1, I32), 60, "lazy: seconds idle before disconnecting"),
  bridge_outgoing_retain: key(bool(), true, "keep the retain flag on outgoing messages"),
  bridge_max_packet_size: key(
    int(0, 268435460),
    0,
    "largest packet accepted from the remote; 0 = any",
  ),
};

/** Keys of the [cluster] table: this node's place in a cluster of Midge nodes over NATS. */
export const CLUSTER_KEYS = {
  node_id: key(str(64, checkNodeId), "", "this node's name, unique in the cluster (required)"),
  servers: key<string[]>(list(str(2048, checkNatsUrl)), [], "NATS server URLs (required)"),
  name: key(
    str(32, checkClusterName),
    "midge",
    "prefix of the cluster's subjects, streams, buckets",
  ),
  replicas: key(int(1, 5), 3, "JetStream replicas of the cluster's streams and buckets"),
  user: key(str(1024), "", "NATS user name"),
  password: key(str(1024), "", "NATS password"),
  token: key(str(4096), "", "NATS authentication token"),
  creds_file: key(str(4096), "", "NATS credentials file (JWT and NKey seed)"),
  tls_ca: key(str(4096), "", "PEM CA file that NATS servers' certificates chain to"),
  tls_cert: key(str(4096), "", "PEM client certificate for NATS"),
  tls_key: key(str(4096), "", "PEM private key of tls_cert"),
};

/** A node id: letters, digits, '-' and '_' (it becomes part of NATS subjects). */
function checkNodeId(s: string): string | undefined {
  return /^[A-Za-z0-9_-]*$/.test(s)
    ? undefined
    : `expected letters, digits, "-" or "_", got ${JSON.stringify(s)}`;
}

/** A cluster name: a NATS subject token and a stream name (letters, digits, '-', '_'). */
function checkClusterName(s: string): string | undefined {
  return /^[A-Za-z0-9_-]+$/.test(s)
    ? undefined
    : `expected letters, digits, "-" or "_", got ${JSON.stringify(s)}`;
}

/** A NATS URL: nats://, tls://, or host:port. */
function checkNatsUrl(s: string): string | undefined {
  return /^((nats|tls):\/\/)?[^\s/]+(:\d{1,5})?$/.test(s)
    ? undefined
    : `expected a NATS URL such as "nats://10.0.0.5:4222", got ${JSON.stringify(s)}`;
}

/** The [cluster] table. */
export type ClusterConfig = Values<typeof CLUSTER_KEYS>;

/** One bridge, as in a [[bridge]] table. */
export type BridgeConfig = Values<typeof BRIDGE_KEYS>;

/** Plugins built into Midge, by the name a [[plugins]] table gives. */
export const PLUGIN_NAMES = ["dynamic-security"] as const;

/** Keys of a [[plugins]] table: a built-in plugin and its options. */
export const PLUGIN_KEYS = {
  name: key<string>(oneOf(PLUGIN_NAMES), "", "which built-in plugin (required)"),
  config_file: key(str(4096), "", "the plugin's file (Mosquitto's plugin_opt_config_file)"),
};

/** One plugin, as in a [[plugins]] table. */
export type PluginConfig = Values<typeof PLUGIN_KEYS>;

/** A schema table: key name to entry. */
export type Schema = Record<string, Entry<unknown>>;

/** One listener, as in a [[listener]] table. */
export type ListenerConfig = Values<typeof LISTENER_KEYS>;

/** The whole configuration. `file` is the path it was read from, or "<default>". */
export interface Config extends Values<typeof GLOBAL_KEYS> {
  file: string;
  listeners: ListenerConfig[];
  bridges: BridgeConfig[];
  /** The [cluster] table, or null for a single node. */
  cluster: ClusterConfig | null;
  /** [[plugins]] tables; absent is the same as none. */
  plugins?: PluginConfig[];
}

/** The defaults of a schema table (arrays copied, so callers may change them). */
export function defaults<S extends Schema>(schema: S): Values<S> {
  const out: Record<string, unknown> = {};
  for (const [k, e] of Object.entries(schema)) {
    out[k] = Array.isArray(e.default) ? [...e.default] : e.default;
  }
  return out as Values<S>;
}

/**
 * Mosquitto options Midge does not have (yet), so that a migrated key gets a better message
 * than "unknown key". A key that gains an entry above simply stops being looked up here.
 */
export const MOSQUITTO_ONLY: ReadonlySet<string> = new Set([
  "include_dir",
  "retain_expiry_interval",
  "allow_duplicate_messages",
  "set_tcp_nodelay",
  "global_max_connections",
  "enable_control_api",
  "bind_interface",
  "socket_domain",
  "accept_protocol_versions",
  "listener_allow_anonymous",
  "proxy_protocol_v2_require_tls",
  "packet_buffer_size",
  "websockets_headers_size",
  "websockets_log_level",
  "autosave_interval",
  "autosave_on_changes",
  "log_facility",
  "allow_anonymous",
  "password_file",
  "acl_file",
  "psk_file",
  "plugin",
  "global_plugin",
  "auth_plugin_deny_special_chars",
  "check_retain_source",
  "capath",
  "dhparamfile",
  "psk_hint",
  "connection",
]);
