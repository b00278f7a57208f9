/**
 * The admin API behind the web console: sign-in and its cookie, wrong tokens, CSRF on every
 * write, the write operations (kick, delete session, delete retained, publish, dynamic-security
 * commands) and their log lines, client search and paging over 100k sessions, the overview's
 * history, the topic tree, the log tail, the message stream, the security view, and HTTPS.
 */
import { test } from "node:test";
import { Buffer } from "node:buffer";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { get as httpGet } from "node:http";
import { request as httpsRequest } from "node:https";
import { gunzipSync } from "node:zlib";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, endAll, testConfig, until } from "./helpers/broker.ts";
import { makeCerts } from "./helpers/certs.ts";
import type { Broker } from "../src/broker/broker.ts";
import { assembleBroker } from "../src/assemble.ts";
import { Session } from "../src/broker/session.ts";
import { outgoing } from "../src/broker/outgoing.ts";
import { Logger } from "../src/sys/log.ts";
import { Ops } from "../src/sys/ops.ts";
import { plainHttpWarning } from "../src/sys/http.ts";
import { MAX_SIGNINS } from "../src/sys/console_auth.ts";
import { LogRing } from "../src/sys/log_ring.ts";
import { TopicStats } from "../src/sys/topic_stats.ts";
import { Tap } from "../src/sys/tap.ts";
import { History } from "../src/sys/history.ts";
import { LagSampler } from "../src/sys/metrics.ts";
import type { Config } from "../src/config/schema.ts";
import { parseConfig } from "../src/config/load.ts";
import { hashPassword } from "../src/auth/password.ts";
import type { ControlHandler, Principal } from "../src/auth/chain_types.ts";

const TOKEN = "console-token-0123456789";

interface H {
  broker: Broker;
  ops: Ops;
  base: string;
  mqtt: string;
  stop(): Promise<void>;
}

/** A broker whose log keeps notices (for the ring) but prints nothing, with its Ops. */
async function start(over: Partial<Config> = {}): Promise<H> {
  const log = new Logger(["error", "warning", "notice", "information"], { sinks: [] });
  const broker = assembleBroker(
    testConfig({ http_listener: "127.0.0.1:0", sys_interval: 0, admin_token: TOKEN, ...over }),
    log,
  ).broker;
  const [l] = await broker.start();
  const ops = new Ops(broker);
  await ops.start();
  const scheme = ops.http!.tls ? "https" : "http";
  return {
    broker,
    ops,
    base: `${scheme}://127.0.0.1:${ops.http!.port}`,
    mqtt: `mqtt://127.0.0.1:${l.port}`,
    stop: async () => {
      await ops.stop();
      await broker.stop();
    },
  };
}

/** Signs in with the token; returns the cookie header value and the CSRF token. */
async function signIn(h: H): Promise<{ cookie: string; csrf: string; setCookie: string }> {
  const r = await fetch(`${h.base}/api/session`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token: TOKEN }),
  });
  assert.equal(r.status, 200);
  const body = await r.json();
  const setCookie = r.headers.get("set-cookie") ?? "";
  return { cookie: setCookie.split(";")[0], csrf: body.csrf, setCookie };
}

