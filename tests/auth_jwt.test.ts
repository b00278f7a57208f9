/**
 * The `jwt` link of the auth chain: tokens signed here with node:crypto keys (HMAC, RSA, EC,
 * Ed25519), keys from a PEM file, a JWKS file and a JWKS served over https with a certificate
 * made by the test; the checks on exp, nbf, iat, iss, aud and claims; the `acl` claim on
 * publish, subscribe and delivery; expiry and v5 re-authentication.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpsServer } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assembleBroker } from "../src/assemble.ts";
import { checkFiles } from "../src/cli/check_files.ts";
import { type Config, defaults, LISTENER_KEYS } from "../src/config/schema.ts";
import { Logger } from "../src/sys/log.ts";
import mqtt, { type MqttClient } from "mqtt";
import {
  connect,
  endAll,
  sleep,
  startBroker,
  type TestBroker,
  testConfig,
  until,
} from "./helpers/broker.ts";
import { type AnyPacket, connectPacket, rawConnect } from "./helpers/raw.ts";
import { makeCerts } from "./helpers/certs.ts";
import {
  jwk,
  keyPairs,
  now,
  pem,
  type Signer,
  signJwt,
  tamper,
  unsignedJwt,
} from "./helpers/jwt.ts";

const dir = mkdtempSync(join(tmpdir(), "midge-jwt-"));
after(() => rmSync(dir, { recursive: true, force: true }));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

const keys = keyPairs();
const SECRET = "a shared secret of more than 32 bytes";
const hs = (alg: string): Signer => ({ alg, secret: new TextEncoder().encode(SECRET) });
const ISS = "https://idp.example";
const AUD = "midge";
/** Claims of a good token for client `id`. */
const good = (id: string, more: object = {}) => ({
  sub: id,
  iss: ISS,
  aud: AUD,
  iat: now(),
  exp: now(600),
  ...more,
});
const enc = (s: string) => Buffer.from(s);

/** CONNECT with `extra` (password, properties, …); the CONNACK's reason code (v5) or return code. */
let source = 0;
/**
 * CONNECT with `extra` (password, properties, …); the CONNACK's reason code (v5) or return code.
 * Each comes from its own loopback address, so refusals are not slowed down by the ones before.
 */
async function connackCode(
  port: number,
  version: 4 | 5,
  extra: AnyPacket,
  clientId = "dev1",
): Promise<number> {
  source++;
  const c = await rawConnect(port, version, `127.0.${source >> 8}.${(source & 255) + 1}`);
  try {
    c.send(connectPacket(clientId, version, extra));
    const p = await c.next("connack", 5000);
    return version === 5 ? p.reasonCode : p.returnCode;
  } finally {
    c.close();
  }
}

/** CONNECT with the token as password of user `dev1`. */
function withToken(port: number, version: 4 | 5, token: string, clientId = "dev1") {
  return connackCode(port, version, { username: clientId, password: enc(token) }, clientId);
}

function jwtBroker(over: Partial<Config>): Promise<TestBroker> {
  return startBroker({
    auth_chain: ["jwt"],
    jwt_issuer: ISS,
    jwt_audience: AUD,
    jwt_clock_skew: 5,
    ...over,
  });
}

test("jwt: HS256/384/512 and RS256/PS256 (PEM) tokens connect; alg none, tampered, expired, not yet valid, wrong issuer, audience or subject are refused like a bad password", async () => {
  const rsa: Signer = { alg: "RS256", key: keys.rsa.privateKey };
  const tb = await jwtBroker({
    jwt_secret: SECRET,
    jwt_public_key_file: file("rsa.pem", pem(keys.rsa.publicKey)),
    jwt_verify_claims: ["sub=${clientid}"],
  });
  try {
    for (const s of [hs("HS256"), hs("HS384"), hs("HS512"), rsa, { ...rsa, alg: "PS256" }]) {
      assert.equal(await withToken(tb.port, 5, signJwt(s, good("dev1"))), 0, s.alg);
    }
    assert.equal(await withToken(tb.port, 4, signJwt(rsa, good("dev1"))), 0, "v3.1.1");
    // [MQTT-3.2.2-5 v3.1.1][MQTT-3.2.2-7 v5] refusals: 0x86 Bad user name or password (v5), 4 (v3.1.1).
    const refused: [string, string][] = [
      ["alg none", unsignedJwt(good("dev1"))],
      ["tampered", tamper(signJwt(rsa, good("dev1")))],
      ["expired", signJwt(rsa, good("dev1", { exp: now(-60) }))],
      ["not yet valid", signJwt(rsa, good("dev1", { nbf: now(300) }))],
      ["issued in the future", signJwt(rsa, good("dev1", { iat: now(300) }))],
      ["wrong issuer", signJwt(rsa, good("dev1", { iss: "https://evil.example" }))],
      ["wrong audience", signJwt(rsa, good("dev1", { aud: "other" }))],
      ["another client's token", signJwt(rsa, good("dev2"))],
      ["no exp", signJwt(rsa, { sub: "dev1", iss: ISS, aud: AUD })],
      ["wrong secret", signJwt({ alg: "HS256", secret: enc("not the secret") }, good("dev1"))],
      [
        "HS256 signed with the public key",
        signJwt({ alg: "HS256", secret: enc(pem(keys.rsa.publicKey)) }, good("dev1")),
      ],
    ];
    for (const [what, token] of refused) {
      assert.equal(await withToken(tb.port, 5, token), 0x86, what);
      assert.equal(await withToken(tb.port, 4, token), 4, `${what} (v3.1.1)`);
    }
    // Within the clock skew (5 s) a token just expired still counts.
    assert.equal(await withToken(tb.port, 5, signJwt(rsa, good("dev1", { exp: now(-1) }))), 0);
    // Not a token at all: the jwt link passes; nothing else in the chain: 0x87 Not authorized.
    assert.equal(
      await connackCode(tb.port, 5, { username: "dev1", password: enc("hunter2") }),
      0x87,
    );
  } finally {
    await tb.stop();
  }
});

