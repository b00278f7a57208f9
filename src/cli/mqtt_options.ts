/**
 * Command-line options shared by `midge pub`, `sub` and `rr`, parsed the way mosquitto_pub,
 * mosquitto_sub and mosquitto_rr parse them (same flags, same messages, same exit codes), so that
 * scripts move over by changing the program name. `node:util` parseArgs cannot take
 * `-D command identifier value` (three or four words), hence this small parser.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import type { ClientOptions, ServerAddress, TlsOptions } from "../client/client.ts";
import { ConnectError, MqttClient, parseServerUrl } from "../client/client.ts";
import { parseProxyUrl } from "../client/socks.ts";
import { PSK_REASON } from "../config/mosquitto_conf.ts";
import type { Packet, Properties, ProtocolVersion, QoS } from "../codec/types.ts";

/** How many words an option takes; "D" is -D (3 or 4). */
export type Arity = 0 | 1 | "D";

/** One option: its names (short and long) and arity; `multi` options collect every value. */
export interface OptionSpec {
  names: string[];
  arity: Arity;
  multi?: boolean;
}

/** Options common to the three clients (connection, authentication, MQTT, TLS, output). */
export const COMMON: Record<string, OptionSpec> = {
  bind: { names: ["-A"], arity: 1 },
  "no-clean": { names: ["-c", "--disable-clean-session"], arity: 0 },
  debug: { names: ["-d", "--debug"], arity: 0 },
  property: { names: ["-D", "--property"], arity: "D", multi: true },
  host: { names: ["-h", "--host"], arity: 1, multi: true },
  id: { names: ["-i", "--id"], arity: 1 },
  "id-prefix": { names: ["-I", "--id-prefix"], arity: 1 },
  keepalive: { names: ["-k", "--keepalive"], arity: 1 },
  url: { names: ["-L", "--url"], arity: 1, multi: true },
  port: { names: ["-p", "--port"], arity: 1 },
  password: { names: ["-P", "--pw"], arity: 1 },
  qos: { names: ["-q", "--qos"], arity: 1 },
  username: { names: ["-u", "--username"], arity: 1 },
  version: { names: ["-V", "--protocol-version"], arity: 1 },
  "session-expiry": { names: ["-x", "--session-expiry-interval"], arity: 1 },
  cafile: { names: ["--cafile"], arity: 1 },
  capath: { names: ["--capath"], arity: 1 },
  cert: { names: ["--cert"], arity: 1 },
  key: { names: ["--key"], arity: 1 },
  insecure: { names: ["--insecure"], arity: 0 },
  "tls-use-os-certs": { names: ["--tls-use-os-certs"], arity: 0 },
  "tls-version": { names: ["--tls-version"], arity: 1 },
  ciphers: { names: ["--ciphers"], arity: 1 },
  "tls-alpn": { names: ["--tls-alpn"], arity: 1 },
  psk: { names: ["--psk"], arity: 1 },
  "psk-identity": { names: ["--psk-identity"], arity: 1 },
  unix: { names: ["--unix"], arity: 1 },
  proxy: { names: ["--proxy"], arity: 1 },
  nodelay: { names: ["--nodelay"], arity: 0 },
  quiet: { names: ["--quiet"], arity: 0 },
  help: { names: ["--help"], arity: 0 },
  "will-topic": { names: ["--will-topic"], arity: 1 },
  "will-payload": { names: ["--will-payload"], arity: 1 },
  "will-qos": { names: ["--will-qos"], arity: 1 },
  "will-retain": { names: ["--will-retain"], arity: 0 },
};

/** Parsed values: strings for arity 1, true for flags, arrays for multi options. */
export type Parsed = Record<string, string | true | string[] | string[][] | undefined>;

/** A usage error: printed as `Error: <message>` with a pointer to --help; exit code 1. */
export class UsageError extends Error {}