async function call(
  h: H,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: unknown,
): Promise<{ status: number; body: any }> {
  const r = await fetch(`${h.base}${path}`, {
    method,
    headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch { /* not JSON */ }
  return { status: r.status, body: parsed };
}

const bearer = { authorization: `Bearer ${TOKEN}` };

test("console sign-in: wrong tokens get nothing, the cookie is HttpOnly and SameSite=Strict", {
  timeout: 30_000,
}, async () => {
  const h = await start();
  const c = await connect({ url: h.mqtt } as never, { clientId: "watched" });
  try {
    // A wrong token at sign-in: 401, no cookie.
    const bad = await fetch(`${h.base}/api/session`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ token: "wrong-token-0123456789" }),
    });
    assert.equal(bad.status, 401);
    assert.equal(bad.headers.get("set-cookie"), null);
    assert.equal((await bad.json()).csrf, undefined);

    // Every read with a wrong Bearer token, a forged cookie or nothing: 401 and no data.
    const paths = [
      "/api/clients",
      "/api/clients/watched",
      "/api/overview",
      "/api/topics",
      "/api/logs",
      "/api/security",
      "/api/retained",
      "/api/messages/stream?filter=%23",
    ];
    for (const path of paths) {
      for (
        const headers of [
          {},
          { authorization: "Bearer wrong-token-0123456789" },
          { cookie: "midge_console=forged-session-id" },
        ] as Record<string, string>[]
      ) {
        const r = await call(h, "GET", path, headers);
        assert.equal(r.status, 401, `${path} ${JSON.stringify(headers)}`);
        assert.deepEqual(Object.keys(r.body), ["error"], "nothing but the error");
      }
    }
    // A write with a wrong token: refused, nothing happens.
    const kick = await call(h, "POST", "/api/clients/watched/kick", {
      authorization: "Bearer wrong-token-0123456789",
    });
    assert.equal(kick.status, 401);
    assert.equal(h.broker.sessions.get("watched")?.connection?.state, "open");

    const s = await signIn(h);
    assert.match(s.setCookie, /^midge_console=[\w-]{20,};/);
    assert.match(s.setCookie, /;\s*HttpOnly/i);
    assert.match(s.setCookie, /;\s*SameSite=Strict/i);
    assert.doesNotMatch(s.setCookie, /Secure/, "plain HTTP: no Secure flag");
    assert.ok(s.csrf.length >= 20);
    const me = await call(h, "GET", "/api/session", { cookie: s.cookie });
    assert.deepEqual(me.body, { who: "admin_token", csrf: s.csrf });
    assert.equal((await call(h, "GET", "/api/clients", { cookie: s.cookie })).body.total, 1);

    // Sign-out needs the CSRF token too, and ends the session.
    assert.equal((await call(h, "DELETE", "/api/session", { cookie: s.cookie })).status, 403);
    const out = await call(h, "DELETE", "/api/session", {
      cookie: s.cookie,
      "x-csrf-token": s.csrf,
    });
    assert.equal(out.status, 200);
    assert.equal((await call(h, "GET", "/api/clients", { cookie: s.cookie })).status, 401);
  } finally {
    await endAll(c);
    await h.stop();
  }
});

test("console writes: refused without the CSRF token, a wrong one, a form body or another origin", {
  timeout: 30_000,
}, async () => {
  const h = await start();
  const c = await connect({ url: h.mqtt } as never, { clientId: "victim" });
  try {
    const s = await signIn(h);
    const attempts: [string, Record<string, string>, string | undefined][] = [
      ["no CSRF header", { cookie: s.cookie }, undefined],
      ["wrong CSRF token", { cookie: s.cookie, "x-csrf-token": "x".repeat(43) }, undefined],
      ["CSRF token of another session", {
        cookie: s.cookie,
        "x-csrf-token": (await signIn(h)).csrf,
      }, undefined],
      ["a cross-site form's body", {
        cookie: s.cookie,
        "x-csrf-token": s.csrf,
        "content-type": "application/x-www-form-urlencoded",
      }, "a=b"],
      ["another origin", {
        cookie: s.cookie,
        "x-csrf-token": s.csrf,
        origin: "http://evil.example",
      }, undefined],
    ];
    for (const [what, headers, body] of attempts) {
      const r = await fetch(`${h.base}/api/clients/victim/kick`, { method: "POST", headers, body });
      assert.ok(r.status === 403 || r.status === 415, `${what}: ${r.status}`);
      await r.text();
      assert.equal(h.broker.sessions.get("victim")?.connection?.state, "open", what);
    }
    const ok = await call(h, "POST", "/api/clients/victim/kick", {
      cookie: s.cookie,
      "x-csrf-token": s.csrf,
    });
    assert.equal(ok.status, 200);
    await until(() => !h.broker.sessions.get("victim")?.connection, 5000, "victim disconnected");
    const lines = h.ops.console.logs.read(0, 100).map((l) => l.text);
    assert.ok(
      lines.some((l) =>
        /Admin API: admin_token from 127\.0\.0\.1: disconnected client victim/.test(l)
      ),
      "the write is logged with who and from where",
    );
  } finally {
    await endAll(c);
    await h.stop();
  }
});

