/**
 * The `http` link of the auth chain against an HTTP auth service run by the test, as
 * mosquitto-go-auth's HTTP backend would see it: getuser / superuser / aclcheck, JSON and form
 * parameters, the status, json and text response modes and EMQX's result form, the cache, and
 * what applies when the service is killed.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { readFileSync } from "node:fs";
import mqtt, { type MqttClient } from "mqtt";
import mqttPacket from "mqtt-packet";
import { assembleBroker } from "../src/assemble.ts";
import type { Config } from "../src/config/schema.ts";
import { Logger } from "../src/sys/log.ts";
import { endAll, testConfig, until } from "./helpers/broker.ts";
import { connectPacket, rawConnect } from "./helpers/raw.ts";
import { makeCerts } from "./helpers/certs.ts";

const PASSWORD = "pw-Secret-9f2c";
/** Every line any broker in this file logged: none may show a password. */
const allLines: string[] = [];
after(() => {
  for (const l of allLines) assert.ok(!l.includes(PASSWORD), `password in the log: ${l}`);
});

interface Seen {
  path: string;
  type: string;
  params: Record<string, string>;
}

/** An auth service: `answer` decides each request; every request is recorded. */
async function service(
  answer: (path: string, p: Record<string, string>, res: ServerResponse) => void,
): Promise<{ server: Server; port: number; seen: Seen[]; kill(): Promise<void> }> {
  const seen: Seen[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (d: Buffer) => chunks.push(d));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString();
      const type = String(req.headers["content-type"] ?? "");
      const params: Record<string, string> = type.includes("json")
        ? Object.fromEntries(
          Object.entries(JSON.parse(text) as Record<string, unknown>).map((
            [k, v],
          ) => [k, String(v)]),
        )
        : Object.fromEntries(new URLSearchParams(text));
      seen.push({ path: req.url ?? "", type, params });
      answer(req.url ?? "", params, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    server,
    port,
    seen,
    kill: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections?.();
      }),
  };
}

async function httpBroker(port: number, over: Partial<Config> = {}) {
  const lines: string[] = [];
  const broker = assembleBroker(
    testConfig({
      auth_chain: ["http"],
      auth_opt_http_port: port,
      auth_opt_http_getuser_uri: "/auth",
      auth_opt_http_aclcheck_uri: "/acl",
      ...over,
    }),
    new Logger(["all"], {
      sink: (l) => {
        lines.push(l);
        allLines.push(l);
      },
    }),
  ).broker;
  const [l] = await broker.start();
  return { broker, url: `mqtt://127.0.0.1:${l.port}`, port: l.port, lines };
}

/** CONNACK code of a v5 connection (0 = accepted). */
async function connack(url: string, opts: mqtt.IClientOptions): Promise<number> {
  const c = mqtt.connect(url, {
    reconnectPeriod: 0,
    connectTimeout: 5000,
    protocolVersion: 5,
    ...opts,
  });
  try {
    return await new Promise<number>((resolve, reject) => {
      c.once("connect", (p) => resolve(p.reasonCode ?? 0));
      c.once("error", (e) => {
        const code = (e as { code?: number }).code;
        if (typeof code === "number") resolve(code);
        else reject(e);
      });
    });
  } finally {
    c.end(true);
  }
}

function login(url: string, username: string, password = PASSWORD): Promise<MqttClient> {
  return mqtt.connectAsync(url, {
    clientId: `${username}-c`,
    username,
    password,
    protocolVersion: 5,
    reconnectPeriod: 0,
    connectTimeout: 5000,
  });
}

async function pubCode(c: MqttClient, topic: string): Promise<number> {
  try {
    const ack = (await c.publishAsync(topic, "x", { qos: 1 })) as
      | { reasonCode?: number }
      | undefined;
    return ack?.reasonCode ?? 0;
  } catch (e) {
    return (e as { code?: number }).code ?? -1;
  }
}

async function subCode(c: MqttClient, filter: string): Promise<number> {
  try {
    return (await c.subscribeAsync(filter, { qos: 1 }))[0].qos;
  } catch (e) {
    return (e as { packet?: { granted?: number[] } }).packet?.granted?.[0] ?? -1;
  }
}