/** Parses `args` against `specs`; throws UsageError for unknown options or missing values. */
export function parseOptions(args: string[], specs: Record<string, OptionSpec>): Parsed {
  const byName = new Map<string, [string, OptionSpec]>();
  for (const [key, spec] of Object.entries(specs)) {
    for (const n of spec.names) byName.set(n, [key, spec]);
  }
  const out: Parsed = {};
  for (let i = 0; i < args.length; i++) {
    let arg = args[i];
    let inline: string | undefined;
    if (arg.startsWith("--") && arg.includes("=")) {
      inline = arg.slice(arg.indexOf("=") + 1);
      arg = arg.slice(0, arg.indexOf("="));
    }
    const hit = byName.get(arg);
    if (!hit) {
      if (arg.startsWith("-")) throw new UsageError(`Unknown option '${arg}'.`);
      throw new UsageError(`Unexpected argument '${arg}'.`);
    }
    const [key, spec] = hit;
    if (spec.arity === 0) {
      out[key] = true;
      continue;
    }
    if (spec.arity === "D") {
      // -D command identifier value; user-property takes a name and a value.
      const words = args.slice(i + 1, i + 3);
      if (words.length < 2) throw new UsageError(`${arg} argument given but not enough values.`);
      const n = words[1].toLowerCase() === "user-property" ? 4 : 3;
      const all = args.slice(i + 1, i + 1 + n);
      if (all.length < n) throw new UsageError(`${arg} argument given but not enough values.`);
      ((out[key] ??= []) as string[][]).push(all);
      i += n;
      continue;
    }
    const value = inline ?? args[++i];
    if (value === undefined) {
      throw new UsageError(`${arg} argument given but no ${key} specified.`);
    }
    if (spec.multi) ((out[key] ??= []) as string[]).push(value);
    else out[key] = value;
  }
  return out;
}

/** Integer in [min, max] or a UsageError with `what`. */
export function intOption(v: string, min: number, max: number, what: string): number {
  if (!/^-?\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new UsageError(`Invalid ${what} given: ${v}`);
  }
  return Number(v);
}

/** `-q` etc.: 0, 1 or 2. */
export function qosOption(v: string | undefined, what = "QoS"): QoS {
  if (v === undefined) return 0;
  return intOption(v, 0, 2, what) as QoS;
}

function versionOption(v: string): ProtocolVersion {
  switch (v) {
    case "31":
    case "mqttv31":
      return 3;
    case "311":
    case "mqttv311":
      return 4;
    case "5":
    case "mqttv5":
      return 5;
  }
  throw new UsageError(`Invalid protocol version argument given.`);
}

type PropType = "u8" | "u16" | "u32" | "varint" | "string" | "binary" | "pair";
/** MQTT 5 properties by their Mosquitto -D name: Properties key, type, commands allowed. */
const PROPERTIES: Record<string, [keyof Properties, PropType, string[]]> = {
  "payload-format-indicator": ["payloadFormatIndicator", "u8", ["publish", "will"]],
  "message-expiry-interval": ["messageExpiryInterval", "u32", ["publish", "will"]],
  "content-type": ["contentType", "string", ["publish", "will"]],
  "response-topic": ["responseTopic", "string", ["publish", "will"]],
  "correlation-data": ["correlationData", "binary", ["publish", "will"]],
  "subscription-identifier": ["subscriptionIdentifier", "varint", ["subscribe"]],
  "session-expiry-interval": ["sessionExpiryInterval", "u32", ["connect", "disconnect"]],
  "authentication-method": ["authenticationMethod", "string", ["connect"]],
  "authentication-data": ["authenticationData", "binary", ["connect"]],
  "request-problem-information": ["requestProblemInformation", "u8", ["connect"]],
  "will-delay-interval": ["willDelayInterval", "u32", ["will"]],
  "request-response-information": ["requestResponseInformation", "u8", ["connect"]],
  "reason-string": ["reasonString", "string", ["disconnect"]],
  "receive-maximum": ["receiveMaximum", "u16", ["connect"]],
  "topic-alias-maximum": ["topicAliasMaximum", "u16", ["connect"]],
  "topic-alias": ["topicAlias", "u16", ["publish"]],
  "maximum-packet-size": ["maximumPacketSize", "u32", ["connect"]],
  "user-property": ["userProperties", "pair", [
    "connect",
    "publish",
    "subscribe",
    "unsubscribe",
    "disconnect",
    "will",
  ]],
};