test(
  "admin writes: kick (v5 DISCONNECT 0x98), delete an offline session, delete retained, publish with v5 properties",
  {
    timeout: 30_000,
  },
  async () => {
    const h = await start();
    const tb = { url: h.mqtt } as never;
    const v5 = await connect(tb, { clientId: "v5", protocolVersion: 5 });
    const sub = await connect(tb, { clientId: "sub", protocolVersion: 5 });
    const off = await connect(tb, { clientId: "off", clean: false });
    try {
      // Kick: the v5 client is told why [MQTT-3.14.2-1 v5].
      const reason = new Promise<number>((r) => v5.on("disconnect", (p) => r(p.reasonCode ?? -1)));
      assert.equal((await call(h, "POST", "/api/clients/v5/kick", bearer)).status, 200);
      assert.equal(await reason, 0x98);
      assert.equal((await call(h, "POST", "/api/clients/nobody/kick", bearer)).status, 404);

      // Delete a session: refused while connected, done when offline (gone from the store too).
      assert.equal((await call(h, "DELETE", "/api/clients/off", bearer)).status, 409);
      await endAll(off);
      await until(() => !h.broker.sessions.get("off")?.connection, 5000, "off offline");
      assert.equal((await call(h, "DELETE", "/api/clients/off", bearer)).status, 200);
      assert.equal(h.broker.sessions.get("off"), undefined);
      assert.equal((await call(h, "GET", "/api/clients/off", bearer)).status, 404);

      // Publish with QoS, retain and v5 properties: the subscriber gets them.
      await sub.subscribeAsync("console/#", { qos: 1 });
      const got = new Promise<{ topic: string; payload: string; packet: any }>((r) =>
        sub.on(
          "message",
          (topic, payload, packet) => r({ topic, payload: payload.toString(), packet }),
        )
      );
      const pub = await call(h, "POST", "/api/publish", bearer, {
        topic: "console/x",
        payload: '{"v":1}',
        qos: 1,
        retain: true,
        properties: {
          contentType: "application/json",
          responseTopic: "console/reply",
          correlationData: "c-1",
          payloadFormatIndicator: 1,
          userProperties: [["from", "console"]],
          messageExpiryInterval: 3600,
        },
      });
      assert.equal(pub.status, 200);
      const m = await got;
      assert.equal(m.topic, "console/x");
      assert.equal(m.payload, '{"v":1}');
      assert.equal(m.packet.qos, 1);
      assert.equal(m.packet.properties.contentType, "application/json");
      assert.equal(m.packet.properties.responseTopic, "console/reply");
      assert.equal(Buffer.from(m.packet.properties.correlationData).toString(), "c-1");
      assert.deepEqual({ ...m.packet.properties.userProperties }, { from: "console" });
      assert.ok(m.packet.properties.messageExpiryInterval <= 3600);
      for (
        const bad of [
          { topic: "a/#" },
          { topic: "a", qos: 3 },
          { topic: "a", retain: "yes" },
          { topic: "a", properties: { topicAlias: 1 } },
          { topic: "a", encoding: "rot13" },
        ]
      ) {
        assert.equal(
          (await call(h, "POST", "/api/publish", bearer, bad)).status,
          400,
          JSON.stringify(bad),
        );
      }

      // The retained message: shown with its payload, deleted, gone.
      const rm = await call(h, "GET", "/api/retained/message?topic=console/x", bearer);
      assert.equal(Buffer.from(rm.body.payload, "base64").toString(), '{"v":1}');
      assert.equal(rm.body.properties.contentType, "application/json");
      const del = await call(h, "DELETE", "/api/retained?topic=console/x", bearer);
      assert.equal(del.status, 200);
      assert.equal(h.broker.retained.match("console/x", Date.now()).length, 0);
      assert.equal((await call(h, "DELETE", "/api/retained?topic=console/x", bearer)).status, 404);
      assert.equal(
        (await call(h, "GET", "/api/retained/message?topic=console/x", bearer)).status,
        404,
      );
    } finally {
      await endAll(v5, sub, off);
      await h.stop();
    }
  },
);

