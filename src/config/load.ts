/**
 * Reads config.toml-style text into a checked `Config`. Every unknown key, wrong type or
 * out-of-range value is reported, all of them in one `ConfigError`, one line each naming the
 * file, line and key at fault, e.g.
 * `my.toml:7: key "listener[1].port": expected an integer 0-65535, got "abc"`.
 */
import { readFile } from "node:fs/promises";
import { parse, TomlError } from "smol-toml";
import { defaultConfigText } from "./default_config.generated.ts";
import { keyLines, lineOf } from "./lines.ts";
import { type ConfMessage, isMosquittoConf, readMosquittoConf } from "./mosquitto_conf.ts";
import {
  BRIDGE_KEYS,
  type BridgeConfig,
  CLUSTER_KEYS,
  type ClusterConfig,
  type Config,
  defaults,
  GLOBAL_KEYS,
  LISTENER_KEYS,
  type ListenerConfig,
  MOSQUITTO_ONLY,
  PLUGIN_KEYS,
  type PluginConfig,
  Problem,
  type Schema,
  show,
  type Values,
} from "./schema.ts";

export type { BridgeConfig, Config, ListenerConfig, PluginConfig } from "./schema.ts";

/** One problem in a configuration file. */
export interface ConfigProblem {
  /** 0 when no line applies. */
  line: number;
  /** "" for a syntax error. */
  key: string;
  problem: string;
}

/** `file:line: key "k": problem` (without the line when it is 0, without the key when ""). */
function problemLine(file: string, p: ConfigProblem): string {
  const where = p.line > 0 ? `${file}:${p.line}` : file;
  return p.key ? `${where}: key "${p.key}": ${p.problem}` : `${where}: ${p.problem}`;
}

/**
 * A bad configuration: one line `file:line: key "k": problem` per problem, all of them in file
 * order (line 0 when no line applies, key "" for syntax). `file`, `line`, `key` and `problem`
 * are those of the first.
 */
export class ConfigError extends Error {
  file: string;
  line: number;
  key: string;
  problem: string;
  /** Every problem found, in file order (those without a line last). */
  problems: ConfigProblem[];
  constructor(
    file: string,
    line: number,
    key: string,
    problem: string,
    more: ConfigProblem[] = [],
  ) {
    const problems = [{ line, key, problem }, ...more];
    super(problems.map((p) => problemLine(file, p)).join("\n"));
    this.name = "ConfigError";
    this.file = file;
    this.line = line;
    this.key = key;
    this.problem = problem;
    this.problems = problems;
  }
}

/** The name `Config.file` carries when the embedded default configuration is used. */
export const DEFAULT_FILE = "<default>";