const MAX: Record<string, number> = {
  u8: 255,
  u16: 65535,
  u32: 4294967295,
  varint: 268435455,
};

/** `-D` values grouped by command (connect, publish, subscribe, unsubscribe, disconnect, will). */
export function propertiesOption(list: string[][] | undefined): Record<string, Properties> {
  const out: Record<string, Properties> = {};
  for (const words of list ?? []) {
    const [cmdRaw, nameRaw, ...values] = words;
    const cmd = cmdRaw.toLowerCase();
    const name = nameRaw.toLowerCase();
    if (!["connect", "publish", "subscribe", "unsubscribe", "disconnect", "will"].includes(cmd)) {
      throw new UsageError(`Invalid command ${cmdRaw} given in -D.`);
    }
    const def = PROPERTIES[name];
    if (!def) throw new UsageError(`Invalid property name ${nameRaw} given in -D.`);
    const [key, type, allowed] = def;
    if (!allowed.includes(cmd)) {
      throw new UsageError(`${nameRaw} property not allowed for ${cmdRaw} in -D.`);
    }
    const props = (out[cmd] ??= {}) as Record<string, unknown>;
    if (type === "pair") {
      ((props.userProperties ??= []) as [string, string][]).push([values[0], values[1]]);
    } else if (type === "string") props[key] = values[0];
    else if (type === "binary") props[key] = new TextEncoder().encode(values[0]);
    else props[key] = intOption(values[0], type === "varint" ? 1 : 0, MAX[type], `${name} value`);
  }
  return out;
}

/** Everything needed to connect, resolved from the options. */
export interface ClientSetup {
  client: ClientOptions;
  /** -D values by command. */
  props: Record<string, Properties>;
  /** The topic in an mqtt(s):// -L URL. */
  urlTopic?: string;
  quiet: boolean;
  debug: boolean;
}

