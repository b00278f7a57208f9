import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Config, ConfigError, loadConfig, parseConfig } from "../src/config/load.ts";
import { GLOBAL_KEYS, LISTENER_KEYS } from "../src/config/schema.ts";
import { keyLines } from "../src/config/lines.ts";
import { defaultConfigText } from "../src/config/default_config.generated.ts";

const root = new URL("..", import.meta.url);
const configToml = readFileSync(new URL("config.toml", root), "utf8");

/** The defaults as the design states them, written out independently of the schema. */
const EXPECTED: Omit<Config, "file"> = {
  listeners: [{
    port: 1883,
    bind_address: "127.0.0.1",
    protocol: "mqtt",
    unix_socket: "",
    max_connections: -1,
    mount_point: "",
    websockets_path: "/mqtt",
    websockets_origin: [],
    enable_proxy_protocol: false,
    certfile: "",
    keyfile: "",
    cafile: "",
    crlfile: "",
    require_certificate: false,
    use_identity_as_username: false,
    use_subject_as_username: false,
    ciphers: "",
    tls_version: "tlsv1.2",
    allow_anonymous: "global",
    password_file: "",
    acl_file: "",
    use_username_as_clientid: false,
    auth_chain: [],
    http_dir: "",
  }],
  bridges: [],
  cluster: null,
  plugins: [],
  max_inflight_messages: 20,
  max_queued_messages: 1000,
  max_queued_bytes: 0,
  max_inflight_bytes: 0,
  memory_limit: 0,
  queue_qos0_messages: false,
  max_keepalive: 65535,
  max_packet_size: 2000000,
  message_size_limit: 0,
  max_qos: 2,
  retain_available: true,
  max_connections: -1,
  global_max_clients: -1,
  server_reference: "",
  shutdown_grace: 1000,
  max_topic_alias: 10,
  max_topic_alias_broker: 10,
  max_subscriptions_per_client: 10000,
  max_subscription_bytes_per_client: 1048576,
  connect_timeout: 10,
  allow_zero_length_clientid: true,
  auto_id_prefix: "auto-",
  persistent_client_expiration: 0,
  upgrade_outgoing_qos: false,
  persistence: true,
  persistence_location: "data",
  persistence_file: "midge.db",
  persistence_sync: "full",
  allow_anonymous: "localhost",
  password_file: "",
  acl_file: "",
  auth_chain: ["password_file", "acl_file"],
  auth_no_match: "deny",
  jwt_from: "password",
  jwt_secret: "",
  jwt_secret_base64: false,
  jwt_public_key_file: "",
  jwt_jwks_file: "",
  jwt_jwks_url: "",
  jwt_jwks_refresh: 300,
  jwt_cafile: "",
  jwt_issuer: "",
  jwt_audience: "",
  jwt_clock_skew: 30,
  jwt_require_exp: true,
  jwt_verify_claims: [],
  jwt_acl_claim: "acl",
  auth_opt_http_host: "127.0.0.1",
  auth_opt_http_port: 80,
  auth_opt_http_with_tls: false,
  auth_opt_http_cafile: "",
  auth_opt_http_getuser_uri: "/auth",
  auth_opt_http_superuser_uri: "",
  auth_opt_http_aclcheck_uri: "/acl",
  auth_opt_http_params_mode: "json",
  auth_opt_http_response_mode: "status",
  auth_opt_http_timeout: 5,
  auth_opt_http_max_sockets: 16,
  auth_opt_http_cache_seconds: 30,
  auth_opt_http_cache_size: 10000,
  auth_opt_http_on_error: "deny",
  sys_interval: 10,
  log_type: ["error", "warning", "notice", "information"],
  log_dest: ["stderr"],
  log_timestamp: true,
  connection_messages: true,
  log_format: "text",
  http_listener: "",
  admin_token: "",
  http_certfile: "",
  http_keyfile: "",
  per_listener_settings: false,
  pid_file: "",
  user: "",
  log_timestamp_format: "",
  clientid_prefixes: "",
};