test("jwt: EC (ES256) and Ed25519 keys from a JWKS file, chosen by kid; an unknown kid and HS tokens without a secret are refused", async () => {
  const jwks = {
    keys: [jwk(keys.ec.publicKey, "ec1", "ES256"), jwk(keys.ed.publicKey, "ed1", "EdDSA")],
  };
  const tb = await jwtBroker({ jwt_jwks_file: file("keys.jwks", JSON.stringify(jwks)) });
  const ec: Signer = { alg: "ES256", key: keys.ec.privateKey, kid: "ec1" };
  const ed: Signer = { alg: "EdDSA", key: keys.ed.privateKey, kid: "ed1" };
  try {
    assert.equal(await withToken(tb.port, 5, signJwt(ec, good("dev1"))), 0, "ES256");
    assert.equal(await withToken(tb.port, 5, signJwt(ed, good("dev1"))), 0, "EdDSA");
    assert.equal(await withToken(tb.port, 5, signJwt({ ...ec, kid: "nope" }, good("dev1"))), 0x86);
    assert.equal(await withToken(tb.port, 5, signJwt({ ...ec, kid: "ed1" }, good("dev1"))), 0x86);
    assert.equal(await withToken(tb.port, 5, signJwt(hs("HS256"), good("dev1"))), 0x86);
  } finally {
    await tb.stop();
  }
});

test("jwt: a JWKS served over https (certificate made by the test) is fetched, refreshed, and the last good set kept while the server is down", async () => {
  const certs = makeCerts();
  const k1: Signer = { alg: "ES256", key: keys.ec.privateKey, kid: "k1" };
  const k2: Signer = { alg: "EdDSA", key: keys.ed.privateKey, kid: "k2" };
  let served: object = { keys: [jwk(keys.ec.publicKey, "k1", "ES256")] };
  let fetches = 0;
  const server = createHttpsServer(
    { cert: readFileSync(certs.serverCert), key: readFileSync(certs.serverKey) },
    (req, res) => {
      fetches++;
      res.writeHead(req.url === "/jwks" ? 200 : 404, { "content-type": "application/json" });
      res.end(JSON.stringify(served));
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  const lines: string[] = [];
  const broker = assembleBroker(
    testConfig({
      auth_chain: ["jwt"],
      jwt_jwks_url: `https://127.0.0.1:${port}/jwks`,
      jwt_cafile: certs.caCert,
      jwt_jwks_refresh: 1,
    }),
    new Logger(["all"], { sink: (l) => lines.push(l) }),
  ).broker;
  const [l] = await broker.start();
  try {
    assert.equal(await withToken(l.port, 5, signJwt(k1, good("dev1"))), 0, "key from the URL");
    assert.equal(await withToken(l.port, 5, signJwt(k2, good("dev1"))), 0x86, "not served yet");
    // The identity provider rotates its keys: the next refresh brings k2.
    served = { keys: [jwk(keys.ed.publicKey, "k2", "EdDSA")] };
    const seen = fetches;
    await until(() => fetches > seen + 1, 10_000, "a JWKS refresh");
    assert.equal(await withToken(l.port, 5, signJwt(k2, good("dev1"))), 0, "rotated key");
    assert.equal(await withToken(l.port, 5, signJwt(k1, good("dev1"))), 0x86, "retired key");
    // The server goes away: one line is logged and the last good set stays in force.
    await new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections?.();
    });
    await until(
      () => lines.some((x) => x.includes("the last good key set stays")),
      10_000,
      "the outage line",
    );
    await sleep(1500);
    assert.equal(
      lines.filter((x) => x.includes("the last good key set stays")).length,
      1,
      "logged once per outage",
    );
    assert.equal(await withToken(l.port, 5, signJwt(k2, good("dev1"))), 0, "last good set");
  } finally {
    await broker.stop();
    server.close();
    certs.cleanup();
  }
});