/** Builds client options from parsed values; `tool` names the default client id. */
export function connectionOptions(
  v: Parsed,
  opts: { defaultVersion: ProtocolVersion; tool: string },
): ClientSetup {
  const version = v.version ? versionOption(v.version as string) : opts.defaultVersion;
  const props = propertiesOption(v.property as string[][] | undefined);
  if (Object.keys(props).length && version !== 5) {
    throw new UsageError("-D/--property is only valid with MQTT v5 (-V 5).");
  }
  const tls: TlsOptions = {};
  let tlsWanted = false;
  if (v.cafile) {
    tls.ca = readText(v.cafile as string, "CA file");
    tlsWanted = true;
  }
  if (v.capath) {
    tls.ca = readCaPath(v.capath as string);
    tlsWanted = true;
  }
  if (v.cert) {
    tls.cert = readText(v.cert as string, "certificate");
    tlsWanted = true;
  }
  if (v.key) tls.key = readText(v.key as string, "key");
  if ((v.cert === undefined) !== (v.key === undefined)) {
    throw new UsageError("Both certfile and keyfile must be provided if one of them is set.");
  }
  if (v.insecure) tls.insecure = true;
  if (v["tls-use-os-certs"]) tlsWanted = true;
  if (v.psk !== undefined || v["psk-identity"] !== undefined) {
    throw new UsageError(`--psk: ${PSK_REASON}.`);
  }
  if (v["tls-version"] !== undefined) {
    const t = v["tls-version"] as string;
    if (t === "tlsv1.3") tls.version = "TLSv1.3";
    else if (t === "tlsv1.2") tls.version = "TLSv1.2";
    else if (t === "tlsv1.1" || t === "tlsv1") {
      throw new UsageError(
        `${t} is obsolete (RFC 8996) and not supported: use tlsv1.2 or tlsv1.3.`,
      );
    } else throw new UsageError(`Unsupported TLS version ${t}: use tlsv1.2 or tlsv1.3.`);
  }
  if (v.ciphers !== undefined) tls.ciphers = v.ciphers as string;
  if (v["tls-alpn"] !== undefined) tls.alpn = v["tls-alpn"] as string;
  let proxy: ReturnType<typeof parseProxyUrl> | undefined;
  if (v.proxy !== undefined) {
    try {
      proxy = parseProxyUrl(v.proxy as string);
    } catch (e) {
      throw new UsageError(`${(e as Error).message}.`);
    }
  }

  let port: number | undefined;
  if (v.port !== undefined) port = intOption(v.port as string, 1, 65535, "port");
  const servers: ServerAddress[] = [];
  let urlTopic: string | undefined;
  let username = v.username as string | undefined;
  let password = v.password as string | undefined;
  for (const url of (v.url as string[] | undefined) ?? []) {
    let u: ReturnType<typeof parseServerUrl>;
    try {
      u = parseServerUrl(url);
    } catch (e) {
      throw new UsageError(`Unable to parse URL: ${(e as Error).message}.`);
    }
    servers.push({ protocol: u.protocol, host: u.host, port: u.port, path: u.path });
    username ??= u.username;
    password ??= u.password;
    urlTopic ??= u.topic;
  }
  for (const h of (v.host as string[] | undefined) ?? []) {
    // Midge extension: -h host:port (or [v6]:port), so that several brokers can differ in port.
    const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(h) ?? /^([^:]*):(\d+)$/.exec(h);
    const host = m ? m[1] : h;
    const p = m?.[2] !== undefined ? intOption(m[2], 1, 65535, "port") : undefined;
    servers.push({
      protocol: tlsWanted ? "mqtts" : "mqtt",
      host,
      port: p ?? port ?? (tlsWanted ? 8883 : 1883),
    });
  }
  if (v.unix !== undefined) {
    // --unix: the broker's Unix socket instead of any host and port.
    servers.splice(0, servers.length, {
      protocol: tlsWanted ? "mqtts" : "mqtt",
      host: "localhost",
      port: 0,
      unix: v.unix as string,
    });
  }
  if (servers.length === 0) {
    servers.push({
      protocol: tlsWanted ? "mqtts" : "mqtt",
      host: "localhost",
      port: port ?? (tlsWanted ? 8883 : 1883),
    });
  }

  let keepalive = 60;
  if (v.keepalive !== undefined) {
    keepalive = Number(v.keepalive);
    if (
      !/^\d+$/.test(v.keepalive as string) || (keepalive !== 0 && keepalive < 5) ||
      keepalive > 65535
    ) {
      throw new UsageError(
        `Invalid keepalive given, it must be between 5 and 65535 inclusive.`,
      );
    }
  }
  const clean = !v["no-clean"];
  let clientId = v.id as string | undefined;
  if (clientId === undefined && v["id-prefix"] !== undefined) {
    clientId = `${v["id-prefix"]}${process.pid}`;
  }
  if (!clean && !clientId) {
    throw new UsageError("You must provide a client id if you are using the -c option.");
  }
  if (clientId === undefined && version === 3) clientId = `${opts.tool}_${process.pid}`;
  if (clientId !== undefined && clientId.length > 65535) {
    throw new UsageError("Client id is too long.");
  }
  const connectProps: Properties = { ...props.connect };
  if (v["session-expiry"] !== undefined) {
    if (version !== 5) throw new UsageError("Session expiry interval is only valid with MQTT v5.");
    const x = v["session-expiry"] as string;
    connectProps.sessionExpiryInterval = x === "-1" || x === "∞"
      ? 4294967295
      : intOption(x, 0, 4294967295, "session expiry interval");
  } else if (!clean && version === 5 && connectProps.sessionExpiryInterval === undefined) {
    connectProps.sessionExpiryInterval = 4294967295; // -c without -x: never expires
  }
  if (password !== undefined && username === undefined) {
    throw new UsageError("You must provide a username if you provide a password.");
  }

  const client: ClientOptions = {
    servers,
    protocolVersion: version,
    clean,
    keepalive,
    ...(clientId !== undefined ? { clientId } : {}),
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(Object.keys(connectProps).length ? { properties: connectProps } : {}),
    ...(Object.keys(tls).length ? { tls } : {}),
    ...(v.bind ? { localAddress: v.bind as string } : {}),
    ...(proxy ? { proxy } : {}),
  };
  if (v["will-topic"] !== undefined) {
    checkTopic(v["will-topic"] as string, "will");
    client.will = {
      topic: v["will-topic"] as string,
      payload: new TextEncoder().encode((v["will-payload"] as string | undefined) ?? ""),
      qos: qosOption(v["will-qos"] as string | undefined, "will QoS"),
      retain: v["will-retain"] === true,
      ...(props.will ? { properties: props.will } : {}),
    };
  } else if (v["will-payload"] !== undefined || v["will-retain"] || v["will-qos"]) {
    throw new UsageError("Will payload, QoS or retain given, but no will topic given.");
  }
  return {
    client,
    props,
    urlTopic,
    quiet: v.quiet === true,
    debug: v.debug === true,
  };
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new UsageError(`Unable to read ${what} "${path}": ${(e as Error).message}`);
  }
}

