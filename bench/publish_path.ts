/**
 * The broker's CPU per QoS 0 message, in one process and without the network: PUBLISH packets
 * are handed to the broker's connections as a socket read would hand them (`onData`, `--batch`
 * packets a read, default 32), and what the broker writes to its subscribers' sockets is counted, not sent. What is
 * measured is the broker's own path: decode, handler, auth chain, routing, delivery, encoding
 * and the batched write, without the kernel's and the load generator's share that `midge bench`
 * also sees. It runs the broker of any checkout of Midge (its `src/`), so two builds can be
 * compared on the same machine, alternately:
 *
 *   bun bench/publish_path.ts [--scenario fan-in|pairs] [--rounds N] [--reps N] DIR [DIR ...]
 *
 * fan-in: 8 publishers on bench/<i>, one subscriber to bench/#. pairs: 16 publishers, each with
 * its own subscriber. Prints ns of CPU per message delivered for each DIR and repetition, and
 * the median per DIR.
 */
import { spawnSync } from "node:child_process";
import process from "node:process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import mqttPacket from "mqtt-packet";
import { Buffer } from "node:buffer";

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv.splice(i, 2)[1] : dflt;
};
const scenario = opt("scenario", "fan-in");
const rounds = Number(opt("rounds", "20000"));
const reps = Number(opt("reps", "5"));
const child = opt("child", "");
const batch = Number(opt("batch", "32"));

/** `batch` PUBLISH packets of a 64-byte payload on `topic`, as one socket read. */
function publishes(topic: string): Uint8Array {
  const one = mqttPacket.generate({
    cmd: "publish",
    topic,
    payload: Buffer.alloc(64),
    qos: 0,
    retain: false,
    dup: false,
  });
  const out = new Uint8Array(one.length * batch);
  for (let i = 0; i < batch; i++) out.set(one, i * one.length);
  return out;
}

const packet = (p: object): Uint8Array => new Uint8Array(mqttPacket.generate(p as never));

/** One measurement in this process: the broker of checkout `dir`. */
async function measure(dir: string): Promise<number> {
  const schema = await import(join(dir, "src/config/schema.ts"));
  const { silentLogger } = await import(join(dir, "src/sys/log.ts"));
  // What `midge serve` loads besides the broker (console, cluster, auth links), as in a server.
  await import(join(dir, "src/cli/serve.ts"));
  const config = {
    ...schema.defaults(schema.GLOBAL_KEYS),
    file: "<bench>",
    persistence: false,
    max_inflight_messages: 100,
    max_connections: -1,
    allow_anonymous: true,
    listeners: [],
    bridges: [],
    cluster: null,
  };
  let broker;
  if (existsSync(join(dir, "src/assemble.ts"))) {
    const { assembleBroker } = await import(join(dir, "src/assemble.ts"));
    broker = assembleBroker(config, silentLogger).broker;
  } else {
    const { Broker } = await import(join(dir, "src/broker/broker.ts"));
    broker = new Broker(config, silentLogger);
  }
  await broker.start();

  let written = 0;
  const socket = () => ({
    remoteAddress: "memory",
    remotePort: 0,
    protocol: "memory",
    bufferedAmount: 0,
    write(d: Uint8Array) {
      written += d.length;
    },
    writeFrom(_d: Uint8Array, n: number) {
      written += n;
    },
    end() {},
    destroy() {},
  });
  const tick = () => new Promise<void>((r) => setTimeout(r, 0));
  const client = async (id: string) => {
    const h = broker.accept(socket());
    h.onData(
      packet({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: 4,
        clean: true,
        clientId: id,
        keepalive: 0,
      }),
    );
    await tick();
    return h;
  };

  const pubs = scenario === "pairs" ? 16 : 8;
  const senders: { h: { onData(b: Uint8Array): void }; bytes: Uint8Array }[] = [];
  for (let i = 0; i < pubs; i++) {
    const topic = `bench/${i}`;
    if (scenario === "pairs" || i === 0) {
      const sub = await client(`sub${i}`);
      sub.onData(packet({
        cmd: "subscribe",
        messageId: 1,
        subscriptions: [{ topic: scenario === "pairs" ? topic : "bench/#", qos: 0 }],
      }));
      await tick();
    }
    senders.push({ h: await client(`pub${i}`), bytes: publishes(topic) });
  }

  const run = async (n: number) => {
    for (let r = 0; r < n; r++) {
      for (let i = 0; i < senders.length; i++) senders[i].h.onData(senders[i].bytes);
      // The batch's writes go out in a microtask, as after a socket read.
      await null;
    }
  };
  await run(Math.max(1, rounds >> 2)); // warm-up
  const before = written;
  const t0 = process.cpuUsage();
  await run(rounds);
  const t = process.cpuUsage(t0);
  const messages = rounds * senders.length * batch;
  // Each delivered QoS 0 PUBLISH on bench/<i> with 64 bytes: 2 + 2 + 7 or 8 + 64 bytes.
  if (written - before < messages * 70) throw new Error(`only ${written - before} bytes written`);
  return ((t.user + t.system) * 1000) / messages;
}

if (child) {
  console.log(JSON.stringify(await measure(resolve(child))));
  process.exit(0);
}

const dirs = argv.map((d) => resolve(d));
if (dirs.length === 0) {
  console.error(
    "usage: bun bench/publish_path.ts [--scenario fan-in|pairs] [--rounds N] [--reps N] DIR [DIR ...]",
  );
  process.exit(2);
}
const results = new Map<string, number[]>(dirs.map((d) => [d, []]));
for (let r = 0; r < reps; r++) {
  // Each measurement in a fresh process; the order turns every repetition.
  const order = r % 2 === 0 ? dirs : [...dirs].reverse();
  for (const d of order) {
    const p = spawnSync(process.execPath, [
      import.meta.filename ?? new URL(import.meta.url).pathname,
      "--child",
      d,
      "--scenario",
      scenario,
      "--rounds",
      String(rounds),
      "--batch",
      String(batch),
    ], { encoding: "utf8" });
    if (p.status !== 0) throw new Error(`${d}: ${p.stderr}`);
    results.get(d)!.push(Number(p.stdout.trim().split("\n").pop()));
  }
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
for (const d of dirs) {
  const xs = results.get(d)!;
  console.log(
    `${scenario} ${d}: median ${median(xs).toFixed(1)} ns CPU/msg  (${
      xs.map((x) => x.toFixed(1)).join(", ")
    })`,
  );
}