test("jwt: the acl claim (EMQX format) is enforced on publish, subscribe and delivery", async () => {
  const tb = await jwtBroker({ jwt_secret: SECRET });
  const acl = [
    { permission: "allow", action: "publish", topic: "d/${clientid}/#", qos: [0, 1] },
    { permission: "deny", action: "subscribe", topic: "all/secret" },
    { permission: "allow", action: "subscribe", topics: ["c/${clientid}/#", "eq all/#"] },
    { permission: "allow", action: "all", topic: "shared/${username}" },
  ];
  const token = signJwt(hs("HS256"), good("dev1", { acl }));
  const other = signJwt(hs("HS256"), good("feed", { acl: { pub: ["#"], sub: ["#"] } }));
  const dev = await connect(tb, {
    clientId: "dev1",
    username: "dev1",
    password: token,
    protocolVersion: 5,
  });
  const feed = await connect(tb, {
    clientId: "feed",
    username: "feed",
    password: other,
    protocolVersion: 5,
  });
  const got: string[] = [];
  dev.on("message", (t) => got.push(t));
  try {
    const sub = async (filter: string) => (await subCodes(dev, [filter]))[0];
    // Subscribe: c/dev1/# and the literal all/# granted; c/dev2/# and all/+ refused (0x87).
    assert.equal(await sub("c/dev1/#"), 1);
    assert.equal(await sub("c/dev2/#"), 0x87);
    assert.equal(await sub("all/+"), 0x87, "eq all/# grants only the literal filter");
    assert.equal(await sub("all/#"), 1);
    assert.equal(await sub("shared/dev1"), 1);
    // Publish: d/dev1/... at QoS 0/1 allowed, at QoS 2 or elsewhere refused.
    const pub = (topic: string, qos: 1 | 2) => pubCode(dev, topic, qos);
    assert.ok([0, 0x10].includes(await pub("d/dev1/t", 1)));
    assert.equal(await pub("d/dev2/t", 1), 0x87);
    assert.equal(await pub("d/dev1/t", 2), 0x87, "qos [0, 1] only");
    assert.equal(await pub("c/dev1/t", 1), 0x87, "subscribe rights do not grant publishing");
    // Delivery: all/secret matches the subscription all/# but the deny rule keeps it away.
    await feed.publishAsync("all/secret", "no", { qos: 1 });
    await feed.publishAsync("all/news", "yes", { qos: 1 });
    await feed.publishAsync("c/dev1/cmd", "yes", { qos: 1 });
    await until(() => got.length >= 2, 5000, "two deliveries");
    await sleep(200);
    assert.deepEqual(got.sort(), ["all/news", "c/dev1/cmd"]);
  } finally {
    await endAll(dev, feed);
    await tb.stop();
  }
});

test("jwt: a token without an acl claim leaves the decision to the next authorizer (acl_file)", async () => {
  const tb = await jwtBroker({
    auth_chain: ["jwt", "acl_file"],
    jwt_secret: SECRET,
    acl_file: file("acl", "pattern readwrite own/%u/#\n"),
  });
  const c = await connect(tb, {
    clientId: "dev1",
    username: "dev1",
    password: signJwt(hs("HS256"), good("dev1")),
    protocolVersion: 5,
  });
  try {
    assert.ok([0, 0x10].includes(await pubCode(c, "own/dev1/x", 1)));
    assert.equal(await pubCode(c, "other/x", 1), 0x87);
  } finally {
    await endAll(c);
    await tb.stop();
  }
});

/** The PUBACK reason code (MQTT.js rejects a failure code; its code is read from the error). */
async function pubCode(c: MqttClient, topic: string, qos: 1 | 2 = 1): Promise<number> {
  try {
    const ack = (await c.publishAsync(topic, "x", { qos })) as { reasonCode?: number } | undefined;
    return ack?.reasonCode ?? 0;
  } catch (e) {
    return (e as { code?: number }).code ?? -1;
  }
}