function readCaPath(dir: string): string {
  try {
    return readdirSync(dir)
      .filter((f) => /\.(pem|crt)$/i.test(f))
      .map((f) => readFileSync(join(dir, f), "utf8"))
      .join("\n");
  } catch (e) {
    throw new UsageError(`Unable to read CA path "${dir}": ${(e as Error).message}`);
  }
}

/** A topic name for PUBLISH: no wildcards, not empty [MQTT-3.3.2-2]. */
export function checkTopic(topic: string, what = "publish"): void {
  if (topic === "" || /[+#]/.test(topic) || topic.includes("\0")) {
    throw new UsageError(`Invalid ${what} topic '${topic}', does it contain '+' or '#'?`);
  }
}

/**
 * A topic filter for SUBSCRIBE: '#' [MQTT-4.7.1-2 v3.1.1][MQTT-4.7.1-1 v5] and '+'
 * [MQTT-4.7.1-3 v3.1.1][MQTT-4.7.1-2 v5] as whole levels.
 */
export function checkFilter(filter: string, what = "subscription"): void {
  const levels = filter.split("/");
  const bad = filter === "" ||
    levels.some((l, i) =>
      (l.includes("#") && (l !== "#" || i !== levels.length - 1)) || (l.includes("+") && l !== "+")
    );
  if (bad) {
    throw new UsageError(
      `Invalid ${what} topic '${filter}', are all '+' and '#' wildcards correct?`,
    );
  }
}

/**
 * The payload given by -m, -f, -n or -s (pub and rr); undefined when none of them was. A file
 * that cannot be read is a usage error, as in Mosquitto.
 */
export async function messagePayload(v: Parsed): Promise<Uint8Array | undefined> {
  if (v.message !== undefined) return new TextEncoder().encode(v.message as string);
  if (v.null) return new Uint8Array(0);
  if (v.file !== undefined) {
    try {
      return readFileSync(v.file as string);
    } catch {
      throw new UsageError(`Unable to read file "${v.file}".`);
    }
  }
  if (v.stdin) return await readAllStdin();
  return undefined;
}

/** All of stdin as one buffer. */
export async function readAllStdin(): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const c of process.stdin) chunks.push(c as Uint8Array);
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Whether `topic` matches `filter` (for -T), with the `$`-topic rule [MQTT-4.7.2-1]. */
export { topicMatches } from "../broker/topic.ts";

