/**
 * `midge bench <scenario>`: the load generator (src/loadgen/). Prints a table, or one JSON object
 * with `--json` (what bench/compare.mjs reads). `--worker` is the internal mode of the child
 * processes started for `--workers N`.
 */
import process from "node:process";
import { parseArgs } from "node:util";
import {
  type BenchOptions,
  type BenchResult,
  DEFAULT_CLIENTS,
  runBench,
  runWorkerProcess,
  type Scenario,
  SCENARIOS,
} from "../loadgen/run.ts";

export const BENCH_USAGE = `Usage: midge bench <scenario> [options]

Load-generate against an MQTT broker and measure it. Every message carries its publisher, a
sequence number and a timestamp: loss, duplicates and reordering are counted.

Scenarios:
  fan-in      N publishers (default 8) -> 1 wildcard subscriber
  fan-out     1 publisher -> N subscribers (default 16)
  pairwise    N publisher/subscriber pairs on distinct topics (default 16)
  latency     pairwise at a fixed total rate (--rate): p50/p99/p99.9
  conn-storm  N idle connections (default 10000): connect rate, broker memory (--broker-pid)
  retained    load --topics retained messages (QoS 1), then time a "#" subscriber to get them all

Options:
      --host HOST           Broker address (default 127.0.0.1)
  -p, --port PORT           Broker port (default 1883)
      --pub-ports P,P,...   Publishers connect to these ports, round robin (cluster nodes)
      --sub-ports P,P,...   Subscribers connect to these ports, round robin (cluster nodes)
  -q, --qos 0|1|2           QoS of publications and subscriptions (default 0)
  -V, --protocol-version V  311 or 5 (default 311)
  -s, --payload BYTES       Payload size, at least 16 (default 64)
  -d, --duration S          Seconds measured (default 10)
      --warmup S            Seconds before measuring (default 1)
  -n, --clients N           Publishers, subscribers, pairs or connections (see above)
  -w, --workers N           Load-generator processes (default 1: this one)
      --inflight N          QoS 1/2: unacknowledged PUBLISH per publisher (default 64)
      --outstanding N       Messages in transit per subscriber: sent, not yet received
                            (default 500; fan-in shares it among the publishers)
      --rate N              latency: messages per second in total (default 10000)
      --topics N            retained: topics (default 100000)
      --concurrency N       conn-storm: CONNECTs in progress at once (default 500)
      --hold S              conn-storm: seconds to hold the connections before measuring (default 2)
      --addresses N         Source addresses 127.0.0.1..N to use (default: one per 20000 connections)
      --persistent          Subscribers keep persistent sessions (clean session 0)
      --jwt-secret SECRET   Log in with HS256 tokens signed with SECRET (user name = client id),
                            whose acl claim grants each client its own topic or filter
      --broker-pid PID      Read the broker's CPU time and memory from /proc/PID
      --json                Print the result as JSON
  -h, --help                Show this help

conn-storm needs file descriptors: raise the limit first (ulimit -n 250000), for the broker too.
`;

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

function num(values: Values, name: string, def: number, min = 0): number {
  const v = values[name];
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) {
    throw new Error(`--${name}: expected a number >= ${min}, got ${JSON.stringify(v)}`);
  }
  return n;
}

/** A comma-separated list of ports (empty when not given). */
function ports(values: Values, name: string): number[] {
  const v = values[name];
  if (v === undefined) return [];
  const out = String(v).split(",").map(Number);
  if (out.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) {
    throw new Error(`--${name}: expected ports separated by commas, got ${JSON.stringify(v)}`);
  }
  return out;
}

/** Parse the options into BenchOptions (throws an Error with a one-line message). */
export function benchOptions(values: Values, positionals: string[]): BenchOptions {
  const scenario = positionals[0] as Scenario;
  if (!scenario) throw new Error("no scenario given");
  if (!SCENARIOS.includes(scenario)) {
    throw new Error(`unknown scenario "${scenario}" (one of ${SCENARIOS.join(", ")})`);
  }
  if (positionals.length > 1) throw new Error(`unexpected argument "${positionals[1]}"`);
  const qos = num(values, "qos", 0);
  if (qos !== 0 && qos !== 1 && qos !== 2) throw new Error(`--qos: expected 0, 1 or 2`);
  const pv = String(values["protocol-version"] ?? "311");
  const version = pv === "5" || pv === "mqttv5" ? 5 : pv === "311" || pv === "mqttv311" ? 4 : 0;
  if (!version) throw new Error(`--protocol-version: expected 311 or 5, got ${JSON.stringify(pv)}`);
  const pid = values["broker-pid"];
  return {
    scenario,
    host: String(values.host ?? "127.0.0.1"),
    port: num(values, "port", 1883, 1),
    pubPorts: ports(values, "pub-ports"),
    subPorts: ports(values, "sub-ports"),
    qos,
    version,
    payload: num(values, "payload", 64, 16),
    duration: num(values, "duration", 10),
    warmup: num(values, "warmup", 1),
    clients: num(values, "clients", DEFAULT_CLIENTS[scenario], 1),
    workers: num(values, "workers", 1, 1),
    inflight: num(values, "inflight", 64, 1),
    outstanding: num(values, "outstanding", 500, 1),
    rate: num(values, "rate", 10_000, 1),
    topics: num(values, "topics", 100_000, 1),
    concurrency: num(values, "concurrency", 500, 1),
    hold: num(values, "hold", 2),
    addresses: num(values, "addresses", 0),
    persistent: values.persistent === true,
    ...(typeof values["jwt-secret"] === "string" ? { jwtSecret: values["jwt-secret"] } : {}),
    brokerPid: pid === undefined ? undefined : num(values, "broker-pid", 0, 1),
  } as BenchOptions;
}