/** Parses `text` expecting a ConfigError; returns it. */
function bad(text: string, file = "my.toml"): ConfigError {
  try {
    parseConfig(text, file);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${e}`);
    return e;
  }
  assert.fail(`expected a ConfigError for:\n${text}`);
}

test("config.toml parses to exactly the documented defaults", () => {
  assert.deepEqual(parseConfig(configToml, "config.toml"), { file: "config.toml", ...EXPECTED });
});

test("an empty file gives the same defaults (one listener on 127.0.0.1:1883)", () => {
  assert.deepEqual(parseConfig("", "empty.toml"), { file: "empty.toml", ...EXPECTED });
});

test("loadConfig() without a path uses the embedded config.toml", async () => {
  assert.equal(defaultConfigText, configToml, "the generated embed is out of date");
  assert.deepEqual(await loadConfig(), { file: "<default>", ...EXPECTED });
});

test("every key in the schema is set in config.toml, to its default, under a comment", () => {
  const lines = configToml.split("\n");
  const firstListener = lines.indexOf("[[listener]]");
  assert.ok(firstListener > 0);
  const check = (keys: Record<string, { default: unknown }>, inListener: boolean) => {
    for (const [k, e] of Object.entries(keys)) {
      const at = lines.findIndex((l, i) =>
        (i > firstListener) === inListener && l.startsWith(`${k} = `)
      );
      assert.ok(at > 0, `config.toml does not set ${k}`);
      const value = lines[at].slice(`${k} = `.length);
      assert.match(lines[at - 1], /^# /, `${k} in config.toml has no comment above it`);
      assert.ok(
        lines[at - 1].endsWith(`Default ${value}.`),
        `${k}: the comment above does not end with "Default ${value}."`,
      );
      const parsed = inListener
        ? parseConfig(`[[listener]]\n${lines[at]}`, "x").listeners[0]
        : parseConfig(lines[at], "x");
      assert.deepEqual((parsed as unknown as Record<string, unknown>)[k], e.default, k);
    }
  };
  check(GLOBAL_KEYS, false);
  check(LISTENER_KEYS, true);
});

test("a file that sets a few keys keeps the defaults for the rest", () => {
  const c = parseConfig(
    `max_qos = 1\nlog_type = "all"\n\n[[listener]]\nport = 0\n\n[[listener]]\nport = 8883\nbind_address = "::"\n`,
    "a.toml",
  );
  assert.equal(c.max_qos, 1);
  assert.deepEqual(c.log_type, ["all"], "a single string is read as an array of one");
  assert.equal(c.max_inflight_messages, 20);
  assert.deepEqual(c.listeners, [
    { ...EXPECTED.listeners[0], port: 0 },
    { ...EXPECTED.listeners[0], port: 8883, bind_address: "::" },
  ]);
});

test("unknown key: file, line and key, with a did-you-mean hint", () => {
  const e = bad(`# comment\n\nmax_qos = 1\nmax_inflite_messages = 5\n`, "config.toml");
  assert.equal(e.file, "config.toml");
  assert.equal(e.line, 4);
  assert.equal(e.key, "max_inflite_messages");
  assert.equal(
    e.message,
    `config.toml:4: key "max_inflite_messages": unknown key (did you mean "max_inflight_messages"?)`,
  );
  assert.match(bad(`colour = "red"`).message, /^my\.toml:1: key "colour": unknown key$/);
  assert.match(
    bad(`psk_file = "/etc/psk"`).message,
    /unknown key \(a Mosquitto option that Midge does not support\)/,
  );
});

test("wrong type in the second listener names listener[1].port and its line", () => {
  const text = [
    "max_qos = 2",
    "",
    "[[listener]]",
    "port = 1883",
    "",
    "[[listener]]",
    'port = "abc"',
  ].join("\n");
  const e = bad(text);
  assert.equal(
    e.message,
    `my.toml:7: key "listener[1].port": expected an integer 0-65535, got "abc"`,
  );
  assert.equal(e.line, 7);
  assert.equal(e.key, "listener[1].port");
});

