/**
 * The HTTP listener: Prometheus /metrics (exposition format, values that move) and the read-only
 * admin API behind admin_token (absent, missing, wrong and right tokens; clients, subscriptions,
 * retained topics).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, endAll, startBroker, type TestBroker } from "./helpers/broker.ts";
import { Ops } from "../src/sys/ops.ts";
import { LagSampler } from "../src/sys/metrics.ts";
import { tokenMatches } from "../src/sys/admin.ts";
import type { Config } from "../src/config/schema.ts";

const TOKEN = "s3cret-token-0123456789";

/** A broker with its Ops (HTTP on 127.0.0.1:0). */
async function start(
  over: Partial<Config> = {},
): Promise<{ tb: TestBroker; ops: Ops; base: string }> {
  const tb = await startBroker({ http_listener: "127.0.0.1:0", sys_interval: 0, ...over });
  const ops = new Ops(tb.broker);
  await ops.start();
  return { tb, ops, base: `http://127.0.0.1:${ops.http!.port}` };
}

async function stop(h: { tb: TestBroker; ops: Ops }): Promise<void> {
  await h.ops.stop();
  await h.tb.stop();
}

interface Family {
  type: string;
  help: string;
  samples: { labels: string; value: number }[];
}

/**
 * Parses Prometheus text exposition format 0.0.4 strictly enough to catch mistakes: every sample
 * belongs to a family announced by HELP and TYPE lines just before it, names and values are valid.
 */
function parseMetrics(text: string): Map<string, Family> {
  const out = new Map<string, Family>();
  assert.ok(text.endsWith("\n"), "ends with a line feed");
  let current: { name: string; help?: string; type?: string } | null = null;
  for (const line of text.slice(0, -1).split("\n")) {
    let m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (m) {
      assert.ok(!out.has(m[1]), `${m[1]} announced twice`);
      current = { name: m[1], help: m[2] };
      continue;
    }
    m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (m) {
      assert.equal(m[1], current?.name, `TYPE for ${m[1]} right after its HELP`);
      current!.type = m[2];
      out.set(m[1], { type: m[2], help: current!.help!, samples: [] });
      continue;
    }
    m =
      /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$/
        .exec(line);
    assert.ok(m, `not a valid sample line: ${JSON.stringify(line)}`);
    const fam = out.get(m[1]);
    assert.ok(fam, `sample ${m[1]} without HELP/TYPE`);
    fam.samples.push({ labels: m[2] ?? "", value: Number(m[3]) });
  }
  for (const [name, f] of out) {
    assert.ok(f.samples.length > 0, `${name} has no sample`);
    if (f.type === "counter") assert.match(name, /_total$/, "counters end in _total");
  }
  return out;
}

function value(m: Map<string, Family>, name: string): number {
  const f = m.get(name);
  assert.ok(f, `metric ${name} is missing`);
  return f.samples[0].value;
}

