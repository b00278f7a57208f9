/**
 * The load generator's coordinator: turns a scenario into a plan per worker, runs the workers
 * (in this process, or as child processes of the same executable with `--workers N`), relays QoS 0
 * credit between them, samples the broker's CPU and memory from /proc when given its pid, and
 * adds everything up into one result.
 */
import process from "node:process";
import { spawn } from "node:child_process";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { Histogram } from "./histogram.ts";
import type {
  FromWorker,
  Kind,
  PubPlan,
  SubPlan,
  ToWorker,
  WorkerPlan,
  WorkerResult,
} from "./plan.ts";
import { cpuSeconds, statusKb, stealSeconds } from "./proc.ts";
import { sleep, Worker } from "./worker.ts";

export const SCENARIOS = [
  "fan-in",
  "fan-out",
  "pairwise",
  "latency",
  "conn-storm",
  "retained",
] as const;
export type Scenario = typeof SCENARIOS[number];

export interface BenchOptions {
  scenario: Scenario;
  host: string;
  port: number;
  /** Cluster runs: the ports publishers and subscribers connect to, round robin (empty: port). */
  pubPorts?: number[];
  subPorts?: number[];
  qos: 0 | 1 | 2;
  /** MQTT protocol level, 4 (3.1.1) or 5. */
  version: 4 | 5;
  payload: number;
  /** Seconds measured, after the warm-up. */
  duration: number;
  warmup: number;
  /** Publishers (fan-in), subscribers (fan-out), pairs (pairwise, latency), connections (conn-storm). */
  clients: number;
  workers: number;
  inflight: number;
  outstanding: number;
  /** latency: messages per second in total. */
  rate: number;
  /** retained: topics. */
  topics: number;
  /** conn-storm: CONNECTs waiting for CONNACK at once (per worker), and seconds to hold. */
  concurrency: number;
  hold: number;
  /** Source addresses 127.0.0.1.. to spread connections over (0 = automatic). */
  addresses: number;
  /** Subscribers with persistent sessions (a broker with persistence stores what it queues). */
  persistent: boolean;
  /** Clients log in with tokens signed with this HMAC secret (see src/loadgen/token.ts). */
  jwtSecret?: string;
  brokerPid?: number;
}

/** Defaults per scenario for `clients`. */
export const DEFAULT_CLIENTS: Record<Scenario, number> = {
  "fan-in": 8,
  "fan-out": 16,
  pairwise: 16,
  latency: 16,
  "conn-storm": 10_000,
  retained: 1,
};

export interface BenchResult {
  scenario: Scenario;
  qos: number;
  version: number;
  payload: number;
  persistent: boolean;
  clients: number;
  workers: number;
  durationS: number;
  /** PUBLISH packets sent per second inside the window. */
  publishRate: number;
  /** Messages received per second inside the window (a fan-out message counts once per receiver). */
  msgRate: number;
  sent: number;
  /** Deliveries expected (sent × receivers) and received once each. */
  expected: number;
  received: number;
  lost: number;
  duplicates: number;
  reordered: number;
  foreign: number;
  latencyMs: { p50: number; p99: number; p999: number; max: number };
  /** CPU used inside the window, in cores (1.0 = one core busy all the time). */
  loadGenCpu: number;
  brokerCpu?: number;
  /** CPU time the whole machine lost to the hypervisor inside the window, in cores (Linux). */
  stealCpu?: number;
  /**
   * Fixed rate: the load generator's longest pause inside the window (ms), i.e. the longest
   * time its 1 ms publishing timer did not run. Latencies include it, whatever the broker did.
   */
  loadGenPauseMs?: number;
  brokerRssKb?: number;
  loadGenRssKb: number;
  loadAverage: number[];
  storm?: {
    connections: number;
    failed: number;
    connectRate: number;
    rssBeforeKb?: number;
    rssAfterKb?: number;
    perConnectionKb?: number;
  };
  retained?: {
    topics: number;
    loadRate: number;
    receiveS: number;
    receiveRate: number;
    received: number;
    duplicates: number;
  };
  errors: string[];
}

interface Handle {
  send(m: ToWorker): void;
  /** Ends when the worker has exited or finished. */
  exited: Promise<void>;
}