test("http: status mode with JSON parameters: getuser decides logins, aclcheck publish (acc 2), subscribe (acc 4) and each delivery (acc 1); answers are cached", async () => {
  const svc = await service((path, p, res) => {
    if (path === "/auth") {
      res.writeHead(p.username === "alice" && p.password === PASSWORD ? 200 : 403).end();
    } else {
      const own = p.topic.startsWith(`${p.username}/`);
      const pub = p.topic.startsWith("public/") && (p.acc === "1" || p.acc === "4");
      res.writeHead(own || pub ? 200 : 403).end();
    }
  });
  const b = await httpBroker(svc.port);
  try {
    assert.equal(await connack(b.url, { username: "alice", password: "wrong" }), 0x87);
    assert.equal(await connack(b.url, { username: "bob", password: PASSWORD }), 0x87);
    const alice = await login(b.url, "alice");
    const auth = svc.seen.find((s) =>
      s.path === "/auth" && s.params.username === "alice" && s.params.password === PASSWORD
    );
    assert.ok(auth?.type.includes("application/json"));
    assert.deepEqual(auth?.params, { username: "alice", password: PASSWORD, clientid: "alice-c" });
    const got: string[] = [];
    alice.on("message", (t) => got.push(t));
    try {
      assert.equal(await subCode(alice, "alice/#"), 1);
      assert.equal(await subCode(alice, "secret/#"), 0x87);
      assert.equal(await subCode(alice, "public/#"), 1);
      assert.ok([0, 0x10].includes(await pubCode(alice, "alice/x")));
      assert.equal(await pubCode(alice, "public/x"), 0x87, "public/ is read-only");
      await until(() => got.includes("alice/x"), 5000, "the delivery");
      const acl = svc.seen.filter((s) => s.path === "/acl").map((s) =>
        `${s.params.acc} ${s.params.topic}`
      );
      assert.ok(
        acl.includes("4 alice/#") && acl.includes("2 alice/x") && acl.includes("1 alice/x"),
        acl.join(),
      );
      assert.equal(svc.seen.find((s) => s.path === "/acl")?.params.clientid, "alice-c");
      // Answers are cached: the same publish again asks nothing more.
      const before = svc.seen.length;
      for (let i = 0; i < 3; i++) assert.ok([0, 0x10].includes(await pubCode(alice, "alice/x")));
      assert.equal(svc.seen.length, before, "answered from the cache");
    } finally {
      await endAll(alice);
    }
    // SUBSCRIBE and PUBLISH in one write, both waiting for the service: answered in order.
    const raw = await rawConnect(b.port, 5);
    const gen = (p: object) => mqttPacket.generate(p as mqttPacket.Packet, { protocolVersion: 5 });
    raw.send(Buffer.concat([
      gen(connectPacket("alice-raw", 5, { username: "alice", password: Buffer.from(PASSWORD) })),
      gen({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "alice/raw/#", qos: 1 }] }),
      gen({
        cmd: "publish",
        messageId: 2,
        qos: 1,
        topic: "alice/raw/1",
        payload: Buffer.from("r"),
      }),
    ]));
    const order: string[] = [];
    for (let i = 0; i < 3; i++) order.push((await raw.next(undefined, 5000)).cmd);
    assert.deepEqual(order.slice(0, 2), ["connack", "suback"]);
    assert.ok(order.includes("puback") || (await raw.next("puback", 5000)));
    raw.close();
  } finally {
    await b.broker.stop();
    await svc.kill();
  }
});

test("http: form parameters, json mode, EMQX's result form (allow, deny, ignore, is_superuser) and the superuser URI", async () => {
  const svc = await service((path, p, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    if (path === "/auth") {
      if (p.username === "alice") res.end(JSON.stringify({ ok: true }));
      else if (p.username === "root") {
        res.end(JSON.stringify({ result: "allow", is_superuser: true }));
      } else if (p.username === "carol") res.end(JSON.stringify({ result: "ignore" }));
      else if (p.username === "sam") res.end(JSON.stringify({ ok: true }));
      else res.end(JSON.stringify({ ok: false, error: "unknown" }));
    } else if (path === "/super") {
      res.end(JSON.stringify({ ok: p.username === "sam" }));
    } else {
      res.end(JSON.stringify(p.topic === "t/ok" ? { ok: true } : { result: "deny" }));
    }
  });
  const b = await httpBroker(svc.port, {
    auth_opt_http_params_mode: "form",
    auth_opt_http_response_mode: "json",
    auth_opt_http_superuser_uri: "/super",
  });
  try {
    assert.ok(svc.seen.length === 0);
    assert.equal(await connack(b.url, { username: "mallory", password: PASSWORD }), 0x87);
    assert.equal(svc.seen[0].type, "application/x-www-form-urlencoded");
    assert.equal(svc.seen[0].params.password, PASSWORD);
    // "ignore": not this link's; nothing else in the chain: refused.
    assert.equal(await connack(b.url, { username: "carol", password: PASSWORD }), 0x87);
    const alice = await login(b.url, "alice");
    const root = await login(b.url, "root");
    const sam = await login(b.url, "sam");
    try {
      assert.ok([0, 0x10].includes(await pubCode(alice, "t/ok")));
      assert.equal(await pubCode(alice, "t/no"), 0x87);
      const asked = svc.seen.length;
      // Superusers (EMQX's is_superuser, or the superuser URI) are not checked at all.
      assert.ok([0, 0x10].includes(await pubCode(root, "t/no")));
      assert.ok([0, 0x10].includes(await pubCode(sam, "t/no")));
      assert.equal(svc.seen.slice(asked).filter((s) => s.path === "/acl").length, 0);
    } finally {
      await endAll(alice, root, sam);
    }
  } finally {
    await b.broker.stop();
    await svc.kill();
  }
});