/** Parses and checks configuration text; `file` names it in errors. Throws `ConfigError`. */
export function parseConfig(text: string, file: string): Config {
  if (text.startsWith("\uFEFF")) text = text.slice(1);
  let doc: Record<string, unknown>;
  try {
    doc = parse(text, { integersAsBigInt: true, unsafeKeyBehaviour: "keep" });
  } catch (e) {
    if (e instanceof TomlError) {
      const message = e.message.replace(/^Invalid TOML document: /, "").split("\n")[0];
      throw new ConfigError(file, e.line, "", `TOML syntax error: ${message} (column ${e.column})`);
    }
    throw e;
  }

  const lines = keyLines(text);
  const problems: { line: number; key: string; problem: string }[] = [];
  const report = (key: string, problem: string) => {
    problems.push({ line: lineOf(lines, key), key, problem });
  };
  /**
   * Whether a key under `prefix` already has a problem: the checks across keys of that table
   * then stay quiet, so a bad value is not reported again as what its default leads to.
   */
  const faulty = (prefix: string) => problems.some((p) => p.key.startsWith(prefix));

  const { listener, bridge, cluster: clusterTable, plugins: pluginTables, ...top } = doc;
  const global = readTable(GLOBAL_KEYS, top, "", report, {
    schema: LISTENER_KEYS,
    hint: "listener settings belong in a [[listener]] table",
  });

  if (global.http_certfile && !global.http_keyfile) {
    report("http_certfile", "http_certfile needs http_keyfile too");
  }
  if (global.http_keyfile && !global.http_certfile) {
    report("http_keyfile", "http_keyfile needs http_certfile too");
  }

  let listeners: ListenerConfig[] = [defaults(LISTENER_KEYS)];
  if (Object.hasOwn(doc, "listener")) {
    if (!Array.isArray(listener)) {
      report("listener", `expected an array of tables ([[listener]]), got ${show(listener)}`);
    } else if (listener.length === 0) {
      report("listener", "expected at least one [[listener]] table");
    } else {
      listeners = listener.map((t, i) => {
        if (!isTable(t)) {
          report(`listener[${i}]`, `expected a table, got ${show(t)}`);
          return defaults(LISTENER_KEYS);
        }
        return readTable(LISTENER_KEYS, t, `listener[${i}].`, report, {
          schema: GLOBAL_KEYS,
          hint: "a top-level setting: move it above the first [[listener]] table",
        });
      });
      checkListeners(listeners, report, faulty);
      if (!global.per_listener_settings) {
        listeners.forEach((l, i) => {
          for (const k of ["password_file", "acl_file"] as const) {
            if (l[k]) {
              report(
                `listener[${i}].${k}`,
                `needs per_listener_settings = true (or a top-level ${k})`,
              );
            }
          }
        });
      }
    }
  }

  const bridges: BridgeConfig[] = [];
  if (Object.hasOwn(doc, "bridge")) {
    if (!Array.isArray(bridge)) {
      report("bridge", `expected an array of tables ([[bridge]]), got ${show(bridge)}`);
    } else {
      const names = new Set<string>();
      bridge.forEach((t, i) => {
        if (!isTable(t)) {
          report(`bridge[${i}]`, `expected a table, got ${show(t)}`);
          return;
        }
        const b = readTable(BRIDGE_KEYS, t, `bridge[${i}].`, report, {
          schema: GLOBAL_KEYS,
          hint: "a top-level setting: move it above the first [[bridge]] table",
        });
        bridges.push(b);
        if (faulty(`bridge[${i}].`)) return;
        if (!b.name) report(`bridge[${i}].name`, "a bridge needs a name");
        else if (names.has(b.name)) {
          report(`bridge[${i}].name`, `bridge name ${show(b.name)} is used twice`);
        }
        names.add(b.name);
        if (b.addresses.length === 0) {
          report(`bridge[${i}].addresses`, "a bridge needs at least one address");
        }
        if (b.topic.length === 0) {
          report(`bridge[${i}].topic`, "a bridge needs at least one topic line");
        }
      });
    }
  }

  let cluster: ClusterConfig | null = null;
  if (Object.hasOwn(doc, "cluster")) {
    if (!isTable(clusterTable)) {
      report("cluster", `expected a table ([cluster]), got ${show(clusterTable)}`);
    } else {
      cluster = readTable(CLUSTER_KEYS, clusterTable, "cluster.", report, {
        schema: GLOBAL_KEYS,
        hint: "a top-level setting: move it above the [cluster] table",
      });
      if (!cluster.node_id) report("cluster.node_id", "a cluster node needs a node_id");
      if (cluster.servers.length === 0) {
        report("cluster.servers", "a cluster node needs at least one NATS server URL");
      }
    }
  }

  const plugins: PluginConfig[] = [];
  if (Object.hasOwn(doc, "plugins")) {
    if (!Array.isArray(pluginTables)) {
      report("plugins", `expected an array of tables ([[plugins]]), got ${show(pluginTables)}`);
    } else {
      pluginTables.forEach((t, i) => {
        if (!isTable(t)) {
          report(`plugins[${i}]`, `expected a table, got ${show(t)}`);
          return;
        }
        const p = readTable(PLUGIN_KEYS, t, `plugins[${i}].`, report, {
          schema: GLOBAL_KEYS,
          hint: "a top-level setting: move it above the first [[plugins]] table",
        });
        if (!Object.hasOwn(t, "name")) report(`plugins[${i}].name`, "a plugin needs a name");
        else if (plugins.some((q) => q.name === p.name)) {
          // Mosquitto: "Dynamic security plugin can currently only be loaded once."
          report(`plugins[${i}].name`, `plugin ${show(p.name)} is configured twice`);
        }
        if (p.name === "dynamic-security" && !p.config_file) {
          report(`plugins[${i}].config_file`, "dynamic-security needs config_file");
        }
        plugins.push(p);
      });
    }
  }

  if (plugins.length > 0 && global.per_listener_settings) {
    report("plugins", "plugins apply to every listener: not available with per_listener_settings");
  }

  if (problems.length > 0) {
    // Every problem at once, in file order; problems without a line come last.
    problems.sort((a, b) => (a.line || Infinity) - (b.line || Infinity));
    const [{ line, key, problem }, ...more] = problems;
    throw new ConfigError(file, line, key, problem, more);
  }
  return { file, ...global, listeners, bridges, cluster, plugins };
}

/**
 * Reads the configuration file at `path`, or the embedded default configuration (config.toml
 * as built into the program) when no path is given. Throws `ConfigError`.
 */
export async function loadConfig(path?: string): Promise<Config> {
  if (path === undefined) return parseConfig(defaultConfigText, DEFAULT_FILE);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    const code = (e as { code?: string }).code;
    const reason = code === "ENOENT"
      ? "no such file"
      : code === "EISDIR"
      ? "is a directory"
      : code === "EACCES"
      ? "permission denied"
      : String((e as Error).message ?? e);
    throw new ConfigError(path, 0, "", `cannot read the configuration file: ${reason}`);
  }
  if (isMosquittoConf(text, path)) {
    return readMosquittoConf(text, path, parseConfig, mosquittoError);
  }
  return parseConfig(text, path);
}