test("client list: server-side search and paging over 100k sessions; client detail", {
  timeout: 60_000,
}, async () => {
  const h = await start();
  const live = await connect({ url: h.mqtt } as never, {
    clientId: "live-one",
    username: "operator",
    keepalive: 33,
  });
  try {
    for (let i = 0; i < 100_000; i++) {
      const s = new Session(`sensor-${String(i).padStart(6, "0")}`);
      s.expiryInterval = 3600;
      s.disconnectedAt = Date.now();
      h.broker.sessions.set(s.clientId, s);
    }
    let r = await call(h, "GET", "/api/clients?limit=50&offset=99990", bearer);
    assert.equal(r.body.total, 100_001);
    assert.equal(r.body.count, 11);
    r = await call(h, "GET", "/api/clients?search=SENSOR-0999&limit=5&offset=5", bearer);
    assert.equal(r.body.total, 100, "sensor-099900 … sensor-099999");
    assert.deepEqual(
      r.body.clients.map((c: { id: string }) => c.id),
      ["sensor-099905", "sensor-099906", "sensor-099907", "sensor-099908", "sensor-099909"],
    );
    // A large answer is gzipped for a client that accepts it.
    const big = await new Promise<{ encoding: string | undefined; body: Uint8Array }>(
      (resolve, reject) => {
        httpGet(`${h.base}/api/clients?limit=10000`, {
          headers: { ...bearer, "accept-encoding": "gzip" },
        }, (res) => {
          const chunks: Uint8Array[] = [];
          res.on("data", (d: Uint8Array) => chunks.push(d));
          res.on("end", () =>
            resolve({
              encoding: res.headers["content-encoding"],
              body: Buffer.concat(chunks),
            }));
        }).on("error", reject);
      },
    );
    assert.equal(big.encoding, "gzip");
    assert.equal(JSON.parse(gunzipSync(big.body).toString()).count, 10_000);
    r = await call(h, "GET", "/api/clients?state=connected", bearer);
    assert.deepEqual(r.body.clients.map((c: { id: string }) => c.id), ["live-one"]);
    r = await call(h, "GET", "/api/clients?search=operator", bearer);
    assert.deepEqual(r.body.clients.map((c: { id: string }) => c.id), ["live-one"]);
    assert.equal((await call(h, "GET", "/api/clients?state=maybe", bearer)).status, 400);

    await live.subscribeAsync("d/+", { qos: 1 });
    const d = await call(h, "GET", "/api/clients/live-one", bearer);
    assert.equal(d.status, 200);
    assert.equal(d.body.username, "operator");
    assert.equal(d.body.keepalive, 33);
    assert.equal(d.body.tls, false);
    assert.equal(d.body.protocol_version, 4);
    assert.match(d.body.address, /^127\.0\.0\.1:\d+$/);
    assert.equal(d.body.listener, `127.0.0.1:${new URL(h.mqtt).port} (mqtt)`);
    assert.deepEqual(d.body.subscription_list.map((s: { filter: string }) => s.filter), ["d/+"]);
    assert.deepEqual(d.body.inflight_list, []);
  } finally {
    await endAll(live);
    await h.stop();
  }
});

test(
  "overview history, topic tree with rates, log tail, message stream",
  { timeout: 30_000 },
  async () => {
    const h = await start();
    const c = await connect({ url: h.mqtt } as never, { clientId: "pub" });
    try {
      let r = await call(h, "GET", "/api/overview", bearer);
      assert.equal(r.status, 200);
      assert.equal(r.body.nodes.length, 1, "this node alone");
      assert.equal(r.body.nodes[0].self, true);
      assert.ok(r.body.history.t.length >= 1, "a sample is there at once");
      const firstT = r.body.history.t.at(-1);

      // The topic tree starts counting when asked.
      assert.equal((await call(h, "GET", "/api/topics", bearer)).status, 200);
      assert.equal(
        (await call(h, "GET", "/api/overview", bearer)).body.now.subscriptions,
        0,
        "internal subscriptions are not counted",
      );
      for (let i = 0; i < 5; i++) await c.publishAsync(`plant/line${i % 2}/temp`, "21", { qos: 1 });
      await c.publishAsync("plant/state", "ok", { qos: 1, retain: true });
      h.ops.console.topics.tick(1000);
      r = await call(h, "GET", "/api/topics", bearer);
      const plant = r.body.nodes.find((n: { name: string }) => n.name === "plant");
      assert.equal(plant.messages, 6);
      assert.equal(plant.rate, 6);
      assert.equal(plant.retained, 1);
      r = await call(h, "GET", "/api/topics?prefix=plant", bearer);
      assert.deepEqual(r.body.nodes.map((n: { name: string }) => n.name), [
        "line0",
        "line1",
        "state",
      ]);
      assert.deepEqual(r.body.nodes.map((n: { messages: number }) => n.messages), [3, 2, 1]);

      h.ops.console.history.sample(Date.now() + 2000);
      r = await call(h, "GET", `/api/overview?since=${Math.round(firstT * 1000)}`, bearer);
      assert.ok(r.body.history.t.every((t: number) => t > firstT), "only samples after since");
      assert.ok(r.body.history.msgIn.at(-1) > 0, "messages in per second");

      // The log tail, filtered by client id.
      r = await call(h, "GET", "/api/logs?filter=as%20pub%20", bearer);
      assert.ok(r.body.lines.length >= 1);
      assert.ok(r.body.lines.every((l: { text: string }) => l.text.includes("as pub ")));

      // The message stream: server-sent events from an internal subscription.
      const ac = new AbortController();
      const res = await fetch(`${h.base}/api/messages/stream?filter=plant/%2B/temp`, {
        headers: bearer,
        signal: ac.signal,
      });
      assert.equal(res.headers.get("content-type"), "text/event-stream");
      const reader = res.body!.getReader();
      let text = "";
      await c.publishAsync("plant/line7/temp", "22.5", { qos: 0 });
      await c.publishAsync("other/topic", "no", { qos: 0 });
      await c.publishAsync("plant/line8/temp", "23", { qos: 0 });
      while (!text.includes("plant/line8/temp")) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      const events = text.split("\n\n").filter((e) => e.startsWith("event: message"))
        .map((e) => JSON.parse(e.split("\ndata: ")[1]));
      assert.deepEqual(events.map((e) => e.topic), ["plant/line7/temp", "plant/line8/temp"]);
      assert.equal(Buffer.from(events[0].payload, "base64").toString(), "22.5");
      assert.equal(h.ops.console.streams, 1);
      ac.abort();
      await reader.cancel().catch(() => {});
      await until(() => h.ops.console.streams === 0, 5000, "stream closed, tap removed");
      assert.equal(
        (await call(h, "GET", "/api/messages/stream?filter=a/%23/b", bearer)).status,
        400,
      );
    } finally {
      await endAll(c);
      await h.stop();
    }
  },
);