test('http: text mode: the body "ok" allows, anything else denies', async () => {
  const svc = await service((path, p, res) => {
    res.writeHead(200, { "content-type": "text/plain" });
    if (path === "/auth") res.end(p.username === "alice" ? "ok" : "no such user");
    else res.end(p.topic.startsWith("a/") ? "ok" : "denied");
  });
  const b = await httpBroker(svc.port, { auth_opt_http_response_mode: "text" });
  try {
    assert.equal(await connack(b.url, { username: "eve", password: PASSWORD }), 0x87);
    const alice = await login(b.url, "alice");
    try {
      assert.ok([0, 0x10].includes(await pubCode(alice, "a/1")));
      assert.equal(await pubCode(alice, "b/1"), 0x87);
    } finally {
      await endAll(alice);
    }
  } finally {
    await b.broker.stop();
    await svc.kill();
  }
});

test("http: when the service is killed the failure choice applies (deny by default, or allow), logged once per outage; cached answers still count; a service that hangs times out", async () => {
  const svc = await service((path, p, res) => {
    if (path === "/acl" && p.topic === "hang") return; // never answers
    res.writeHead(p.username === "eve" ? 403 : 200).end();
  });
  const deny = await httpBroker(svc.port, { auth_opt_http_timeout: 1 });
  const allow = await httpBroker(svc.port, { auth_opt_http_on_error: "allow" });
  try {
    const alice = await login(deny.url, "alice");
    try {
      assert.ok([0, 0x10].includes(await pubCode(alice, "a/1")));
      // No answer within auth_opt_http_timeout: the failure choice (deny).
      assert.equal(await pubCode(alice, "hang"), 0x87);
      await until(() => deny.lines.some((l) => l.includes("cannot answer")), 5000, "outage line");
      assert.ok([0, 0x10].includes(await pubCode(alice, "a/2")), "answers again");
      assert.ok(deny.lines.some((l) => l.includes("answers again")));

      await svc.kill();
      assert.equal(await connack(deny.url, { username: "bob", password: PASSWORD }), 0x87);
      assert.equal(await pubCode(alice, "b/1"), 0x87, "deny while down");
      assert.equal(await pubCode(alice, "b/2"), 0x87);
      assert.ok([0, 0x10].includes(await pubCode(alice, "a/1")), "cached before the outage");
      const outages = deny.lines.filter((l) => l.includes("cannot answer"));
      assert.equal(outages.length, 2, outages.join("\n"));
      // on_error = "allow": a login and a publish go through while the service is down; even
      // eve, whom the service would refuse.
      assert.equal(await connack(allow.url, { username: "eve", password: PASSWORD }), 0);
      assert.equal(
        allow.lines.filter((l) => l.includes("cannot answer")).length,
        1,
        "one line for the outage",
      );
    } finally {
      await endAll(alice);
    }
  } finally {
    await deny.broker.stop();
    await allow.broker.stop();
    await svc.kill().catch(() => {});
  }
});

test("http: auth_opt_http_with_tls asks an https service whose certificate chains to auth_opt_http_cafile", async () => {
  const certs = makeCerts();
  const server = createHttpsServer(
    { cert: readFileSync(certs.serverCert), key: readFileSync(certs.serverKey) },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (d: Buffer) => chunks.push(d));
      req.on("end", () => {
        const p = JSON.parse(Buffer.concat(chunks).toString()) as Record<string, string>;
        res.writeHead(p.username === "alice" ? 200 : 403).end();
      });
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  const trusted = await httpBroker(port, {
    auth_opt_http_with_tls: true,
    auth_opt_http_cafile: certs.caCert,
  });
  // Without the CA the service's certificate is not trusted: the service counts as down.
  const untrusted = await httpBroker(port, { auth_opt_http_with_tls: true });
  try {
    assert.equal(await connack(trusted.url, { username: "alice", password: PASSWORD }), 0);
    assert.equal(await connack(trusted.url, { username: "bob", password: PASSWORD }), 0x87);
    assert.equal(await connack(untrusted.url, { username: "alice", password: PASSWORD }), 0x87);
    assert.ok(untrusted.lines.some((l) => l.includes("cannot answer")));
  } finally {
    await trusted.broker.stop();
    await untrusted.broker.stop();
    await new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections?.();
    });
    certs.cleanup();
  }
});
