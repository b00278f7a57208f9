/**
 * Packet logging as Mosquitto writes it (log_type debug / all, `midge serve -v`): the lines for
 * CONNECT's will, CONNACK, SUBSCRIBE/SUBACK, PUBLISH both ways, the QoS 1 and 2 acknowledgements,
 * UNSUBSCRIBE/UNSUBACK, PINGREQ/PINGRESP and DISCONNECT, in Mosquitto's formats.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import mqtt from "mqtt";
import { assembleBroker } from "../src/assemble.ts";
import { Logger } from "../src/sys/log.ts";
import { testConfig, until } from "./helpers/broker.ts";
import { rawConnect } from "./helpers/raw.ts";

/** A broker whose log lines (without timestamps) are collected. */
async function logged(types: string[]) {
  const lines: string[] = [];
  const log = new Logger(types, { timestamp: false, sink: (l) => lines.push(l) });
  const broker = assembleBroker(testConfig({ allow_anonymous: true }), log).broker;
  const [l] = await broker.start();
  return { broker, lines, url: `mqtt://127.0.0.1:${l.port}` };
}

test("log_type all: packets are logged in Mosquitto's formats", async () => {
  const { broker, lines, url } = await logged(["all"]);
  const opts = { reconnectPeriod: 0, keepalive: 0, protocolVersion: 4 as const };
  const sub = await mqtt.connectAsync(url, { ...opts, clientId: "s1" });
  const pub = await mqtt.connectAsync(url, {
    ...opts,
    clientId: "p1",
    will: { topic: "w/t", payload: Buffer.from("bye"), qos: 1, retain: true },
  });
  try {
    await sub.subscribeAsync("a/#", { qos: 2 });
    const got = new Promise((r) => sub.once("message", r));
    await pub.publishAsync("a/b", "hello", { qos: 2 });
    await got;
    await until(() => lines.includes("Received PUBCOMP from s1 (Mid: 1, RC:0)"), 5000, "PUBCOMP");
    await pub.publishAsync("a/c", "x1", { qos: 1 });
    await until(() => lines.some((l) => l.startsWith("Received PUBACK from s1")), 5000, "PUBACK");
    await sub.unsubscribeAsync("a/#");
    await until(() => lines.includes("Sending UNSUBACK to s1"), 5000, "UNSUBACK");
    await pub.endAsync();
    await until(() => lines.includes("Received DISCONNECT from p1"), 5000, "DISCONNECT");
    // MQTT.js numbers its own packets from a random start: p1's ids are shown as #.
    const norm = lines.map((l) =>
      l.includes(" p1 ") || l.endsWith(" p1")
        ? l.replace(/([( ])m\d+([,)])/, "$1m#$2").replace(/Mid: \d+/, "Mid: #")
        : l
    );
    const expected: Record<string, string[]> = {
      p1: [
        "Will message specified (3 bytes) (r1, q1).",
        "\tw/t",
        "Sending CONNACK to p1 (0, 0)",
        "Received PUBLISH from p1 (d0, q2, r0, m#, 'a/b', ... (5 bytes))",
        "Sending PUBREC to p1 (m#, rc0)",
        "Received PUBREL from p1 (Mid: #)",
        "Sending PUBCOMP to p1 (m#)",
        "Received PUBLISH from p1 (d0, q1, r0, m#, 'a/c', ... (2 bytes))",
        "Sending PUBACK to p1 (m#, rc0)",
        "Received DISCONNECT from p1",
      ],
      s1: [
        "No will message specified.",
        "Sending CONNACK to s1 (0, 0)",
        "Received SUBSCRIBE from s1",
        "\ta/# (QoS 2)",
        "s1 2 a/#",
        "Sending SUBACK to s1",
        "Sending PUBLISH to s1 (d0, q2, r0, m1, 'a/b', ... (5 bytes))",
        "Received PUBREC from s1 (Mid: 1)",
        "Sending PUBREL to s1 (m1)",
        "Received PUBCOMP from s1 (Mid: 1, RC:0)",
        "Sending PUBLISH to s1 (d0, q1, r0, m2, 'a/c', ... (2 bytes))",
        "Received PUBACK from s1 (Mid: 2, RC:0)",
        "Received UNSUBSCRIBE from s1",
        "\ta/#",
        "Sending UNSUBACK to s1",
      ],
    };
    // Mosquitto's notice for each accepted connection, before its CONNECT is handled.
    const port = new URL(url).port;
    const accepted = lines.filter((l) =>
      /^New connection from 127\.0\.0\.1:\d+ on port \d+\.$/.test(l)
    );
    assert.equal(accepted.length, 2, lines.join("\n"));
    assert.ok(accepted.every((l) => l.endsWith(` on port ${port}.`)));
    // Each client's lines, in this order (other clients' lines and notices in between).
    for (const [id, want] of Object.entries(expected)) {
      let at = 0;
      for (const line of norm) if (line === want[at]) at++;
      assert.equal(at, want.length, `${id}: missing "${want[at]}" in:\n${norm.join("\n")}`);
    }
  } finally {
    sub.end(true);
    pub.end(true);
    await broker.stop();
  }
});

test("PINGREQ and PINGRESP are logged; with debug off no packet is", async () => {
  const on = await logged(["debug"]);
  const port = Number(new URL(on.url).port);
  const c = await rawConnect(port);
  try {
    c.send({ cmd: "connect", clientId: "k1", protocolVersion: 4, keepalive: 60, clean: true });
    await c.next("connack");
    c.send({ cmd: "pingreq" });
    await c.next("pingresp");
    assert.ok(on.lines.includes("Received PINGREQ from k1"), on.lines.join("\n"));
    assert.ok(on.lines.includes("Sending PINGRESP to k1"), on.lines.join("\n"));
  } finally {
    c.close();
    await on.broker.stop();
  }
  const off = await logged(["error", "warning", "notice", "information"]);
  const d = await mqtt.connectAsync(off.url, { reconnectPeriod: 0, clientId: "k2" });
  try {
    await d.publishAsync("t", "x", { qos: 1 });
    assert.deepEqual(off.lines.filter((l) => /^(Received|Sending) /.test(l)), []);
  } finally {
    d.end(true);
    await off.broker.stop();
  }
});