test(
  "security: password file users without hashes, ACL read-only; dynamic-security commands through broker.controls",
  {
    timeout: 30_000,
  },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), "midge-console-"));
    const pw = join(dir, "passwd");
    const acl = join(dir, "acl");
    const enc = new TextEncoder();
    writeFileSync(
      pw,
      `alice:${await hashPassword(enc.encode("a-pw"))}\nbob:${await hashPassword(
        enc.encode("b-pw"),
      )}\n`,
    );
    writeFileSync(acl, "user alice\ntopic readwrite a/#\n");
    const h = await start({ password_file: pw, acl_file: acl, allow_anonymous: true });
    try {
      let r = await call(h, "GET", "/api/security", bearer);
      assert.equal(r.body.dynsec, false);
      assert.deepEqual(r.body.password_file.users, ["alice", "bob"]);
      assert.doesNotMatch(JSON.stringify(r.body), /\$7\$|\$6\$/, "no hash leaves the broker");
      assert.equal(r.body.acl_file.text, "user alice\ntopic readwrite a/#\n");
      assert.equal((await call(h, "POST", "/api/dynsec", bearer, { commands: [] })).status, 404);

      const seen: { payload: unknown; from: Principal }[] = [];
      const handler: ControlHandler = {
        topic: "$CONTROL/dynamic-security/v1",
        control(payload, from) {
          seen.push({ payload: JSON.parse(new TextDecoder().decode(payload)), from });
          return Promise.resolve(new TextEncoder().encode(JSON.stringify({
            responses: [{ command: "listClients", data: { clients: [{ username: "carol" }] } }],
          })));
        },
      };
      h.broker.controls.set(handler.topic, handler);
      r = await call(h, "GET", "/api/security", bearer);
      assert.equal(r.body.dynsec, true);
      const s = await signIn(h);
      assert.equal(
        (await call(h, "POST", "/api/dynsec", { cookie: s.cookie }, {
          commands: [{ command: "deleteClient", username: "carol" }],
        })).status,
        403,
        "CSRF checked",
      );
      assert.equal(seen.length, 0);
      r = await call(h, "POST", "/api/dynsec", { cookie: s.cookie, "x-csrf-token": s.csrf }, {
        commands: [{ command: "listClients", verbose: true }],
      });
      assert.equal(r.status, 200);
      assert.equal(r.body.responses[0].data.clients[0].username, "carol");
      assert.deepEqual(seen[0].payload, { commands: [{ command: "listClients", verbose: true }] });
      assert.equal(seen[0].from.username, "admin_token");
      assert.ok(
        h.ops.console.logs.read(0, 100).some((l) =>
          /dynamic-security commands: listClients/.test(l.text)
        ),
      );
    } finally {
      await h.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test("http_certfile/http_keyfile serve the console over HTTPS with a Secure cookie", {
  timeout: 30_000,
}, async () => {
  const certs = makeCerts();
  const h = await start({ http_certfile: certs.serverCert, http_keyfile: certs.serverKey });
  try {
    assert.equal(h.ops.http!.tls, true);
    const get = (path: string, method = "GET", body?: string) =>
      new Promise<{ status: number; headers: Record<string, unknown>; text: string }>(
        (resolve, reject) => {
          const req = httpsRequest(`${h.base}${path}`, {
            method,
            ca: certs.read(certs.caCert),
            headers: body ? { "content-type": "application/json" } : {},
          }, (res) => {
            let text = "";
            res.on("data", (d) => (text += d));
            res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, text }));
          });
          req.on("error", reject);
          req.end(body);
        },
      );
    const page = await get("/");
    assert.equal(page.status, 200);
    assert.match(page.text, /<title>Midge console<\/title>/);
    const s = await get("/api/session", "POST", JSON.stringify({ token: TOKEN }));
    assert.equal(s.status, 200);
    assert.match(String(s.headers["set-cookie"]), /;\s*Secure/);
  } finally {
    await h.stop();
    rmSync(certs.dir, { recursive: true, force: true });
  }
});

