/**
 * Regression tests for broker faults found by the interoperability suites (Eclipse Paho's
 * client_test.py / client_test5.py, mosquitto_pub/sub, paho-mqtt). Each test names the rule and
 * the Paho test that found it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, connectCollect, endAll, sleep, startBroker } from "./helpers/broker.ts";
import { type AnyPacket, connectPacket } from "./helpers/raw.ts";
import { connect as netConnect } from "node:net";
import type { Buffer } from "node:buffer";
import mqttPacket from "mqtt-packet";
import { longTimeout, MAX_TIMEOUT_MS, type TimerHandle } from "../src/broker/timers.ts";
import { systemClock } from "../src/broker/clock.ts";

test("longTimeout: a delay beyond setTimeout's 2^31-1 ms does not fire at once; clearTimeout cancels it", async () => {
  let fired = 0;
  let handle: TimerHandle = longTimeout(() => fired++, MAX_TIMEOUT_MS + 1000, (t) => (handle = t));
  await sleep(30);
  assert.equal(fired, 0, "a plain setTimeout would have fired after 1 ms");
  systemClock.clearTimeout(handle);

  let short = 0;
  const h = longTimeout(() => short++, 1, () => assert.fail("no re-arm for a short delay"));
  await sleep(30);
  assert.equal(short, 1);
  systemClock.clearTimeout(h);
});

test("a Session Expiry Interval set on DISCONNECT over 24.8 days keeps the session (Paho test_publication_expiry) [MQTT-3.1.2-23 v5]", async () => {
  const tb = await startBroker();
  try {
    const sub = await connect(tb, {
      protocolVersion: 5,
      clientId: "long",
      clean: true,
      properties: { sessionExpiryInterval: 99999 },
    });
    await sub.subscribeAsync("exp/t", { qos: 2 });
    await sub.endAsync(false, { properties: { sessionExpiryInterval: 999999999 } });
    // With an overflowing setTimeout the session ended 1 ms after the disconnect.
    await sleep(50);
    assert.ok(tb.broker.sessions.has("long"), "the session is still there");
    const pub = await connect(tb, { protocolVersion: 5 });
    await pub.publishAsync("exp/t", "kept", { qos: 1, properties: { messageExpiryInterval: 60 } });
    await endAll(pub);
    const { client, got, connack } = await connectCollect(tb, {
      protocolVersion: 5,
      clientId: "long",
      clean: false,
      properties: { sessionExpiryInterval: 0 },
    });
    try {
      assert.equal(connack.sessionPresent, true);
      const [m] = await got.next(1);
      assert.equal(m.payload, "kept");
      assert.ok(m.packet.properties.messageExpiryInterval <= 60);
    } finally {
      await endAll(client);
    }
  } finally {
    await tb.stop();
  }
});

test("a Session Expiry Interval on CONNECT over 24.8 days keeps the session after disconnect [MQTT-3.1.2-23 v5]", async () => {
  const tb = await startBroker();
  try {
    const c = await connect(tb, {
      protocolVersion: 5,
      clientId: "long2",
      properties: { sessionExpiryInterval: 0xfffffffe },
    });
    await c.endAsync();
    await sleep(50);
    assert.ok(tb.broker.sessions.has("long2"));
  } finally {
    await tb.stop();
  }
});

test("after a v5 DISCONNECT 0x93 the broker reads on until the client closes: the client sees the DISCONNECT and its late PUBRELs cause no reset (Paho test_flow_control2) [MQTT-3.3.4-7 v5]", async () => {
  // Receive Maximum 2: the third unacknowledged QoS 2 PUBLISH exceeds it.
  const tb = await startBroker({ max_inflight_messages: 2 });
  // allowHalfOpen: the client keeps writing after the broker's FIN, as the Paho client does.
  const sock = netConnect({ port: tb.port, host: "127.0.0.1", allowHalfOpen: true });
  const parser = mqttPacket.parser({ protocolVersion: 5 });
  const got: AnyPacket[] = [];
  parser.on("packet", (p: AnyPacket) => got.push(p));
  sock.on("data", (d: Buffer) => parser.parse(d));
  const errors: Error[] = [];
  sock.on("error", (e) => errors.push(e));
  const closed = new Promise<boolean>((r) => sock.once("close", (hadError) => r(hadError)));
  const ended = new Promise<void>((r) => sock.once("end", () => r()));
  const gen = (p: AnyPacket) => mqttPacket.generate(p, { protocolVersion: 5 });
  try {
    await new Promise((r) => sock.once("connect", r));
    sock.write(gen({ ...connectPacket("fc2", 5) }));
    for (let i = 1; i <= 3; i++) {
      sock.write(gen({ cmd: "publish", topic: "fc", payload: `m${i}`, qos: 2, messageId: i }));
    }
    await ended; // the broker closed its side, after everything it sent
    assert.deepEqual(got.map((p) => [p.cmd, p.messageId ?? p.reasonCode]), [
      ["connack", 0],
      ["pubrec", 1],
      ["pubrec", 2],
      ["disconnect", 0x93],
    ]);
    // Like the Paho client: answer each PUBREC after the broker has closed, one write at a time.
    for (const id of [1, 2]) {
      await new Promise<void>((resolve) =>
        sock.write(gen({ cmd: "pubrel", messageId: id }), () => setTimeout(resolve, 20))
      );
    }
    sock.end();
    assert.equal(await closed, false, `the connection was reset: ${errors.join(", ")}`);
    assert.deepEqual(errors, []);
  } finally {
    sock.destroy();
    await tb.stop();
  }
});
