/**
 * Mosquitto options Midge honours with Mosquitto's meaning: per_listener_settings (each
 * listener's password file, ACL file and allow_anonymous), clientid_prefixes,
 * use_username_as_clientid and log_timestamp_format.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt from "mqtt";
import { assembleBroker } from "../src/assemble.ts";
import { defaults, LISTENER_KEYS } from "../src/config/schema.ts";
import { listenerSecurity } from "../src/config/listener_security.ts";
import { Logger, silentLogger } from "../src/sys/log.ts";
import { strftime } from "../src/sys/strftime.ts";
import { collect, connect, endAll, startBroker, testConfig, until } from "./helpers/broker.ts";
import { rawConnect } from "./helpers/raw.ts";

const dir = mkdtempSync(join(tmpdir(), "midge-mopts-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Connects and returns the CONNACK code (0 = accepted), v5 reason code or v3 return code. */
async function connackCode(url: string, opts: mqtt.IClientOptions): Promise<number> {
  const c = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
  try {
    return await new Promise<number>((resolve, reject) => {
      c.once("connect", (p) => resolve(p.reasonCode ?? p.returnCode ?? 0));
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

test("per_listener_settings: each listener checks its own password file and ACL file", async () => {
  const pw1 = join(dir, "pw1");
  const pw2 = join(dir, "pw2");
  execFileSync("mosquitto_passwd", ["-c", "-b", pw1, "alice", "one"]);
  execFileSync("mosquitto_passwd", ["-c", "-b", pw2, "alice", "two"]);
  const acl1 = join(dir, "acl1");
  writeFileSync(acl1, "user alice\ntopic readwrite one/#\n");
  const l = defaults(LISTENER_KEYS);
  const config = testConfig({
    per_listener_settings: true,
    listeners: [
      { ...l, port: 0, password_file: pw1, acl_file: acl1, allow_anonymous: false },
      { ...l, port: 0, password_file: pw2, allow_anonymous: true },
    ],
  });
  assert.deepEqual(listenerSecurity(config, config.listeners[1]), {
    password_file: pw2,
    acl_file: "",
    allow_anonymous: true,
  });
  const broker = assembleBroker(config, silentLogger).broker;
  const [b1, b2] = await broker.start();
  const u1 = `mqtt://127.0.0.1:${b1.port}`;
  const u2 = `mqtt://127.0.0.1:${b2.port}`;
  try {
    // Passwords: each listener knows only its own file.
    assert.equal(await connackCode(u1, { username: "alice", password: "one" }), 0);
    assert.equal(await connackCode(u1, { username: "alice", password: "two" }), 5);
    assert.equal(await connackCode(u2, { username: "alice", password: "two" }), 0);
    assert.equal(await connackCode(u2, { username: "alice", password: "one" }), 5);
    // Anonymous: refused on the first, accepted on the second.
    assert.equal(await connackCode(u1, {}), 5);
    assert.equal(await connackCode(u2, {}), 0);

    // The ACL of listener 1 binds alice there; on listener 2 she has no topic restriction.
    const a1 = await mqtt.connectAsync(u1, {
      username: "alice",
      password: "one",
      protocolVersion: 5,
      reconnectPeriod: 0,
    });
    const a2 = await mqtt.connectAsync(u2, {
      username: "alice",
      password: "two",
      protocolVersion: 5,
      reconnectPeriod: 0,
    });
    try {
      await assert.rejects(a1.subscribeAsync("two/#"), /Not authorized/, "listener 1's ACL");
      const granted = await a2.subscribeAsync("two/#");
      assert.equal(granted[0].qos, 0, "listener 2 has no ACL");
      const got = collect(a2);
      await a2.publishAsync("two/x", "hello", { qos: 1 });
      const [m] = await got.next(1, 10000);
      assert.equal(m.payload, "hello");
    } finally {
      await endAll(a1, a2);
    }
  } finally {
    await broker.stop();
  }
});

test("clientid_prefixes: other client ids are refused as not authorized (v3 5, v5 0x87)", async () => {
  const tb = await startBroker({ clientid_prefixes: "dev-" });
  try {
    assert.equal(await connackCode(tb.url, { clientId: "dev-1" }), 0);
    assert.equal(await connackCode(tb.url, { clientId: "other" }), 5);
    assert.equal(await connackCode(tb.url, { clientId: "other", protocolVersion: 5 }), 0x87);
  } finally {
    await tb.stop();
  }
});

test("use_username_as_clientid: the user name replaces the client id; none given is refused", async () => {
  const tb = await startBroker({
    allow_anonymous: true,
    listeners: [{ ...defaults(LISTENER_KEYS), port: 0, use_username_as_clientid: true }],
  });
  try {
    const c = await connect(tb, { clientId: "ignored", username: "meter-7" });
    try {
      assert.ok(tb.broker.sessions.get("meter-7"), "session under the user name");
      assert.equal(tb.broker.sessions.get("ignored"), undefined);
    } finally {
      await endAll(c);
    }
    assert.equal(await connackCode(tb.url, { clientId: "x" }), 5);
    assert.equal(await connackCode(tb.url, { clientId: "x", protocolVersion: 5 }), 0x87);
  } finally {
    await tb.stop();
  }
});

test("log_timestamp_format: strftime fields in local time, as Mosquitto's", () => {
  const ms = new Date(2024, 1, 3, 4, 5, 6).getTime();
  assert.equal(strftime("%Y-%m-%dT%H:%M:%S", ms), "2024-02-03T04:05:06");
  assert.equal(strftime("%F %T %% %j %b %a", ms), "2024-02-03 04:05:06 % 034 Feb Sat");
  assert.equal(strftime("%s", ms), String(Math.floor(ms / 1000)));
  const log = new Logger(["all"], { sinks: [], timestampFormat: "%H:%M:%S" });
  assert.equal(log.format("notice", "hello", ms), "04:05:06: hello");
});

test("max_inflight_bytes: no more QoS 1 messages go out while those in flight hold that many payload bytes", async () => {
  const tb = await startBroker({ max_inflight_bytes: 10 });
  const r = await rawConnect(tb.port);
  const pub = await connect(tb, { clientId: "pub" });
  try {
    r.send({ cmd: "connect", clientId: "slow", protocolVersion: 4, keepalive: 60, clean: true });
    await r.next("connack");
    r.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "b/#", qos: 1 }] });
    await r.next("suback");
    for (const n of ["1", "2", "3"]) await pub.publishAsync(`b/${n}`, "sixsix", { qos: 1 });
    // The three are routed (acknowledged to the publisher); a PINGRESP after them shows what
    // the slow client was sent: 6 bytes, then 12 >= 10, so the third waits.
    r.send({ cmd: "pingreq" });
    await r.next("pingresp");
    const sent = () => r.packets.filter((p) => p.cmd === "publish").map((p) => p.topic);
    assert.deepEqual(sent(), ["b/1", "b/2"]);
    const first = r.packets.find((p) => p.cmd === "publish");
    r.send({ cmd: "puback", messageId: first.messageId });
    await until(() => sent().length === 3, 5000, "the third message after an acknowledgement");
    assert.deepEqual(sent(), ["b/1", "b/2", "b/3"]);
  } finally {
    r.close();
    await endAll(pub);
    await tb.stop();
  }
});