test("plain HTTP off loopback is warned about; http_certfile needs http_keyfile", () => {
  assert.match(plainHttpWarning("0.0.0.0", 9883, false)!, /plain HTTP on a non-loopback/);
  assert.match(plainHttpWarning("192.168.1.2", 9883, false)!, /http_certfile/);
  assert.equal(plainHttpWarning("0.0.0.0", 9883, true), undefined);
  assert.equal(plainHttpWarning("127.0.0.1", 9883, false), undefined);
  assert.equal(plainHttpWarning("::1", 9883, false), undefined);
  assert.throws(() => parseConfig('http_certfile = "/x.pem"\n', "t.toml"), /needs http_keyfile/);
});

test("log ring: bounded, read after a sequence number, filtered by text and type", () => {
  const ring = new LogRing(5);
  for (let i = 1; i <= 8; i++) ring.add(i % 2 ? "notice" : "error", `line ${i} client c${i}`, i);
  assert.equal(ring.last, 8);
  assert.deepEqual(ring.read(0, 100).map((e) => e.seq), [4, 5, 6, 7, 8], "the last 5 only");
  assert.deepEqual(ring.read(6, 100).map((e) => e.seq), [7, 8]);
  assert.deepEqual(ring.read(0, 2).map((e) => e.seq), [7, 8], "the newest when limited");
  assert.deepEqual(ring.read(0, 100, "C5").map((e) => e.seq), [5]);
  assert.deepEqual(ring.read(0, 100, "", new Set(["error"])).map((e) => e.seq), [4, 6, 8]);
  const log = new Logger(["notice"], { sinks: [] });
  const r2 = new LogRing(10);
  r2.attach(log);
  log.notice("hello");
  log.debug("not enabled");
  r2.detach();
  log.notice("after detach");
  assert.deepEqual(r2.read(0, 10).map((e) => e.text), ["hello"]);
});

test("topic stats: bounded number of topics; history ring keeps 15 minutes", () => {
  const b = assembleBroker(testConfig()).broker;
  const ts = new TopicStats(b, 3);
  for (const t of ["a/1", "a/2", "b", "c", "d"]) ts.count(t, 10);
  assert.equal(ts.untracked, 2);
  ts.tick(1000);
  const top = ts.children("", 10);
  assert.deepEqual(top.nodes.map((n) => [n.name, n.messages, n.rate]), [["a", 2, 2], ["b", 1, 1]]);

  const hist = new History(b, undefined, 1000);
  assert.equal(hist.capacity, 900);
  const t0 = 1_000_000;
  for (let i = 0; i < 1000; i++) {
    b.stats.publishReceived += 10;
    hist.sample(t0 + i * 1000);
  }
  const all = hist.since(0);
  assert.equal(all.length, 900, "15 minutes of 1 s samples");
  assert.equal(all[0].t, t0 + 100_000);
  assert.equal(all.at(-1)!.msgIn, 10);
});