test("out-of-range and wrong-kind values are refused with the accepted range", () => {
  const cases: [string, string][] = [
    ["max_qos = 3", `key "max_qos": expected an integer 0-2, got 3`],
    ["max_inflight_messages = -1", `expected an integer 0-65535, got -1`],
    ["max_packet_size = 268435461", `expected an integer 20-268435460, got 268435461`],
    ["max_keepalive = 65536", `expected an integer 0-65535, got 65536`],
    ["max_qos = 1.0", `expected an integer 0-2, got 1.0`],
    ["max_qos = 1.5", `got 1.5`],
    ["max_qos = true", `got true`],
    ["retain_available = 1", `key "retain_available": expected true or false, got 1`],
    ['retain_available = "yes"', `expected true or false, got "yes"`],
    ["max_connections = 0", `expected -1 (no limit) or an integer 1-2147483647, got 0`],
    ["max_connections = -2", `got -2`],
    ["sys_interval = -1", `expected an integer 0-86400, got -1`],
    ["connect_timeout = 0", `expected an integer 1-3600, got 0`],
    ["auto_id_prefix = 5", `key "auto_id_prefix": expected a string of at most 256 characters`],
    ['log_dest = "syslog"', `key "log_dest": expected one of "stdout", "stderr"`],
    ["max_qos = 1979-05-27", `got a date-time`],
    ["max_qos = [1]", `got an array`],
    ["max_qos = { a = 1 }", `got a table`],
  ];
  for (const [text, want] of cases) {
    const e = bad(`# leading line\n${text}\n`);
    assert.equal(e.line, 2, text);
    assert.ok(e.message.startsWith("my.toml:2: key "), e.message);
    assert.ok(e.message.includes(want), `${text}: ${e.message} lacks ${want}`);
  }
});

test("every problem is reported at once, in file order, one line each; the first is the error's key", () => {
  const e = bad(`max_qos = 1\nsys_interval = "x"\nmax_qos2 = 1\n\n[[listener]]\nport = -1\n`);
  assert.equal(e.key, "sys_interval");
  assert.equal(e.line, 2);
  assert.deepEqual(e.problems.map((p) => [p.line, p.key]), [
    [2, "sys_interval"],
    [3, "max_qos2"],
    [6, "listener[0].port"],
  ]);
  const lines = e.message.split("\n");
  assert.equal(lines.length, 3);
  assert.ok(lines[0].startsWith('my.toml:2: key "sys_interval": '), lines[0]);
  assert.ok(lines[1].startsWith('my.toml:3: key "max_qos2": unknown key'), lines[1]);
  assert.ok(lines[2].startsWith('my.toml:6: key "listener[0].port": '), lines[2]);
});

test("TOML syntax errors come out with file and line", () => {
  const e = bad(`max_qos = 1\n\nlog_type = ["error",\n  "warning"\nsys_interval = 5\n`, "s.toml");
  assert.equal(e.file, "s.toml");
  assert.ok(e.line >= 4, `line ${e.line}`);
  assert.equal(e.key, "");
  assert.match(e.message, /^s\.toml:\d+: TOML syntax error: .+ \(column \d+\)$/);
  assert.ok(!e.message.includes("\n"), "one line");
  const dup = bad(`max_qos = 1\nmax_qos = 2\n`);
  assert.equal(dup.line, 2);
  assert.match(dup.message, /TOML syntax error/);
});

test("persistent_client_expiration takes seconds or Mosquitto's <n><unit> strings", () => {
  const read = (v: string) =>
    parseConfig(`persistent_client_expiration = ${v}`, "x")
      .persistent_client_expiration;
  assert.equal(read("3600"), 3600);
  assert.equal(read(`"45s"`), 45);
  assert.equal(read(`"2h"`), 7200);
  assert.equal(read(`"14d"`), 14 * 86400);
  assert.equal(read(`"1w"`), 604800);
  assert.equal(read(`"1m"`), 30 * 86400);
  assert.equal(read(`"1y"`), 365 * 86400);
  assert.equal(read(`"120"`), 120);
  for (const v of [`"-1h"`, `"1x"`, `"h"`, `"1.5h"`, "-5", "1.5", "true", `"200y"`]) {
    assert.match(
      bad(`persistent_client_expiration = ${v}`).message,
      /key "persistent_client_expiration": expected a number of seconds/,
      v,
    );
  }
});