test("memory_limit: over it, new connections are refused (v5 0x89) and incoming messages dropped (0x97)", async () => {
  const tb = await startBroker({ allow_anonymous: true });
  const c = await connect(tb, { clientId: "m1", protocolVersion: 5 });
  try {
    const got = collect(c);
    await c.subscribeAsync("m/#", { qos: 1 });
    // A limit the process is certainly over (one byte), sampled as the broker's sweep does.
    tb.broker.config.memory_limit = 1;
    tb.broker.sweep();
    assert.equal(tb.broker.memoryOver, true);
    assert.equal(await connackCode(tb.url, { clientId: "m2", protocolVersion: 5 }), 0x89);
    await assert.rejects(c.publishAsync("m/1", "x", { qos: 1 }), /Quota exceeded/);
    // Back under the limit: connections and messages are taken again.
    tb.broker.config.memory_limit = 0;
    tb.broker.sweep();
    assert.equal(tb.broker.memoryOver, false);
    assert.equal(await connackCode(tb.url, { clientId: "m2", protocolVersion: 5 }), 0);
    await c.publishAsync("m/2", "y", { qos: 1 });
    const [m] = await got.next(1, 5000);
    assert.equal(m.topic, "m/2");
  } finally {
    await endAll(c);
    await tb.stop();
  }
});