/** The SUBACK codes for `filters` (MQTT.js rejects a SUBACK holding a failure code). */
async function subCodes(c: MqttClient, filters: string[], qos: 0 | 1 = 1): Promise<number[]> {
  try {
    return (await c.subscribeAsync(filters, { qos })).map((g) => g.qos);
  } catch (e) {
    const granted = (e as { packet?: { granted?: number[] } }).packet?.granted;
    if (!granted) throw e;
    return granted;
  }
}

/** Runs a program without blocking the broker in this process; its exit status and output. */
function run(cmd: string, args: string[]): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout!.on("data", (d) => (out += d));
    child.stderr!.on("data", (d) => (out += d));
    const timer = setTimeout(() => child.kill(), 10_000);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, out });
    });
  });
}

/** Connects with v5 enhanced authentication OAUTH2-JWT; returns the raw client after CONNACK. */
async function jwtConnect(port: number, token: string, clientId = "dev1") {
  const c = await rawConnect(port, 5);
  c.send(connectPacket(clientId, 5, {
    properties: { authenticationMethod: "OAUTH2-JWT", authenticationData: enc(token) },
  }));
  const ack = await c.next("connack", 5000);
  return { c, ack };
}

test("jwt: v5 re-authentication with a fresh token (AUTH 0x19, OAUTH2-JWT) keeps the connection past the first token's exp; expiry disconnects with 0xA0 [MQTT-4.12.1-1 v5]", async () => {
  const tb = await jwtBroker({ jwt_secret: SECRET, jwt_clock_skew: 0 });
  const exp = now(3);
  const short = (id: string) => signJwt(hs("HS256"), good(id, { exp }));
  try {
    const { c: kept, ack } = await jwtConnect(tb.port, short("dev1"));
    assert.equal(ack.reasonCode, 0);
    assert.equal(ack.properties?.authenticationMethod, "OAUTH2-JWT");
    const { c: lapsed } = await jwtConnect(tb.port, short("dev2"), "dev2");
    kept.send({
      cmd: "auth",
      reasonCode: 0x19,
      properties: {
        authenticationMethod: "OAUTH2-JWT",
        authenticationData: enc(signJwt(hs("HS256"), good("dev1", { exp: now(600) }))),
      },
    });
    const reply = await kept.next("auth", 5000);
    assert.equal(reply.reasonCode, 0, "re-authenticated");
    // dev2 did not re-authenticate: DISCONNECT 0xA0 Maximum connect time when its token expires.
    const bye = await lapsed.next("disconnect", 10_000);
    assert.equal(bye.reasonCode, 0xa0);
    await lapsed.closed;
    // dev1 is still connected after its first token's exp.
    await until(() => Date.now() / 1000 > exp + 1, 10_000, "the first token's exp");
    kept.send({ cmd: "pingreq" });
    await kept.next("pingresp", 5000);
    assert.equal(kept.socket.destroyed, false);
    kept.close();

    // A v3.1.1 client with an expiring token is closed (v3 has no DISCONNECT from the server).
    const v3 = await rawConnect(tb.port, 4);
    const soon = signJwt(hs("HS256"), good("dev3", { exp: now(2) }));
    v3.send(connectPacket("dev3", 4, { username: "dev3", password: enc(soon) }));
    assert.equal((await v3.next("connack", 5000)).returnCode, 0);
    await v3.closed;
    assert.equal(v3.packets.filter((p) => p.cmd === "disconnect").length, 0);
  } finally {
    await tb.stop();
  }
});

test("jwt: a re-authentication with a bad token disconnects [MQTT-4.12.1-2 v5]; AUTH without a method in CONNECT is a protocol error", async () => {
  const tb = await jwtBroker({ jwt_secret: SECRET });
  try {
    const { c } = await jwtConnect(tb.port, signJwt(hs("HS256"), good("dev1")));
    c.send({
      cmd: "auth",
      reasonCode: 0x19,
      properties: {
        authenticationMethod: "OAUTH2-JWT",
        authenticationData: enc(signJwt(hs("HS256"), good("dev1", { exp: now(-600) }))),
      },
    });
    assert.equal((await c.next("disconnect", 5000)).reasonCode, 0x87);
    await c.closed;

    const plain = await rawConnect(tb.port, 5);
    plain.send(connectPacket("dev1", 5, {
      username: "dev1",
      password: enc(signJwt(hs("HS256"), good("dev1"))),
    }));
    assert.equal((await plain.next("connack", 5000)).reasonCode, 0);
    plain.send({
      cmd: "auth",
      reasonCode: 0x19,
      properties: { authenticationMethod: "OAUTH2-JWT", authenticationData: enc("x") },
    });
    assert.equal((await plain.next("disconnect", 5000)).reasonCode, 0x82);
    // An authentication method no link takes is refused at CONNECT: 0x8C.
    assert.equal(
      await connackCode(tb.port, 5, { properties: { authenticationMethod: "SCRAM-SHA-1" } }),
      0x8c,
    );
  } finally {
    await tb.stop();
  }
});