/** `-d` lines in Mosquitto's style: `Client <id> sending PUBLISH (d0, q1, r0, m1, 'a', ... (5 bytes))`. */
export function traceLine(id: string, dir: "sent" | "received", p: Packet): string {
  const verb = dir === "sent" ? "sending" : "received";
  const name = p.cmd.toUpperCase();
  let detail = "";
  switch (p.cmd) {
    case "connack":
      detail = ` (${p.reasonCode})`;
      break;
    case "publish":
      detail = ` (d${+p.dup}, q${p.qos}, r${+p.retain}, m${
        p.messageId ?? 0
      }, '${p.topic}', ... (${p.payload.length} bytes))`;
      break;
    case "puback":
    case "pubrec":
    case "pubrel":
    case "pubcomp":
      detail = ` (m${p.messageId}, rc${p.reasonCode ?? 0})`;
      break;
    case "subscribe":
      detail = p.subscriptions.map((s) =>
        ` (Mid: ${p.messageId}, Topic: ${s.topic}, QoS: ${s.qos})`
      )
        .join("");
      break;
    case "suback":
      detail = ` (Mid: ${p.messageId}, granted: ${p.granted.join(",")})`;
      break;
    case "unsubscribe":
      detail = ` (Mid: ${p.messageId}, Topics: ${p.unsubscriptions.join(", ")})`;
      break;
    case "disconnect":
      if (p.reasonCode) detail = ` (${p.reasonCode})`;
      break;
  }
  return `Client ${id || "(null)"} ${verb} ${name}${detail}\n`;
}

/** Writes to stdout and resolves once the bytes are handed to the OS. */
export function writeOut(data: string | Uint8Array): Promise<void> {
  return new Promise((resolve) => process.stdout.write(data, () => resolve()));
}

/** Writes `text` to stderr unless quiet. */
export function writeErr(text: string, quiet = false): void {
  if (!quiet) process.stderr.write(text);
}

/** Flushes stdout and stderr, then exits with `code` (open sockets or stdin cannot keep us alive). */
export async function exitWith(code: number): Promise<never> {
  await writeOut("");
  await new Promise<void>((r) => process.stderr.write("", () => r()));
  process.exit(code);
}

/** Exit codes, as libmosquitto's MOSQ_ERR_* values that mosquitto_pub/sub return. */
export const EXIT = {
  ok: 0,
  error: 1,
  noConnection: 4,
  connectionLost: 7,
  timeout: 27,
} as const;

/**
 * Connects with failover across the servers; on failure prints Mosquitto's message and returns
 * the exit code instead (the CONNACK code when refused, 1 for socket errors).
 */
export async function openClient(
  conn: ClientSetup,
  extra: Partial<ClientOptions> = {},
): Promise<MqttClient | number> {
  const trace = conn.debug
    ? (dir: "sent" | "received", p: Packet) => void writeOut(traceLine(clientRef.id, dir, p))
    : undefined;
  const clientRef = { id: conn.client.clientId ?? "" };
  try {
    const client = await MqttClient.connect({ ...conn.client, ...extra, trace });
    clientRef.id = client.clientId;
    return client;
  } catch (e) {
    if (e instanceof ConnectError && typeof e.code === "number") {
      writeErr(`Connection error: ${e.message}\n`, conn.quiet);
      return e.code;
    }
    const msg = (e as Error).message;
    const text = /Connection refused$/.test(msg)
      ? "Error: Connection refused"
      : /Lookup error\.$/.test(msg)
      ? "Unable to connect (Lookup error.)."
      : `Error: ${msg}`;
    writeErr(`${text}\n`, conn.quiet);
    return EXIT.error;
  }
}