/** The command that starts another copy of this program (the compiled executable, or runtime + script). */
export function selfCommand(): string[] {
  // deno-lint-ignore no-explicit-any
  if ((globalThis as any).Deno) {
    return [process.execPath, "run", "-A", fileURLToPath(new URL("../main.ts", import.meta.url))];
  }
  const script = process.argv[1];
  if (script && /\.(ts|js|mjs|cjs)$/.test(script) && !script.startsWith("/$bunfs")) {
    return [process.execPath, script];
  }
  return [process.execPath];
}

/** Build the plans: roles spread over `n` workers. */
export function makePlans(o: BenchOptions, runId: string): WorkerPlan[] {
  const kind: Kind = o.scenario === "conn-storm"
    ? "storm"
    : o.scenario === "retained"
    ? "retained"
    : "flow";
  const n = kind === "retained" ? 1 : Math.max(1, o.workers);
  const base = `bench/${runId}`;
  const cid = (s: string) => `mb${runId}${s}`;
  const plans: WorkerPlan[] = Array.from({ length: n }, () => ({
    kind,
    host: o.host,
    port: o.port,
    pubPorts: o.pubPorts ?? [],
    subPorts: o.subPorts ?? [],
    version: o.version,
    qos: o.qos,
    payload: o.payload,
    inflight: o.inflight,
    // --outstanding is per subscriber: shared by the publishers it listens to.
    outstanding: Math.max(1, Math.floor(o.outstanding / (o.scenario === "fan-in" ? o.clients : 1))),
    rate: 0,
    pubs: [],
    subs: [],
    localAddresses: [],
    persistent: o.persistent,
    jwtSecret: o.jwtSecret ?? "",
    reportMs: n > 1 ? 2 : 20,
  }));
  const pubWorker: number[] = [];
  const subWorkers = new Map<number, Set<number>>();
  const addPub = (w: number, p: PubPlan) => {
    plans[w].pubs.push(p);
    pubWorker[p.idx] = w;
  };
  const addSub = (w: number, s: SubPlan) => {
    plans[w].subs.push(s);
    for (let i = s.pubFrom; i < s.pubTo; i++) {
      if (!subWorkers.has(i)) subWorkers.set(i, new Set());
      subWorkers.get(i)!.add(w);
    }
  };
  const c = o.clients;
  if (o.scenario === "fan-in") {
    addSub(0, { idx: 0, clientId: cid("s0"), filter: `${base}/in/+`, pubFrom: 0, pubTo: c });
    for (let i = 0; i < c; i++) {
      // Publishers go to the other workers first: the subscriber's worker has the most to read.
      const w = n === 1 ? 0 : 1 + (i % (n - 1));
      addPub(w, { idx: i, clientId: cid(`p${i}`), topic: `${base}/in/${i}`, remote: false });
    }
  } else if (o.scenario === "fan-out") {
    addPub(0, { idx: 0, clientId: cid("p0"), topic: `${base}/out`, remote: false });
    for (let i = 0; i < c; i++) {
      const w = n === 1 ? 0 : 1 + (i % (n - 1));
      addSub(w, { idx: i, clientId: cid(`s${i}`), filter: `${base}/out`, pubFrom: 0, pubTo: 1 });
    }
  } else if (kind === "flow") {
    for (let i = 0; i < c; i++) {
      const w = i % n;
      addSub(w, {
        idx: i,
        clientId: cid(`s${i}`),
        filter: `${base}/pair/${i}`,
        pubFrom: i,
        pubTo: i + 1,
      });
      addPub(w, { idx: i, clientId: cid(`p${i}`), topic: `${base}/pair/${i}`, remote: false });
    }
  } else if (kind === "storm") {
    const per = Math.ceil(c / n);
    for (let w = 0; w < n; w++) {
      const count = Math.max(0, Math.min(per, c - w * per));
      plans[w].storm = { count, concurrency: o.concurrency, clientPrefix: cid(`i${w}-`) };
    }
  } else {
    plans[0].retained = {
      topics: o.topics,
      prefix: `${base}/r/`,
      filter: "#",
      clientPrefix: cid("r"),
    };
  }
  for (const p of plans) {
    for (const pub of p.pubs) {
      const ws = subWorkers.get(pub.idx);
      pub.remote = !!ws && [...ws].some((w) => w !== pubWorker[pub.idx]);
    }
  }
  if (o.scenario === "latency") {
    const total = plans.reduce((a, p) => a + p.pubs.length, 0);
    for (const p of plans) p.rate = o.rate * p.pubs.length / total;
  }
  // Source addresses: one ephemeral port range (about 28k ports) per address.
  const conns = kind === "storm" ? c : plans.reduce((a, p) => a + p.pubs.length + p.subs.length, 0);
  const addrs = o.addresses > 0 ? o.addresses : conns > 20_000 ? Math.ceil(conns / 20_000) : 0;
  for (let w = 0; w < n; w++) {
    plans[w].localAddresses = Array.from({ length: addrs }, (_, i) => `127.0.0.${1 + i}`);
  }
  return plans;
}