test("jwt: mosquitto_pub -P <token> publishes through the acl claim; a bad token is refused", async () => {
  const tb = await jwtBroker({ jwt_secret: SECRET });
  const token = signJwt(hs("HS256"), good("dev1", { acl: { pub: ["d/dev1/#"] } }));
  const watcher = await connect(tb, {
    clientId: "w",
    username: "w",
    password: signJwt(hs("HS256"), good("w", { acl: { sub: ["#"] } })),
  });
  const got: string[] = [];
  watcher.on("message", (t, p) => got.push(`${t}=${p}`));
  await watcher.subscribeAsync("d/#", { qos: 1 });
  const pub = (tok: string, v: string) =>
    run("mosquitto_pub", [
      "-h",
      "127.0.0.1",
      "-p",
      String(tb.port),
      "-V",
      v,
      "-i",
      "dev1",
      "-u",
      "dev1",
      "-P",
      tok,
      "-q",
      "1",
      "-t",
      "d/dev1/temp",
      "-m",
      `21-${v}`,
    ]);
  try {
    for (const v of ["mqttv311", "mqttv5"]) {
      const r = await pub(token, v);
      assert.equal(r.status, 0, r.out);
    }
    await until(() => got.length >= 2, 5000, "both messages");
    assert.deepEqual(got.sort(), ["d/dev1/temp=21-mqttv311", "d/dev1/temp=21-mqttv5"]);
    const bad = await pub(tamper(token), "mqttv5");
    assert.notEqual(bad.status, 0);
    assert.match(bad.out, /bad user name or password|not authori/i);
  } finally {
    await endAll(watcher);
    await tb.stop();
  }
});

test("jwt: serve --test-config's file check reads the public key and the JWKS file a chain with jwt uses", () => {
  const conf = (over: Partial<Config>) => testConfig({ auth_chain: ["jwt"], ...over });
  const good = file("good.pem", pem(keys.ed.publicKey));
  const jwks = file("good.jwks", JSON.stringify({ keys: [jwk(keys.ec.publicKey, "k", "ES256")] }));
  assert.deepEqual(checkFiles(conf({ jwt_public_key_file: good, jwt_jwks_file: jwks })), []);
  const badPem = file(
    "bad.pem",
    "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n",
  );
  const badJwks = file("bad.jwks", `{"keys": []}`);
  const lines = checkFiles(conf({ jwt_public_key_file: badPem, jwt_jwks_file: badJwks }));
  assert.equal(lines.length, 2, lines.join("\n"));
  assert.match(lines[0], /jwt_public_key_file.*not a PEM public key/);
  assert.match(lines[1], /jwt_jwks_file.*not a JWKS/);
  // Not in any chain: not read.
  assert.deepEqual(checkFiles(testConfig({ jwt_public_key_file: badPem })), []);
});

test("auth_chain per listener: tokens on one listener, the password file's allow_anonymous on the other; auth_no_match = allow lets through what the acl claim does not cover", async () => {
  const l = defaults(LISTENER_KEYS);
  const config = testConfig({
    jwt_secret: SECRET,
    allow_anonymous: true,
    auth_no_match: "allow",
    listeners: [{ ...l, port: 0, auth_chain: ["jwt"] }, { ...l, port: 0 }],
  });
  const { broker } = assembleBroker(config);
  const [devices, others] = await broker.start();
  try {
    // The devices' listener asks for a token; anonymous clients are refused there only.
    assert.equal(await connackCode(devices.port, 5, {}), 0x87);
    assert.equal(await connackCode(others.port, 5, {}), 0);
    const token = signJwt(
      hs("HS256"),
      good("dev1", { acl: [{ permission: "deny", action: "publish", topic: "ctl/#" }] }),
    );
    assert.equal(await withToken(devices.port, 5, token), 0);
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${devices.port}`, {
      clientId: "dev1",
      username: "dev1",
      password: token,
      protocolVersion: 5,
      reconnectPeriod: 0,
    });
    try {
      assert.equal(await pubCode(c, "ctl/reboot"), 0x87, "the claim's deny rule");
      assert.ok([0, 0x10].includes(await pubCode(c, "data/1")), "no rule matches: allowed");
    } finally {
      await endAll(c);
    }
  } finally {
    await broker.stop();
  }
});