async function scrape(base: string): Promise<Map<string, Family>> {
  const r = await fetch(`${base}/metrics`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
  return parseMetrics(await r.text());
}

test("/metrics is valid Prometheus text and its counters and gauges follow the traffic", async () => {
  const h = await start();
  const c1 = await connect(h.tb, { clientId: "m1" });
  try {
    const before = await scrape(h.base);
    for (
      const name of [
        "midge_connections",
        "midge_clients_connected",
        "midge_bytes_received_total",
        "midge_bytes_sent_total",
        "midge_publish_received_total",
        "midge_publish_sent_total",
        "midge_publish_dropped_total",
        "midge_messages_queued",
        "midge_messages_inflight",
        "midge_retained_messages",
        "midge_subscriptions",
        "midge_event_loop_lag_seconds",
        "midge_event_loop_lag_max_seconds",
      ]
    ) value(before, name);
    assert.equal(value(before, "midge_clients_connected"), 1);
    assert.equal(value(before, "midge_persistence_enabled"), 0);
    assert.equal(before.get("midge_build_info")!.samples[0].labels.startsWith('{version="'), true);

    const c2 = await connect(h.tb, { clientId: "m2" });
    await c2.subscribeAsync("t/#", { qos: 1 });
    await c1.publishAsync("t/1", "hello", { qos: 1, retain: true });
    await c1.publishAsync("t/2", "world!", { qos: 1 });
    await new Promise((r) => setTimeout(r, 50));
    const after = await scrape(h.base);
    assert.equal(value(after, "midge_clients_connected"), 2);
    assert.equal(value(after, "midge_subscriptions"), 1);
    assert.equal(
      value(after, "midge_retained_messages") - value(before, "midge_retained_messages"),
      1,
      "t/1 (the other is $SYS/broker/version)",
    );
    assert.equal(
      value(after, "midge_publish_received_total") - value(before, "midge_publish_received_total"),
      2,
    );
    assert.equal(
      value(after, "midge_publish_bytes_received_total") -
        value(before, "midge_publish_bytes_received_total"),
      11,
    );
    assert.ok(value(after, "midge_publish_sent_total") >= 2);
    assert.ok(
      value(after, "midge_bytes_received_total") > value(before, "midge_bytes_received_total"),
    );
    assert.ok(value(after, "midge_bytes_sent_total") > value(before, "midge_bytes_sent_total"));
    assert.ok(value(after, "midge_connections_accepted_total") >= 2);
    await endAll(c2);
  } finally {
    await endAll(c1);
    await stop(h);
  }
});

test("/metrics shows persistence commits and their time when the store is on", async () => {
  const dir = mkdtempSync(join(tmpdir(), "midge-metrics-"));
  const h = await start({ persistence: true, persistence_location: dir });
  const c = await connect(h.tb);
  try {
    const before = await scrape(h.base);
    assert.equal(value(before, "midge_persistence_enabled"), 1);
    await c.publishAsync("p/1", "x", { qos: 1, retain: true }); // acknowledged after a commit
    const after = await scrape(h.base);
    assert.ok(
      value(after, "midge_persistence_commits_total") >
        value(before, "midge_persistence_commits_total"),
    );
    assert.equal(value(after, "midge_persistence_commit_errors_total"), 0);
    assert.ok(value(after, "midge_persistence_commit_seconds_total") >= 0);
    value(after, "midge_persistence_last_commit_seconds");
  } finally {
    await endAll(c);
    await stop(h);
    rmSync(dir, { recursive: true, force: true });
  }
});

test("event-loop lag sampler keeps the last sample and the maximum of the last minute", () => {
  const s = new LagSampler(1000); // 60 samples a minute
  s.record(5);
  s.record(80);
  s.record(3);
  assert.equal(s.last, 3);
  assert.equal(s.max, 80);
  for (let i = 0; i < 60; i++) s.record(1);
  assert.equal(s.max, 1, "the 80 ms sample left the one-minute window");
});

test("other paths answer 404, other methods on /metrics 405", async () => {
  const h = await start();
  try {
    assert.equal((await (await fetch(`${h.base}/nothing`)).text()).startsWith("not found"), true);
    const r = await fetch(`${h.base}/metrics`, { method: "POST", body: "x" });
    assert.equal(r.status, 405);
    await r.text();
  } finally {
    await stop(h);
  }
});

test("admin API: off (404) when no admin_token is configured, even with a token", async () => {
  const h = await start({ admin_token: "" });
  try {
    const r = await fetch(`${h.base}/api/clients`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(r.status, 404);
    assert.match((await r.json()).error, /disabled/);
  } finally {
    await stop(h);
  }
});

test("admin API: missing, wrong, truncated and non-Bearer tokens get 401", async () => {
  const h = await start({ admin_token: TOKEN });
  try {
    for (
      const headers of [
        {},
        { authorization: "Bearer wrong-token-0123456789" },
        { authorization: `Bearer ${TOKEN.slice(0, -1)}` },
        { authorization: `Bearer ${TOKEN}x` },
        { authorization: `Basic ${btoa(`admin:${TOKEN}`)}` },
        { authorization: TOKEN },
      ] as Record<string, string>[]
    ) {
      const r = await fetch(`${h.base}/api/clients`, { headers });
      assert.equal(r.status, 401, JSON.stringify(headers));
      assert.match(r.headers.get("www-authenticate") ?? "", /^Bearer/);
      assert.equal((await r.json()).clients, undefined, "nothing revealed");
    }
  } finally {
    await stop(h);
  }
});

test("tokenMatches: exact Bearer token only (scheme case-insensitive)", () => {
  assert.equal(tokenMatches(`Bearer ${TOKEN}`, TOKEN), true);
  assert.equal(tokenMatches(`bearer ${TOKEN}`, TOKEN), true);
  assert.equal(tokenMatches(`Bearer  ${TOKEN} `, TOKEN), true);
  assert.equal(tokenMatches(`Bearer ${TOKEN}0`, TOKEN), false);
  assert.equal(tokenMatches("Bearer ", TOKEN), false);
  assert.equal(tokenMatches(undefined, TOKEN), false);
  assert.equal(tokenMatches("Bearer ", ""), false, "an empty configured token matches nothing");
});

test("admin API: clients, a client's subscriptions, retained topics under a filter", async () => {
  const h = await start({ admin_token: TOKEN });
  const auth = { headers: { authorization: `Bearer ${TOKEN}` } };
  const get = async (path: string) => {
    const r = await fetch(`${h.base}${path}`, auth);
    return { status: r.status, body: await r.json() };
  };
  const a = await connect(h.tb, { clientId: "dev/a", protocolVersion: 5, keepalive: 33 });
  const b = await connect(h.tb, {
    clientId: "b",
    protocolVersion: 4,
    clean: false,
    keepalive: 20,
  });
  try {
    await a.subscribeAsync("x/+/y", { qos: 1, nl: true, rh: 2 });
    await a.subscribeAsync("$share/grp/jobs/#", { qos: 0 });
    for (let i = 0; i < 5; i++) {
      await b.publishAsync(`a/${i}`, "x".repeat(i + 1), { retain: true, qos: 1 });
    }
    await b.publishAsync("other/t", "z", { retain: true, qos: 1 });

    let r = await get("/api/clients");
    assert.equal(r.status, 200);
    assert.equal(r.body.total, 2);
    const ca = r.body.clients.find((c: { id: string }) => c.id === "dev/a");
    assert.equal(ca.connected, true);
    assert.match(ca.address, /^127\.0\.0\.1:\d+$/);
    assert.equal(ca.protocol_version, 5);
    assert.equal(ca.keepalive, 33);
    assert.equal(ca.subscriptions, 2);
    assert.equal(ca.queued, 0);
    assert.equal(ca.inflight, 0);
    const cb = r.body.clients.find((c: { id: string }) => c.id === "b");
    assert.equal(cb.protocol_version, 4);
    assert.equal(cb.keepalive, 20);

    r = await get("/api/clients?limit=1");
    assert.equal(r.body.count, 1);
    assert.equal(r.body.truncated, true);

    // A client id with "/" is URL-encoded in the path.
    r = await get(`/api/clients/${encodeURIComponent("dev/a")}/subscriptions`);
    assert.equal(r.status, 200);
    const subs = r.body.subscriptions.sort((x: { filter: string }, y: { filter: string }) =>
      x.filter < y.filter ? -1 : 1
    );
    assert.deepEqual(subs, [
      {
        filter: "$share/grp/jobs/#",
        qos: 0,
        no_local: false,
        retain_as_published: false,
        retain_handling: 0,
        subscription_identifier: null,
        share_group: "grp",
      },
      {
        filter: "x/+/y",
        qos: 1,
        no_local: true,
        retain_as_published: false,
        retain_handling: 2,
        subscription_identifier: null,
        share_group: null,
      },
    ]);
    assert.equal((await get("/api/clients/nobody/subscriptions")).status, 404);

    r = await get("/api/retained?filter=a/%23&limit=3");
    assert.equal(r.status, 200);
    assert.equal(r.body.total, 5);
    assert.equal(r.body.count, 3);
    assert.equal(r.body.truncated, true);
    assert.deepEqual(
      r.body.messages.map((m: { topic: string; bytes: number }) => [m.topic, m.bytes]),
      [["a/0", 1], ["a/1", 2], ["a/2", 3]],
    );
    r = await get("/api/retained?filter=%23");
    assert.equal(r.body.total, 6);
    assert.equal((await get("/api/retained?filter=a/%23/b")).status, 400, "invalid filter");
    assert.equal((await get("/api/retained?limit=0")).status, 400, "limit out of range");
    assert.equal((await get("/api/nothing")).status, 404);

    // The persistent v3 client goes offline: still listed, not connected.
    await endAll(b);
    await new Promise((r) => setTimeout(r, 50));
    r = await get("/api/clients");
    const off = r.body.clients.find((c: { id: string }) => c.id === "b");
    assert.equal(off.connected, false);
    assert.equal(off.address, null);

    const post = await fetch(`${h.base}/api/clients`, { ...auth, method: "DELETE" });
    assert.equal(post.status, 405, "read-only");
    await post.text();
  } finally {
    await endAll(a, b);
    await stop(h);
  }
});
