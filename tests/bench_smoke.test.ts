/**
 * `midge bench` smoke tests: tiny runs against a broker in this process. They check that the
 * load generator's counts add up (every message counted once, none lost at QoS 1/2), not speed.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { type BenchOptions, makePlans, runBench } from "../src/loadgen/run.ts";
import { Histogram } from "../src/loadgen/histogram.ts";
import { stealSeconds } from "../src/loadgen/proc.ts";
import { benchOptions } from "../src/cli/bench.ts";
import { startBroker } from "./helpers/broker.ts";

function opts(port: number, over: Partial<BenchOptions>): BenchOptions {
  return {
    ...benchOptions({ port: String(port) }, [over.scenario ?? "pairwise"]),
    duration: 0.4,
    warmup: 0.1,
    ...over,
  };
}

test("bench pairwise QoS 1: every message arrives once, none lost [MQTT-4.3.2]", async () => {
  const tb = await startBroker();
  try {
    const r = await runBench(opts(tb.port, { scenario: "pairwise", qos: 1, clients: 3 }));
    assert.deepEqual(r.errors, []);
    assert.ok(r.sent > 0, "something was published");
    assert.equal(r.expected, r.sent, "one receiver per message");
    assert.equal(r.received, r.expected);
    assert.equal(r.lost, 0);
    assert.equal(r.duplicates, 0);
    assert.equal(r.foreign, 0);
    assert.ok(r.msgRate > 0 && r.latencyMs.p99 >= r.latencyMs.p50);
    if (process.platform === "linux") {
      // Hypervisor steal over the window: a fraction of the machine's cores, never negative.
      assert.ok(r.stealCpu !== undefined && r.stealCpu >= 0, `stealCpu ${r.stealCpu}`);
    }
  } finally {
    await tb.stop();
  }
});

test("bench latency at a fixed rate: the rate holds, and the load generator reports its CPU and its longest pause", async () => {
  const tb = await startBroker();
  try {
    const r = await runBench(
      opts(tb.port, { scenario: "latency", qos: 1, clients: 4, rate: 2000, duration: 0.5 }),
    );
    assert.deepEqual(r.errors, []);
    assert.equal(r.lost, 0);
    assert.ok(Math.abs(r.publishRate - 2000) < 300, `published ${r.publishRate}/s`);
    // Taken when the window ends, even when the result is asked for before its timer ran.
    assert.ok(r.loadGenCpu > 0, `load generator CPU ${r.loadGenCpu}`);
    // The publishing timer is due every millisecond, so its longest gap is at least about that.
    assert.ok(r.loadGenPauseMs !== undefined && r.loadGenPauseMs >= 0.5, `${r.loadGenPauseMs}`);
  } finally {
    await tb.stop();
  }
});

test("bench fan-out QoS 2 and fan-in QoS 0: counts per receiver add up", async () => {
  const tb = await startBroker();
  try {
    const out = await runBench(opts(tb.port, { scenario: "fan-out", qos: 2, clients: 3 }));
    assert.deepEqual(out.errors, []);
    assert.equal(out.expected, out.sent * 3, "each message goes to 3 subscribers");
    assert.equal(out.received, out.expected);
    assert.equal(out.lost + out.duplicates, 0);
    const fin = await runBench(opts(tb.port, { scenario: "fan-in", qos: 0, clients: 3 }));
    assert.deepEqual(fin.errors, []);
    assert.equal(fin.expected, fin.sent);
    assert.equal(fin.received + fin.lost, fin.expected);
  } finally {
    await tb.stop();
  }
});

test("bench retained and conn-storm report what they did", async () => {
  const tb = await startBroker();
  try {
    const r = await runBench(opts(tb.port, { scenario: "retained", topics: 300 }));
    assert.deepEqual(r.errors, []);
    assert.equal(r.retained?.received, 300);
    assert.equal(r.retained?.duplicates, 0);
    assert.ok(tb.broker.retained.size >= 300);
    // More retained bytes than the slow-reader bound (4 MB): all still reach the subscriber.
    const big = await runBench(
      opts(tb.port, { scenario: "retained", topics: 250, payload: 20_000 }),
    );
    assert.deepEqual(big.errors, []);
    assert.equal(big.retained?.received, 250);
    const s = await runBench(opts(tb.port, { scenario: "conn-storm", clients: 40, hold: 0 }));
    assert.deepEqual(s.errors, []);
    assert.equal(s.storm?.connections, 40);
    assert.equal(s.storm?.failed, 0);
  } finally {
    await tb.stop();
  }
});

test("bench plans: fan-in shares the subscriber's outstanding budget; workers split roles", () => {
  const o = opts(1883, { scenario: "fan-in", clients: 8, outstanding: 800, workers: 3 });
  const plans = makePlans(o, "x");
  assert.equal(plans.length, 3);
  assert.equal(plans[0].outstanding, 100);
  assert.equal(plans[0].subs.length, 1);
  assert.equal(plans.reduce((a, p) => a + p.pubs.length, 0), 8);
  // Publishers in other workers than their subscriber get credit through the coordinator.
  assert.ok(plans[1].pubs.every((p) => p.remote));
  const storm = makePlans(opts(1883, { scenario: "conn-storm", clients: 45_000, workers: 2 }), "y");
  assert.equal(storm[0].storm!.count + storm[1].storm!.count, 45_000);
  assert.equal(storm[0].localAddresses.length, 3, "one source address per 20,000 connections");
});

test("bench histogram: quantiles within 0.1 % and sparse merge", () => {
  const h = new Histogram();
  for (let i = 1; i <= 100_000; i++) h.record(i);
  const p50 = h.quantile(0.5), p99 = h.quantile(0.99);
  assert.ok(Math.abs(p50 - 50_000) / 50_000 < 0.002, `p50 ${p50}`);
  assert.ok(Math.abs(p99 - 99_000) / 99_000 < 0.002, `p99 ${p99}`);
  const g = new Histogram();
  g.addSparse(h.toSparse(), h.max);
  assert.equal(g.total, 100_000);
  assert.equal(g.quantile(0.999), h.quantile(0.999));
});

test("stealSeconds reads the machine's steal time from /proc/stat and never goes back", () => {
  const a = stealSeconds();
  if (process.platform !== "linux") {
    assert.equal(a, undefined);
    return;
  }
  assert.ok(a !== undefined && Number.isFinite(a) && a >= 0, `steal ${a}`);
  const b = stealSeconds()!;
  assert.ok(b >= a);
});

test("bench --jwt-secret: clients log in with tokens whose acl claim grants their own topic; a broker with another secret refuses them", async () => {
  const secret = "bench-smoke-secret-longer-than-32-bytes";
  const tb = await startBroker({ auth_chain: ["jwt"], jwt_secret: secret, allow_anonymous: false });
  try {
    const o = { ...opts(tb.port, { scenario: "fan-in", qos: 1, clients: 3 }), jwtSecret: secret };
    assert.equal(benchOptions({ "jwt-secret": secret }, ["fan-in"]).jwtSecret, secret);
    const r = await runBench(o);
    assert.deepEqual(r.errors, []);
    assert.ok(r.sent > 0);
    assert.equal(r.lost, 0, "every publish and delivery allowed by the acl claims");
    await assert.rejects(
      runBench({ ...o, jwtSecret: "another-secret-longer-than-32-bytes" }),
      /CONNACK refused with code 4/,
    );
  } finally {
    await tb.stop();
  }
});