/** Run one benchmark and add up what every worker measured. */
export async function runBench(o: BenchOptions): Promise<BenchResult> {
  const runId = Math.random().toString(36).slice(2, 8);
  const plans = makePlans(o, runId);
  const n = plans.length;
  const kind = plans[0].kind;
  const results: (WorkerResult | undefined)[] = new Array(n);
  const errors: string[] = [];
  const ready: Promise<void>[] = [];
  const readyResolvers: ((e?: string) => void)[] = [];
  for (let i = 0; i < n; i++) {
    ready.push(
      new Promise((res, rej) => {
        readyResolvers[i] = (e) => (e ? rej(new Error(e)) : res());
      }),
    );
  }
  const loadAverage = loadavg().map((x) => Math.round(x * 100) / 100);

  // Credit relay and drain bookkeeping.
  const owner: number[] = [];
  const subWorkersOf = new Map<number, number[]>();
  const remote = new Set<number>();
  plans.forEach((p, w) => {
    for (const pub of p.pubs) {
      owner[pub.idx] = w;
      if (pub.remote) remote.add(pub.idx);
    }
    for (const s of p.subs) {
      for (let i = s.pubFrom; i < s.pubTo; i++) {
        const l = subWorkersOf.get(i) ?? [];
        if (!l.includes(w)) l.push(w);
        subWorkersOf.set(i, l);
      }
    }
  });
  const rxBy: Map<number, number>[] = plans.map(() => new Map());
  const sentBy = new Map<number, number>();
  let sentReports = 0;
  let lastProgress = Date.now();
  const least = (idx: number) => {
    let m = Infinity;
    for (const w of subWorkersOf.get(idx) ?? []) m = Math.min(m, rxBy[w].get(idx) ?? 0);
    return m;
  };
  const connected: Extract<FromWorker, { t: "connected" }>[] = [];
  let retainedMsg: Extract<FromWorker, { t: "retained" }> | undefined;
  const waiters: (() => void)[] = [];
  const poke = () => {
    for (const w of waiters.splice(0)) w();
  };
  const handles: Handle[] = [];

  const onMessage = (w: number, m: FromWorker) => {
    switch (m.t) {
      case "ready":
        readyResolvers[w](m.error);
        return;
      case "rx": {
        const credit = new Map<number, number[]>();
        for (let i = 0; i < m.c.length; i += 2) {
          rxBy[w].set(m.c[i], m.c[i + 1]);
          const idx = m.c[i];
          if (remote.has(idx)) {
            const l = credit.get(owner[idx]) ?? [];
            l.push(idx, least(idx));
            credit.set(owner[idx], l);
          }
        }
        for (const [ow, c] of credit) handles[ow].send({ t: "credit", c });
        lastProgress = Date.now();
        poke();
        return;
      }
      case "sent":
        for (let i = 0; i < m.c.length; i += 2) sentBy.set(m.c[i], m.c[i + 1]);
        sentReports++;
        poke();
        return;
      case "connected":
        connected.push(m);
        poke();
        return;
      case "retained":
        retainedMsg = m;
        poke();
        return;
      case "result":
        results[w] = m.r;
        poke();
        return;
    }
  };
  const until = async (cond: () => boolean, timeoutMs: number) => {
    const end = Date.now() + timeoutMs;
    while (!cond() && Date.now() < end) {
      await Promise.race([new Promise<void>((r) => waiters.push(r)), sleep(50)]);
    }
    return cond();
  };

  // Start the workers.
  if (n === 1 && o.workers <= 1) {
    const worker = new Worker(plans[0], (m) => onMessage(0, m));
    handles.push({ send: (m) => queueMicrotask(() => worker.handle(m)), exited: worker.done });
    void worker.setup();
  } else {
    const cmd = selfCommand();
    for (let w = 0; w < n; w++) handles.push(spawnWorker(cmd, plans[w], w, onMessage, errors));
  }
  try {
    await Promise.all(ready);
  } catch (e) {
    for (const h of handles) h.send({ t: "finish" });
    await Promise.race([Promise.all(handles.map((h) => h.exited)), sleep(3000)]);
    throw e;
  }

  const pid = o.brokerPid;
  const rssBefore = pid ? statusKb(pid) : undefined;
  const at = Date.now() + 100;
  const warmupMs = kind === "flow" ? o.warmup * 1000 : 0;
  const durationMs = kind === "flow" ? o.duration * 1000 : 0;
  for (const h of handles) h.send({ t: "start", at, warmupMs, durationMs });

  let brokerCpu: number | undefined;
  let stealCpu: number | undefined;
  let brokerRssKb: number | undefined;
  let storm: BenchResult["storm"];
  let retained: BenchResult["retained"];
  if (kind === "flow") {
    await sleep(at + warmupMs - Date.now());
    const cpu0 = pid ? cpuSeconds(pid) : undefined;
    const steal0 = stealSeconds();
    await sleep(at + warmupMs + durationMs - Date.now());
    const cpu1 = pid ? cpuSeconds(pid) : undefined;
    const steal1 = stealSeconds();
    if (cpu0 !== undefined && cpu1 !== undefined) brokerCpu = (cpu1 - cpu0) / o.duration;
    if (steal0 !== undefined && steal1 !== undefined) stealCpu = (steal1 - steal0) / o.duration;
    brokerRssKb = pid ? statusKb(pid) : undefined;
    // Drain: until every subscriber has every message, or nothing moved for a second.
    await until(() => sentReports === n, 10_000);
    lastProgress = Date.now();
    const drained = () => {
      for (const [idx, s] of sentBy) if (least(idx) < s) return false;
      return true;
    };
    await until(() => drained() || Date.now() - lastProgress > 1000, 15_000);
    if (process.env.MIDGE_BENCH_DEBUG) {
      for (const [idx, s] of sentBy) console.error(`pub ${idx}: sent ${s} least ${least(idx)}`);
    }
  } else if (kind === "storm") {
    const cpu0 = pid ? cpuSeconds(pid) : undefined;
    await until(() => connected.length === n, 600_000);
    const cpu1 = pid ? cpuSeconds(pid) : undefined;
    const ok = connected.reduce((a, c) => a + c.ok, 0);
    const failed = connected.reduce((a, c) => a + c.failed, 0);
    const first = Math.min(...connected.map((c) => c.firstAt));
    const last = Math.max(...connected.map((c) => c.lastAt));
    for (const c of connected) if (c.error) errors.push(`conn-storm: ${c.error}`);
    await sleep(o.hold * 1000);
    const rssAfter = pid ? statusKb(pid) : undefined;
    brokerRssKb = rssAfter;
    if (cpu0 !== undefined && cpu1 !== undefined && last > first) {
      brokerCpu = (cpu1 - cpu0) / ((last - first) / 1000);
    }
    storm = {
      connections: ok,
      failed,
      connectRate: last > first ? ok / ((last - first) / 1000) : 0,
      rssBeforeKb: rssBefore,
      rssAfterKb: rssAfter,
      perConnectionKb: rssBefore !== undefined && rssAfter !== undefined && ok > 0
        ? (rssAfter - rssBefore) / ok
        : undefined,
    };
  } else {
    await until(() => retainedMsg !== undefined, 900_000);
    const r = retainedMsg!;
    if (r.error) errors.push(`retained: ${r.error}`);
    brokerRssKb = pid ? statusKb(pid) : undefined;
    retained = {
      topics: o.topics,
      loadRate: r.loadMs > 0 ? o.topics / (r.loadMs / 1000) : 0,
      receiveS: r.receiveMs / 1000,
      receiveRate: r.receiveMs > 0 ? r.received / (r.receiveMs / 1000) : 0,
      received: r.received,
      duplicates: r.dup,
    };
  }

  for (const h of handles) h.send({ t: "finish" });
  await until(() => results.every((r) => r !== undefined), 10_000);
  await Promise.race([Promise.all(handles.map((h) => h.exited)), sleep(5000)]);

  // Add up.
  const hist = new Histogram();
  let sent = 0, sentInWindow = 0, received = 0, receivedInWindow = 0;
  let duplicates = 0, reordered = 0, foreign = 0, cpuUs = 0, lgRss = 0, pauseUs = 0;
  const uniq = new Map<number, [number, number]>();
  const sentOf = new Map<number, number>();
  results.forEach((r, w) => {
    if (!r) {
      errors.push(`worker ${w} sent no result`);
      return;
    }
    sent += r.sent;
    sentInWindow += r.sentInWindow;
    received += r.received;
    receivedInWindow += r.receivedInWindow;
    duplicates += r.duplicates;
    reordered += r.reordered;
    foreign += r.foreign;
    cpuUs += r.cpuUser + r.cpuSystem;
    lgRss += r.rssKb;
    pauseUs = Math.max(pauseUs, r.maxPauseUs);
    hist.addSparse(r.hist, r.histMax);
    for (let i = 0; i < r.uniq.length; i += 3) {
      const e = uniq.get(r.uniq[i]) ?? [0, 0];
      e[0] += r.uniq[i + 1];
      e[1] += r.uniq[i + 2];
      uniq.set(r.uniq[i], e);
    }
    for (let i = 0; i < r.sentBy.length; i += 2) sentOf.set(r.sentBy[i], r.sentBy[i + 1]);
    for (const e of r.errors) errors.push(`worker ${w}: ${e}`);
  });
  let expected = 0, lost = 0;
  for (const [idx, s] of sentOf) {
    const [u, subs] = uniq.get(idx) ?? [0, 0];
    expected += s * subs;
    lost += s * subs - u;
  }
  const secs = kind === "flow"
    ? o.duration
    : storm && storm.connectRate > 0
    ? storm.connections / storm.connectRate
    : retainedMsg
    ? (retainedMsg.loadMs + retainedMsg.receiveMs) / 1000
    : 0;
  const ms = (us: number) => Math.round(us) / 1000;
  return {
    scenario: o.scenario,
    qos: o.qos,
    version: o.version,
    payload: Math.max(16, o.payload),
    persistent: o.persistent,
    clients: kind === "retained" ? 2 : o.clients,
    workers: o.workers,
    durationS: o.duration,
    publishRate: kind === "flow" ? sentInWindow / o.duration : 0,
    msgRate: kind === "flow" ? receivedInWindow / o.duration : 0,
    sent,
    expected,
    received,
    lost,
    duplicates,
    reordered,
    foreign,
    latencyMs: {
      p50: ms(hist.quantile(0.5)),
      p99: ms(hist.quantile(0.99)),
      p999: ms(hist.quantile(0.999)),
      max: ms(hist.max),
    },
    loadGenCpu: secs > 0 ? cpuUs / 1e6 / secs : 0,
    brokerCpu,
    stealCpu,
    loadGenPauseMs: o.scenario === "latency" ? ms(pauseUs) : undefined,
    brokerRssKb,
    loadGenRssKb: lgRss,
    loadAverage,
    storm,
    retained,
    errors,
  };
}