test("log_type: each element is checked, and a bad one is pointed at by index and line", () => {
  const e = bad(`log_type = [\n  "error",\n  "warnings",\n]\n`);
  assert.equal(e.key, "log_type[1]");
  assert.equal(e.line, 3);
  assert.match(e.message, /expected one of "debug", .*got "warnings"$/);
  assert.deepEqual(
    parseConfig(`log_dest = ["stdout", "file /var/log/midge.log", "topic"]`, "x").log_dest,
    ["stdout", "file /var/log/midge.log", "topic"],
  );
});

test("listener checks: protocol, addresses, mount point, duplicates, connection limit", () => {
  const l = (body: string) => bad(`[[listener]]\n${body}\n`);
  assert.match(
    l(`protocol = "mqtts"`).message,
    /^my\.toml:2: key "listener\[0\]\.protocol": expected one of "mqtt", "websockets", got "mqtts"$/,
  );
  assert.match(l(`port = 65536`).message, /expected an integer 0-65535, got 65536$/);
  assert.match(l(`bind_address = "not an address"`).message, /IP address or host name/);
  assert.match(l(`mount_point = "a/+/"`).message, /must not contain \+, #/);
  assert.match(l(`max_connections = 0`).message, /-1 \(no limit\) or an integer/);
  const dup = bad(
    `[[listener]]\nport = 1883\n[[listener]]\nport = 1884\n[[listener]]\nport = 1883\n`,
  );
  assert.equal(
    dup.message,
    `my.toml:6: key "listener[2].port": port 1883 on 127.0.0.1 is already used by listener[0]`,
  );
  const ok = parseConfig(
    `[[listener]]\nport = 0\n[[listener]]\nport = 0\nbind_address = "localhost"\nmount_point = "t/"\nmax_connections = 5\n`,
    "x",
  );
  assert.equal(ok.listeners.length, 2, "port 0 may repeat");
  assert.deepEqual(ok.listeners[1], {
    ...EXPECTED.listeners[0],
    port: 0,
    bind_address: "localhost",
    max_connections: 5,
    mount_point: "t/",
  });
});

test("listener transport keys: websockets, Unix socket, PROXY protocol, TLS", () => {
  const c = parseConfig(
    [
      `[[listener]]`,
      `protocol = "websockets"`,
      `port = 0`,
      `websockets_path = "/ws"`,
      `websockets_origin = "https://app.example.com"`,
      `enable_proxy_protocol = 2`,
      `certfile = "s.crt"`,
      `keyfile = "s.key"`,
      `cafile = "ca.crt"`,
      `crlfile = "ca.crl"`,
      `require_certificate = true`,
      `use_subject_as_username = true`,
      `ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256"`,
      `tls_version = "tlsv1.3"`,
      `[[listener]]`,
      `unix_socket = "/run/midge.sock"`,
      `enable_proxy_protocol = true`,
      `[[listener]]`,
      `unix_socket = "/run/other.sock"`,
    ].join("\n"),
    "x",
  );
  assert.deepEqual(c.listeners[0], {
    ...EXPECTED.listeners[0],
    protocol: "websockets",
    port: 0,
    websockets_path: "/ws",
    websockets_origin: ["https://app.example.com"],
    enable_proxy_protocol: 2,
    certfile: "s.crt",
    keyfile: "s.key",
    cafile: "ca.crt",
    crlfile: "ca.crl",
    require_certificate: true,
    use_subject_as_username: true,
    ciphers: "ECDHE-ECDSA-AES128-GCM-SHA256",
    tls_version: "tlsv1.3",
  });
  assert.equal(c.listeners[1].unix_socket, "/run/midge.sock");
  assert.equal(c.listeners[1].enable_proxy_protocol, true);
  assert.equal(c.listeners.length, 3, "Unix listeners do not clash on port 1883");

  const l = (body: string) => bad(`[[listener]]\n${body}\n`).message;
  assert.match(l(`enable_proxy_protocol = 3`), /expected false, true \(v1 or v2\), 1 or 2, got 3$/);
  assert.match(l(`websockets_path = "mqtt"`), /expected a path starting with "\/"/);
  assert.match(l(`tls_version = "tlsv1.1"`), /TLS 1\.1 is not supported/);
  assert.match(l(`certfile = "a"`), /key "listener\[0\]\.certfile": certfile needs keyfile too$/);
  assert.match(l(`keyfile = "a"`), /keyfile needs certfile too$/);
  assert.match(l(`cafile = "a"`), /cafile needs TLS \(certfile and keyfile\)$/);
  assert.match(l(`require_certificate = true`), /needs TLS/);
  const tls = `certfile = "c"\nkeyfile = "k"\n`;
  assert.match(l(`${tls}require_certificate = true`), /require_certificate needs cafile/);
  assert.match(l(`${tls}use_identity_as_username = true`), /needs cafile/);
  assert.match(l(`${tls}crlfile = "x"`), /crlfile needs cafile/);
  assert.match(
    l(`${tls}cafile = "a"\nuse_identity_as_username = true\nuse_subject_as_username = true`),
    /key "listener\[0\]\.use_subject_as_username": use either/,
  );
  assert.match(l(`websockets_origin = ["x"]`), /applies to protocol = "websockets" listeners only/);
  const dup = bad(`[[listener]]\nunix_socket = "/a"\n[[listener]]\nunix_socket = "/a"\n`);
  assert.equal(
    dup.message,
    `my.toml:4: key "listener[1].unix_socket": "/a" is already used by listener[0]`,
  );
});

test("misplaced keys get a hint about [[listener]] tables", () => {
  const top = bad(`port = 1883\n`);
  assert.equal(top.key, "port");
  assert.match(
    top.message,
    /unknown key here \(listener settings belong in a \[\[listener\]\] table\)/,
  );
  // The usual mistake: a top-level key appended after the listener table lands inside it.
  const inside = bad(`[[listener]]\nport = 1883\n\nmax_qos = 1\n`);
  assert.equal(inside.key, "listener[0].max_qos");
  assert.equal(inside.line, 4);
  assert.match(inside.message, /move it above the first \[\[listener\]\] table/);
});

test("listener must be an array of tables with at least one entry", () => {
  assert.match(bad(`listener = 1883`).message, /key "listener": expected an array of tables/);
  assert.match(bad(`listener = []`).message, /key "listener": expected at least one/);
  const e = bad(`listener = [{ port = 1 }, 5]`);
  assert.equal(e.key, "listener[1]");
  assert.match(e.message, /expected a table, got 5/);
  // Inline tables work like [[listener]] tables, and errors still find their line.
  const c = parseConfig(`listener = [{ port = 0 }, { port = 1 }]`, "x");
  assert.deepEqual(c.listeners.map((x) => x.port), [0, 1]);
  const e2 = bad(`max_qos = 1\nlistener = [\n  { port = 1 },\n  { port = "x" },\n]\n`);
  assert.equal(e2.key, "listener[1].port");
  assert.equal(e2.line, 4);
});

test("unknown tables and sub-tables are reported where they start", () => {
  const e = bad(`max_qos = 1\n\n[bridge]\naddress = "x"\n`);
  assert.equal(e.key, "bridge");
  assert.equal(e.line, 3);
  const sub = bad(
    `[[listener]]\nport = 1\n[[listener]]\nport = 2\n[listener.tls]\ncertfile = "c"\n`,
  );
  assert.equal(sub.key, "listener[1].tls");
  assert.equal(sub.line, 5);
  const dotted = bad(`max_qos = 1\nlog.type = "all"\n`);
  assert.equal(dotted.key, "log");
  assert.equal(dotted.line, 2);
});

test("line finding is not fooled by strings, comments or arrays spanning lines", () => {
  const text = [
    `auto_id_prefix = """`, // 1
    `[[listener]]`, // 2: inside a multi-line string
    `port = "inside a string"`, // 3
    `"""`, // 4
    `log_dest = [ # comment with [[listener]]`, // 5
    `  "stderr", # "quoted" in a comment`, // 6
    `  'file /tmp/a]b.log',`, // 7
    `]`, // 8
    `connection_messages = false # max_qos = 9`, // 9
    `mount = 'x'`, // 10
  ].join("\n");
  const e = bad(text);
  assert.equal(e.key, "mount");
  assert.equal(e.line, 10);
});

test("keyLines maps keys, headers, array elements and quoted keys to their lines", () => {
  const lines = keyLines(
    [
      `a = 1`, // 1
      `b.c = "x\\" y"`, // 2
      `"quoted key" = '''`, // 3
      `text'' ''`, // 4
      `'''`, // 5
      `[t]`, // 6
      `d = [1,`, // 7
      ` 2]`, // 8
      `[[arr]]`, // 9
      `[[arr]]`, // 10
      `[arr.sub]`, // 11
      `e = { f = 1, g = [true] }`, // 12
      `[[arr.list]]`, // 13
      `h = """one""two"""""`, // 14
      `i = 2`, // 15
    ].join("\r\n"),
  );
  const want: Record<string, number> = {
    "a": 1,
    "b": 2,
    "b.c": 2,
    "quoted key": 3,
    "t": 6,
    "t.d": 7,
    "t.d[0]": 7,
    "t.d[1]": 8,
    "arr": 9,
    "arr[0]": 9,
    "arr[1]": 10,
    "arr[1].sub": 11,
    "arr[1].sub.e": 12,
    "arr[1].sub.e.f": 12,
    "arr[1].sub.e.g[0]": 12,
    "arr[1].list[0]": 13,
    "arr[1].list[0].h": 14,
    "arr[1].list[0].i": 15,
  };
  for (const [k, line] of Object.entries(want)) assert.equal(lines.get(k), line, k);
});

test("loadConfig reads a file, and a missing file is a ConfigError naming it", async () => {
  const dir = mkdtempSync(join(tmpdir(), "midge-config-"));
  try {
    const path = join(dir, "midge.toml");
    writeFileSync(path, "\uFEFFmax_qos = 0\n[[listener]]\nport = 0\n");
    const c = await loadConfig(path);
    assert.equal(c.file, path);
    assert.equal(c.max_qos, 0);
    assert.equal(c.listeners[0].port, 0);
    writeFileSync(path, "max_qos = 0\nmax_qos_ = 1\n");
    await assert.rejects(loadConfig(path), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.equal(e.message, `${path}:2: key "max_qos_": unknown key (did you mean "max_qos"?)`);
      return true;
    });
    const missing = join(dir, "nope.toml");
    await assert.rejects(loadConfig(missing), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.equal(e.message, `${missing}: cannot read the configuration file: no such file`);
      return true;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the returned config is a fresh object: changing one does not change the next", () => {
  const a = parseConfig("", "x");
  a.log_type.push("debug");
  a.listeners[0].port = 1;
  const b = parseConfig("", "x");
  assert.deepEqual(b.log_type, EXPECTED.log_type);
  assert.equal(b.listeners[0].port, 1883);
});

test('allow_anonymous: true, false, "localhost" at the top; a listener may also say "global"', () => {
  const c = parseConfig(
    `allow_anonymous = false\npassword_file = "pw"\nacl_file = "acl"\n\n[[listener]]\nallow_anonymous = "localhost"\n\n[[listener]]\nport = 1884\n`,
    "a.toml",
  );
  assert.equal(c.allow_anonymous, false);
  assert.equal(c.password_file, "pw");
  assert.equal(c.acl_file, "acl");
  assert.deepEqual(c.listeners.map((l) => l.allow_anonymous), ["localhost", "global"]);
  assert.match(
    bad(`allow_anonymous = "global"\n`).message,
    /allow_anonymous": expected true, false/,
  );
  assert.match(bad(`allow_anonymous = "yes"\n`).message, /a\.toml|my\.toml/);
  assert.match(
    bad(`[[listener]]\nallow_anonymous = 1\n`).message,
    /listener\[0\]\.allow_anonymous": expected true, false or "localhost" or "global", got 1/,
  );
});