test(
  "internal subscriptions are not receivers: a v5 PUBACK still says No matching subscribers (0x10)",
  {
    timeout: 30_000,
  },
  async () => {
    const h = await start();
    const c = await connect({ url: h.mqtt } as never, { clientId: "v5pub", protocolVersion: 5 });
    try {
      const codes: number[] = [];
      c.on("packetreceive", (p) => {
        if (p.cmd === "puback") codes.push((p as { reasonCode?: number }).reasonCode ?? 0);
      });
      // The topic tree's tap on # and a message stream on the same topic are open.
      assert.equal((await call(h, "GET", "/api/topics", bearer)).status, 200);
      const ac = new AbortController();
      const res = await fetch(`${h.base}/api/messages/stream?filter=lonely/%23`, {
        headers: bearer,
        signal: ac.signal,
      });
      assert.equal(res.status, 200);
      await c.publishAsync("lonely/topic", "x", { qos: 1 });
      assert.deepEqual(codes, [0x10]);
      const r = await call(h, "POST", "/api/publish", bearer, { topic: "lonely/topic" });
      assert.equal(r.body.receivers, 0);
      ac.abort();
      await res.body?.cancel().catch(() => {});
    } finally {
      await endAll(c);
      await h.stop();
    }
  },
);

test("password sign-in goes to the ConsoleSessions hook when set; off without one", {
  timeout: 30_000,
}, async () => {
  const h = await start();
  try {
    const post = (body: unknown) =>
      fetch(`${h.base}/api/session`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    let r = await post({ username: "root", password: "pw" });
    assert.equal(r.status, 400, "no password sign-in without dynamic security or a hook");
    await r.text();
    assert.equal((await call(h, "GET", "/api/session")).body.password_sign_in, false);

    const asked: string[] = [];
    h.ops.console.sessions.passwordSignIn = (u, p) => {
      asked.push(u);
      return Promise.resolve(u === "root" && p === "right" ? u : null);
    };
    assert.equal((await call(h, "GET", "/api/session")).body.password_sign_in, true);
    r = await post({ username: "root", password: "wrong" });
    assert.equal(r.status, 401);
    assert.equal(r.headers.get("set-cookie"), null);
    await r.text();
    r = await post({ username: "root", password: "right" });
    assert.equal(r.status, 200);
    const body = await r.json();
    assert.equal(body.who, "root");
    const cookie = (r.headers.get("set-cookie") ?? "").split(";")[0];
    assert.equal((await call(h, "GET", "/api/clients", { cookie })).status, 200);
    assert.deepEqual(asked, ["root", "root"]);
    assert.ok(
      h.ops.console.logs.read(0, 100).some((l) => /Admin API: root from .*signed in/.test(l.text)),
    );
  } finally {
    await h.stop();
  }
});

test("lag sampler: the largest lag of the last interval, not of the whole minute", () => {
  const s = new LagSampler(500);
  s.record(90);
  for (let i = 0; i < 4; i++) s.record(2);
  assert.equal(s.maxOver(2000), 2, "the 90 ms sample is older than 2 s");
  assert.equal(s.maxOver(2500), 90);
  assert.equal(s.max, 90);
});

test(
  "dynamic security (mosquitto_ctrl's file): its admin signs in with a password, a client without the admin role cannot",
  {
    timeout: 30_000,
  },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), "midge-console-dynsec-"));
    const file = join(dir, "dynamic-security.json");
    execFileSync("mosquitto_ctrl", ["dynsec", "init", file, "admin", "admin-pw"]);
    const h = await start({
      allow_anonymous: false,
      plugins: [{ name: "dynamic-security", config_file: file }],
    });
    try {
      const signIn = (username: string, password: string) =>
        fetch(`${h.base}/api/session`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ username, password }),
        });
      assert.equal((await call(h, "GET", "/api/session")).body.password_sign_in, true);
      assert.equal((await call(h, "GET", "/api/security", bearer)).body.dynsec, true);
      let r = await signIn("admin", "wrong");
      assert.equal(r.status, 401);
      await r.text();
      r = await signIn("admin", "admin-pw");
      assert.equal(r.status, 200);
      const { csrf } = await r.json();
      const cookie = (r.headers.get("set-cookie") ?? "").split(";")[0];
      const dyn = (commands: unknown[]) =>
        call(h, "POST", "/api/dynsec", { cookie, "x-csrf-token": csrf }, { commands });
      let d = await dyn([{ command: "listClients" }]);
      assert.equal(d.status, 200);
      assert.deepEqual(d.body.responses[0].data.clients, ["admin"]);
      d = await dyn([{ command: "createClient", username: "viewer", password: "viewer-pw" }]);
      assert.equal(d.body.responses[0].error, undefined);
      r = await signIn("viewer", "viewer-pw");
      assert.equal(r.status, 401, "a client without the admin role is not an admin");
      await r.text();
    } finally {
      await h.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test("history: beyond 10,000 sessions the per-session gauges are walked every 10 s, not every sample", () => {
  const b = assembleBroker(testConfig()).broker;
  const hist = new History(b, undefined, 2000);
  const add = (n: number) => {
    for (let i = b.sessions.size; i < n; i++) b.sessions.set(`s${i}`, new Session(`s${i}`));
  };
  const queueOne = () => {
    const s = b.sessions.get("s7")!;
    s.enqueue(
      outgoing(
        { topic: "q", payload: new Uint8Array(1), qos: 1, retain: false, expiresAt: 0, origin: "" },
        1,
        false,
        undefined,
      ),
      0,
      0,
    );
  };
  add(100);
  hist.sample(1_000_000);
  queueOne();
  assert.equal(hist.sample(1_002_000).queued, 1, "few sessions: walked every sample");
  add(10_001);
  hist.sample(1_004_000);
  queueOne();
  const t = 1_004_000;
  assert.equal(hist.sample(t + 2000).queued, 1, "repeated from the last walk");
  assert.equal(hist.sample(t + 2000).sessions, 10_001, "the session count is always fresh");
  assert.equal(hist.sample(t + 10_000).queued, 2, "walked again after 10 s");
});

test("a new admin_token (SIGHUP reload) ends the console sessions made with the old one", {
  timeout: 30_000,
}, async () => {
  const h = await start();
  try {
    const s = await signIn(h);
    assert.equal((await call(h, "GET", "/api/clients", { cookie: s.cookie })).status, 200);
    h.broker.config.admin_token = "rotated-token-0123456789";
    assert.equal((await call(h, "GET", "/api/clients", { cookie: s.cookie })).status, 401);
    assert.equal((await call(h, "GET", "/api/clients", bearer)).status, 401, "old token");
    assert.equal(
      (await call(h, "GET", "/api/clients", {
        authorization: "Bearer rotated-token-0123456789",
      })).status,
      200,
    );
  } finally {
    await h.stop();
  }
});

test(
  "an internal subscription whose receiver throws breaks neither the publisher nor the other subscribers",
  {
    timeout: 30_000,
  },
  async () => {
    const h = await start();
    const tap = new Tap(h.broker, "t/#", () => {
      throw new Error("console bug");
    });
    const sub = await connect({ url: h.mqtt } as never, { clientId: "other" });
    const pub = await connect({ url: h.mqtt } as never, { clientId: "pub2" });
    try {
      await sub.subscribeAsync("t/#", { qos: 1 });
      const got = new Promise<string>((r) => sub.on("message", (_t, p) => r(p.toString())));
      await pub.publishAsync("t/1", "still delivered", { qos: 1 });
      assert.equal(await got, "still delivered");
      assert.ok(
        h.ops.console.logs.read(0, 100).some((l) =>
          /Internal subscription on t\/#: .*console bug/.test(l.text)
        ),
      );
      assert.equal(h.broker.sessions.get("pub2")?.connection?.state, "open");
    } finally {
      tap.close();
      await endAll(sub, pub);
      await h.stop();
    }
  },
);

test("sign-ins checked at once are bounded: beyond MAX_SIGNINS the answer is 429 at once", {
  timeout: 30_000,
}, async () => {
  const h = await start();
  try {
    const sessions = h.ops.console.sessions;
    for (let i = 0; i < MAX_SIGNINS; i++) assert.equal(sessions.beginSignIn(), true);
    assert.equal(sessions.beginSignIn(), false);
    const busy = await call(h, "POST", "/api/session", {}, { token: TOKEN });
    assert.equal(busy.status, 429, "even the right token waits for a slot");
    sessions.endSignIn();
    const ok = await call(h, "POST", "/api/session", {}, { token: TOKEN });
    assert.equal(ok.status, 200);
    assert.equal(sessions.beginSignIn(), true, "the slot came back after the sign-in");
  } finally {
    await h.stop();
  }
});