/** Every malformed line of a mosquitto.conf, one `file:line: problem` per line. */
function mosquittoError(messages: ConfMessage[]): ConfigError {
  const [first] = messages;
  const e = new ConfigError(first.file, first.line, "", first.message);
  e.message = messages.map((m) => new ConfigError(m.file, m.line, "", m.message).message).join(
    "\n",
  );
  return e;
}

type Report = (key: string, problem: string) => void;

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** Reads one table against `schema`; `other` is the schema a misplaced key may belong to. */
function readTable<S extends Schema>(
  schema: S,
  table: Record<string, unknown>,
  prefix: string,
  report: Report,
  other: { schema: Schema; hint: string },
): Values<S> {
  const out: Record<string, unknown> = defaults(schema);
  for (const [k, v] of Object.entries(table)) {
    if (!Object.hasOwn(schema, k)) {
      report(prefix + k, unknownKey(k, schema, other));
      continue;
    }
    try {
      out[k] = schema[k].type.read(v);
    } catch (e) {
      if (!(e instanceof Problem)) throw e;
      report(prefix + k + e.at, e.message);
    }
  }
  return out as Values<S>;
}

function unknownKey(k: string, schema: Schema, other: { schema: Schema; hint: string }): string {
  if (Object.hasOwn(other.schema, k)) return `unknown key here (${other.hint})`;
  // An exact Mosquitto option name says more than a near miss ("psk_file" is not "pid_file").
  if (MOSQUITTO_ONLY.has(k)) return "unknown key (a Mosquitto option that Midge does not support)";
  const near = Object.keys(schema)
    .map((name) => ({ name, d: distance(k, name) }))
    .filter(({ name, d }) => d <= Math.max(2, Math.floor(name.length / 4)))
    .sort((a, b) => a.d - b.d)[0];
  if (near) return `unknown key (did you mean "${near.name}"?)`;
  return "unknown key";
}

/** Levenshtein distance, for "did you mean" hints. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

/**
 * Two listeners may not claim the same address and port (port 0 is always free to repeat). A
 * listener with a `faulty` key is left out of these checks.
 */
function checkListeners(
  listeners: ListenerConfig[],
  report: Report,
  faulty: (prefix: string) => boolean,
): void {
  const seen = new Map<string, number>();
  listeners.forEach((l, i) => {
    if (faulty(`listener[${i}].`)) return;
    checkListenerTls(l, `listener[${i}].`, report);
    if (l.websockets_origin.length > 0 && l.protocol !== "websockets") {
      report(
        `listener[${i}].websockets_origin`,
        `applies to protocol = "websockets" listeners only`,
      );
    }
    if (l.unix_socket) {
      const first = seen.get(`unix:${l.unix_socket}`);
      if (first === undefined) seen.set(`unix:${l.unix_socket}`, i);
      else {
        report(
          `listener[${i}].unix_socket`,
          `${JSON.stringify(l.unix_socket)} is already used by listener[${first}]`,
        );
      }
      return;
    }
    if (l.port === 0) return;
    const addr = `${l.bind_address}:${l.port}`;
    const first = seen.get(addr);
    if (first === undefined) seen.set(addr, i);
    else {
      report(
        `listener[${i}].port`,
        `port ${l.port} on ${l.bind_address} is already used by listener[${first}]`,
      );
    }
  });
}

/** TLS keys that only make sense together: certfile with keyfile, client checks with cafile. */
function checkListenerTls(l: ListenerConfig, at: string, report: Report): void {
  if (l.certfile && !l.keyfile) report(`${at}certfile`, "certfile needs keyfile too");
  if (l.keyfile && !l.certfile) report(`${at}keyfile`, "keyfile needs certfile too");
  const tlsOnly = ["cafile", "crlfile", "ciphers"] as const;
  const flags = [
    "require_certificate",
    "use_identity_as_username",
    "use_subject_as_username",
  ] as const;
  if (!l.certfile) {
    for (const k of tlsOnly) if (l[k]) report(`${at}${k}`, `${k} needs TLS (certfile and keyfile)`);
    for (const k of flags) if (l[k]) report(`${at}${k}`, `${k} needs TLS (certfile and keyfile)`);
    return;
  }
  if (!l.cafile) {
    for (const k of flags) {
      if (l[k]) report(`${at}${k}`, `${k} needs cafile (the CA client certificates chain to)`);
    }
    if (l.crlfile) report(`${at}crlfile`, "crlfile needs cafile (client certificates)");
  }
  if (l.use_identity_as_username && l.use_subject_as_username) {
    report(`${at}use_subject_as_username`, "use either use_identity_as_username or this, not both");
  }
}