function spawnWorker(
  cmd: string[],
  plan: WorkerPlan,
  w: number,
  onMessage: (w: number, m: FromWorker) => void,
  errors: string[],
): Handle {
  const child = spawn(cmd[0], [...cmd.slice(1), "bench", "--worker"], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  let buf = "";
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (d: string) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!line.trim()) continue;
      try {
        onMessage(w, JSON.parse(line));
      } catch {
        errors.push(`worker ${w}: unexpected output ${JSON.stringify(line.slice(0, 200))}`);
      }
    }
  });
  const exited = new Promise<void>((r) => child.on("exit", () => r()));
  child.on("exit", (code) => {
    if (code) {
      errors.push(`worker ${w} exited with code ${code}`);
      onMessage(w, { t: "ready", error: `worker ${w} exited with code ${code}` });
    }
  });
  const send = (m: ToWorker) => {
    if (child.stdin!.writable) child.stdin!.write(JSON.stringify(m) + "\n");
  };
  send({ t: "plan", plan });
  return { send, exited };
}

/** `midge bench --worker`: read the plan and then commands from stdin, answer on stdout. */
export async function runWorkerProcess(): Promise<number> {
  let worker: Worker | null = null;
  let buf = "";
  const out = (m: FromWorker) => process.stdout.write(JSON.stringify(m) + "\n");
  const finished = new Promise<void>((resolve) => {
    process.stdin.setEncoding("utf8");
    process.stdin.on("data", (d: string) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const m = JSON.parse(buf.slice(0, nl)) as ToWorker;
        buf = buf.slice(nl + 1);
        if (m.t === "plan") {
          worker = new Worker(m.plan, out);
          worker.done.then(() => resolve());
          void worker.setup();
        } else worker?.handle(m);
      }
    });
    process.stdin.on("end", () => {
      if (!worker) resolve();
    });
  });
  await finished;
  // Let stdout drain, then leave (sockets may still linger in the runtime).
  await sleep(50);
  process.exit(0);
}