const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** The human-readable table for one result. */
export function formatResult(r: BenchResult): string {
  const rows: [string, string][] = [];
  const who = {
    "fan-in": `${r.clients} publishers -> 1 subscriber`,
    "fan-out": `1 publisher -> ${r.clients} subscribers`,
    pairwise: `${r.clients} pairs`,
    latency: `${r.clients} pairs at a fixed rate`,
    "conn-storm": `${r.clients} idle connections`,
    retained: `1 loader, 1 subscriber`,
  }[r.scenario];
  const head =
    `${r.scenario}  QoS ${r.qos}${r.persistent ? " persistent sessions" : ""}  MQTT ${
      r.version === 5 ? "5" : "3.1.1"
    }  ` +
    `payload ${r.payload} B  ${who}  workers ${r.workers}`;
  const mb = (kb?: number) => (kb === undefined ? "-" : `${fmt(kb / 1024, 1)} MB`);
  if (r.storm) {
    const s = r.storm;
    rows.push(["connections", `${fmt(s.connections)} open, ${fmt(s.failed)} failed`]);
    rows.push(["connect rate", `${fmt(s.connectRate)} /s`]);
    rows.push([
      "broker RSS",
      `${mb(s.rssBeforeKb)} before, ${mb(s.rssAfterKb)} after` +
      (s.perConnectionKb === undefined ? "" : `: ${fmt(s.perConnectionKb, 2)} KB per connection`),
    ]);
  } else if (r.retained) {
    const t = r.retained;
    rows.push(["retained topics", fmt(t.topics)]);
    rows.push(["load (QoS 1)", `${fmt(t.loadRate)} msg/s`]);
    rows.push([
      "subscriber gets all",
      `${fmt(t.receiveS, 3)} s (${fmt(t.receiveRate)} msg/s), ${fmt(t.received)} received, ` +
      `${fmt(t.duplicates)} duplicates`,
    ]);
    rows.push(["broker RSS", mb(r.brokerRssKb)]);
  } else {
    rows.push(["messages/s received", `${fmt(r.msgRate)}  (published ${fmt(r.publishRate)}/s)`]);
    const l = r.latencyMs;
    rows.push([
      "latency ms",
      `p50 ${fmt(l.p50, 2)}  p99 ${fmt(l.p99, 2)}  p99.9 ${fmt(l.p999, 2)}  max ${fmt(l.max, 2)}`,
    ]);
    rows.push([
      "counts",
      `sent ${fmt(r.sent)}  expected ${fmt(r.expected)}  received ${fmt(r.received)}  ` +
      `lost ${fmt(r.lost)}  duplicates ${fmt(r.duplicates)}  reordered ${fmt(r.reordered)}`,
    ]);
    rows.push(["broker RSS", mb(r.brokerRssKb)]);
  }
  rows.push([
    "CPU (cores)",
    `load generator ${fmt(r.loadGenCpu, 2)}` +
    (r.brokerCpu === undefined ? "" : `  broker ${fmt(r.brokerCpu, 2)}`) +
    (r.stealCpu === undefined ? "" : `  stolen by the hypervisor ${fmt(r.stealCpu, 3)}`),
  ]);
  if (r.loadGenPauseMs !== undefined) {
    rows.push([
      "load generator",
      `longest pause ${fmt(r.loadGenPauseMs, 2)} ms (timer due every 1 ms)`,
    ]);
  }
  rows.push(["load average", r.loadAverage.join(" ")]);
  for (const e of r.errors) rows.push(["error", e]);
  const w = Math.max(...rows.map(([k]) => k.length)) + 2;
  return `${head}\n${rows.map(([k, v]) => `  ${k.padEnd(w)}${v}`).join("\n")}\n`;
}

const OPTIONS = {
  host: { type: "string" },
  port: { type: "string", short: "p" },
  "pub-ports": { type: "string" },
  "sub-ports": { type: "string" },
  qos: { type: "string", short: "q" },
  "protocol-version": { type: "string", short: "V" },
  payload: { type: "string", short: "s" },
  duration: { type: "string", short: "d" },
  warmup: { type: "string" },
  clients: { type: "string", short: "n" },
  workers: { type: "string", short: "w" },
  inflight: { type: "string" },
  outstanding: { type: "string" },
  rate: { type: "string" },
  topics: { type: "string" },
  concurrency: { type: "string" },
  hold: { type: "string" },
  addresses: { type: "string" },
  "broker-pid": { type: "string" },
  persistent: { type: "boolean" },
  "jwt-secret": { type: "string" },
  json: { type: "boolean" },
  worker: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** `midge bench ARGS`: returns the exit code (1 on bad options or when something went wrong). */
export async function runBenchCommand(args: string[]): Promise<number> {
  let values: Values, positionals: string[], opts: BenchOptions;
  try {
    ({ values, positionals } = parseArgs({
      args,
      options: OPTIONS,
      allowPositionals: true,
      strict: true,
    }));
    if (values.help) {
      process.stdout.write(BENCH_USAGE);
      return 0;
    }
    if (values.worker) return await runWorkerProcess();
    opts = benchOptions(values, positionals);
  } catch (e) {
    const message = String((e as Error).message ?? e).split(/\.(?:\s|$)/)[0];
    process.stderr.write(`midge: bench: ${message}\n\n${BENCH_USAGE}`);
    return 1;
  }
  let r: BenchResult;
  try {
    r = await runBench(opts);
  } catch (e) {
    process.stderr.write(`midge: bench: ${(e as Error).message ?? e}\n`);
    return 1;
  }
  process.stdout.write(values.json ? JSON.stringify(r) + "\n" : formatResult(r));
  return r.errors.length ? 1 : 0;
}
