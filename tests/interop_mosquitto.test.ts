/**
 * Interoperability with Eclipse Mosquitto's command-line clients (`mosquitto_pub`,
 * `mosquitto_sub`, Debian package mosquitto-clients) at MQTT 3.1, 3.1.1 and 5.0. The broker runs
 * in this process; the clients are separate programs with their own MQTT implementation
 * (libmosquitto), so these tests check Midge against a codec it did not write.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";
import process from "node:process";
import { connect, endAll, startBroker, type TestBroker } from "./helpers/broker.ts";
import type { Connection } from "../src/broker/connection.ts";

const VERSIONS = ["mqttv31", "mqttv311", "mqttv5"] as const;
type Tool = "mosquitto_pub" | "mosquitto_sub";

/** Fail (never skip) with a clear message when a client program is not installed. */
function requireTool(name: Tool): void {
  const dirs = (process.env.PATH ?? "").split(delimiter).filter(Boolean);
  if (!dirs.some((d) => existsSync(join(d, name)))) {
    throw new Error(
      `${name} is not installed (PATH=${process.env.PATH}): these interoperability tests need ` +
        `Debian's mosquitto-clients package (apt-get install mosquitto-clients; .ci/run does this)`,
    );
  }
}

/** Arguments: a string is split at spaces (pass an array for values that contain spaces). */
type Args = string | string[];
const argv = (a: Args) => typeof a === "string" ? a.split(" ").filter(Boolean) : a;

interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface Proc {
  child: ChildProcess;
  done: Promise<Exit>;
}

/** Start a client against the test broker; `done` resolves when it exits (killed after 20 s). */
function start(tb: TestBroker, tool: Tool, args: Args, input = ""): Proc {
  requireTool(tool);
  const all = ["-h", "127.0.0.1", "-p", String(tb.port), ...argv(args)];
  const child = spawn(tool, all, { stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  const guard = setTimeout(() => child.kill("SIGKILL"), 20000);
  const done = new Promise<Exit>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  }).finally(() => clearTimeout(guard));
  child.stdin!.on("error", () => {});
  child.stdin!.end(input);
  return { child, done };
}

/** Run a client to completion. */
function run(tb: TestBroker, tool: Tool, args: Args, input?: string): Promise<Exit> {
  return start(tb, tool, args, input).done;
}

/** Run mosquitto_pub and assert it exited 0. */
async function pub(tb: TestBroker, args: Args, input?: string): Promise<Exit> {
  const r = await run(tb, "mosquitto_pub", args, input);
  assert.equal(r.code, 0, `mosquitto_pub ${argv(args).join(" ")}: ${r.stdout}${r.stderr}`);
  return r;
}

/** Start mosquitto_sub. */
function sub(tb: TestBroker, args: Args): Proc {
  return start(tb, "mosquitto_sub", args);
}

/** Resolve once `cond` holds (polled); reject naming `what` after 10 s. */
async function waitFor(what: string, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 10000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Wait until client `id` is connected and holds a subscription to `filter`. */
function subscribed(tb: TestBroker, id: string, filter: string): Promise<void> {
  return waitFor(`${id} to subscribe to ${filter}`, () => {
    const s = tb.broker.sessions.get(id);
    return !!s && s.connection?.state === "open" && s.subscriptions.has(filter);
  });
}

/** The message lines of a `-F M|...` output (debug lines from -d are left out). */
function messages(out: string): string[] {
  return out.split("\n").filter((l) => l.startsWith("M|")).map((l) => l.slice(2));
}

/** Output format: topic|payload|qos|retain. */
const F = "-F M|%t|%p|%q|%r";

for (const v of VERSIONS) {
  test(`${v}: mosquitto_pub QoS 0/1/2 → mosquitto_sub, full handshakes both ways [MQTT-4.3.1][MQTT-4.3.2][MQTT-4.3.3]`, async () => {
    const tb = await startBroker();
    try {
      const s = sub(tb, `-V ${v} -i s-${v} -t q/# -q 2 -C 3 ${F} -d`);
      await subscribed(tb, `s-${v}`, "q/#");
      const r0 = await pub(tb, `-V ${v} -i p0 -t q/0 -m zero -q 0`);
      const r1 = await pub(tb, `-V ${v} -i p1 -t q/1 -m one -q 1 -d`);
      const r2 = await pub(tb, `-V ${v} -i p2 -t q/2 -m two -q 2 -d`);
      assert.equal(r0.stderr, "");
      assert.match(r1.stdout, /received PUBACK \(Mid: 1/);
      assert.match(r2.stdout, /received PUBREC \(Mid: 1/);
      assert.match(r2.stdout, /received PUBCOMP \(Mid: 1/);
      const e = await s.done;
      assert.equal(e.code, 0, e.stderr);
      assert.deepEqual(messages(e.stdout), ["q/0|zero|0|0", "q/1|one|1|0", "q/2|two|2|0"]);
      // The subscriber completed the QoS 2 exchange the broker started: PUBREL arrived.
      assert.match(e.stdout, /received PUBREL/);
      assert.match(e.stdout, /sending PUBCOMP/);
    } finally {
      await tb.stop();
    }
  });
}

test("QoS is downgraded to the subscription's QoS between mosquitto clients [MQTT-3.8.4-6 v3.1.1][MQTT-3.8.4-8 v5]", async () => {
  const tb = await startBroker();
  try {
    const s = sub(tb, `-i s -t d -q 1 -C 2 ${F}`);
    await subscribed(tb, "s", "d");
    await pub(tb, "-t d -m a -q 2");
    await pub(tb, "-V mqttv5 -t d -m b -q 2");
    const e = await s.done;
    assert.equal(e.code, 0, e.stderr);
    assert.deepEqual(messages(e.stdout), ["d|a|1|0", "d|b|1|0"]);
  } finally {
    await tb.stop();
  }
});

test("MQTT.js publishes and mosquitto_sub receives; mosquitto_pub publishes and MQTT.js receives", async () => {
  const tb = await startBroker();
  const js = await connect(tb, { protocolVersion: 5, clientId: "js" });
  try {
    const s = sub(tb, `-V mqttv5 -i s -t js/out -q 2 -C 2 ${F}`);
    await subscribed(tb, "s", "js/out");
    await js.publishAsync("js/out", "from-js-1", { qos: 1 });
    await js.publishAsync("js/out", "from-js-2", { qos: 2 });
    const e = await s.done;
    assert.equal(e.code, 0, e.stderr);
    assert.deepEqual(messages(e.stdout), ["js/out|from-js-1|1|0", "js/out|from-js-2|2|0"]);

    await js.subscribeAsync("js/in", { qos: 2 });
    const got = new Promise<[string, string, number]>((resolve) =>
      js.once("message", (t, p, pk) => resolve([t, p.toString(), pk.qos]))
    );
    await pub(tb, "-V mqttv311 -t js/in -m from-mosquitto -q 2");
    assert.deepEqual(await got, ["js/in", "from-mosquitto", 2]);
  } finally {
    await endAll(js);
    await tb.stop();
  }
});

for (const v of ["mqttv311", "mqttv5"] as const) {
  test(`${v}: retained messages (-r) reach new subscribers with retain 1, -R hides them, -r -n clears [MQTT-3.3.1-5..10]`, async () => {
    const tb = await startBroker();
    try {
      await pub(tb, `-V ${v} -t r/a -m kept -q 1 -r`);
      await pub(tb, `-V ${v} -t r/b -m also -q 2 -r`);
      // A new subscriber gets both, flagged retained.
      const all = await run(tb, "mosquitto_sub", `-V ${v} -t r/# -q 2 -C 2 ${F}`);
      assert.equal(all.code, 0, all.stderr);
      assert.deepEqual(messages(all.stdout).sort(), ["r/a|kept|1|1", "r/b|also|2|1"]);

      // -R: retained messages are not printed; the next live one is, with retain 0.
      const live = sub(tb, `-V ${v} -i live -t r/# -q 1 -R -C 1 ${F}`);
      await subscribed(tb, "live", "r/#");
      await pub(tb, `-V ${v} -t r/a -m now -q 1 -r`);
      const le = await live.done;
      assert.equal(le.code, 0, le.stderr);
      assert.deepEqual(messages(le.stdout), ["r/a|now|1|0"]);

      // An empty retained message clears the topic [MQTT-3.3.1-10 v3.1.1]; r/a was replaced.
      await pub(tb, `-V ${v} -t r/b -n -r`);
      const after = sub(tb, `-V ${v} -i after -t r/# -C 2 ${F}`);
      await subscribed(tb, "after", "r/#");
      await pub(tb, `-V ${v} -t r/end -m sentinel`);
      const ae = await after.done;
      assert.equal(ae.code, 0, ae.stderr);
      assert.deepEqual(messages(ae.stdout), ["r/a|now|0|1", "r/end|sentinel|0|0"]);
    } finally {
      await tb.stop();
    }
  });
}

test("mosquitto_sub exit codes: -C n exits 0 after n messages, -W times out with 27, -E exits 0 after SUBACK", async () => {
  const tb = await startBroker();
  try {
    const counted = sub(tb, `-i c -t c -C 2 -W 10 ${F}`);
    await subscribed(tb, "c", "c");
    await pub(tb, "-t c -m 1");
    await pub(tb, "-t c -m 2");
    await pub(tb, "-t c -m 3");
    const ce = await counted.done;
    assert.equal(ce.code, 0, ce.stderr);
    assert.deepEqual(messages(ce.stdout), ["c|1|0|0", "c|2|0|0"]);

    const timedOut = await run(tb, "mosquitto_sub", "-t none -W 1");
    assert.equal(timedOut.code, 27);
    assert.match(timedOut.stderr, /Timed out/);

    const e = await run(tb, "mosquitto_sub", "-t x -t y/# -E");
    assert.equal(e.code, 0, e.stderr);
  } finally {
    await tb.stop();
  }
});

for (const v of VERSIONS) {
  test(`${v}: a will (--will-topic) is published when the client dies, not after a normal DISCONNECT [MQTT-3.1.2-8][MQTT-3.1.2-10]`, async () => {
    const tb = await startBroker();
    try {
      const watch = sub(tb, `-V ${v} -i watch -t will/# -q 1 -C ${v === "mqttv5" ? 3 : 2} ${F}`);
      await subscribed(tb, "watch", "will/#");

      // Clean exit (-E): DISCONNECT with reason 0, so the will is discarded [MQTT-3.14.4-3].
      const calm = await run(
        tb,
        "mosquitto_sub",
        `-V ${v} -i calm -t calm/x -E --will-topic will/calm --will-payload calm --will-qos 1`,
      );
      assert.equal(calm.code, 0, calm.stderr);

      // SIGINT: mosquitto_sub sends DISCONNECT; at MQTT 5 with reason 0x04 Disconnect with Will
      // Message, so the will is published; before MQTT 5 there is no such reason and it is not.
      const int = sub(
        tb,
        `-V ${v} -i int -t int/x -d --will-topic will/int --will-payload int --will-qos 1`,
      );
      await subscribed(tb, "int", "int/x");
      int.child.kill("SIGINT");
      const ie = await int.done;
      assert.match(ie.stdout, /sending DISCONNECT/);
      await waitFor("the interrupted session to end", () => !tb.broker.sessions.has("int"));

      // Abrupt: SIGKILL closes the socket without DISCONNECT, so the will is published.
      const victim = sub(
        tb,
        `-V ${v} -i victim -t victim/x --will-topic will/victim --will-payload gone --will-qos 1 --will-retain`,
      );
      await subscribed(tb, "victim", "victim/x");
      victim.child.kill("SIGKILL");
      await victim.done;
      await pub(tb, `-V ${v} -t will/sentinel -m end -q 1`);
      const we = await watch.done;
      assert.equal(we.code, 0, we.stderr);
      // Wills are delivered live with retain 0 [MQTT-3.3.1-9 v3.1.1]; the sentinel comes last.
      assert.deepEqual(messages(we.stdout), [
        ...(v === "mqttv5" ? ["will/int|int|1|0"] : []),
        "will/victim|gone|1|0",
        "will/sentinel|end|1|0",
      ]);

      // --will-retain: the will was retained [MQTT-3.1.2-17 v3.1.1][MQTT-3.1.2-15 v5].
      const later = await run(tb, "mosquitto_sub", `-V ${v} -t will/# -q 1 -C 1 ${F}`);
      assert.equal(later.code, 0, later.stderr);
      assert.deepEqual(messages(later.stdout), ["will/victim|gone|1|1"]);
    } finally {
      await tb.stop();
    }
  });
}

test("mqttv5: PUBLISH properties set with -D reach a v5 mosquitto_sub unchanged [MQTT-3.3.2-17..20]", async () => {
  const tb = await startBroker();
  try {
    const s = sub(
      tb,
      "-V mqttv5 -i props -t p/# -q 1 -C 1 -D subscribe subscription-identifier 42 " +
        "-F M|%t|%p|%q|%C|%D|%E|%F|%P|%R|%S",
    );
    await subscribed(tb, "props", "p/#");
    await pub(
      tb,
      "-V mqttv5 -t p/x -m {} -q 1 " +
        "-D publish user-property k1 v1 -D publish user-property k2 v2 " +
        "-D publish content-type application/json -D publish message-expiry-interval 3600 " +
        "-D publish response-topic p/reply -D publish correlation-data c0rr " +
        "-D publish payload-format-indicator 1",
    );
    const e = await s.done;
    assert.equal(e.code, 0, e.stderr);
    const [line] = messages(e.stdout);
    const [topic, payload, qos, ctype, corr, expiry, pfi, users, resp, subId] = line.split("|");
    assert.deepEqual(
      [topic, payload, qos, ctype, corr, pfi, resp, subId],
      ["p/x", "{}", "1", "application/json", "c0rr", "1", "p/reply", "42"],
    );
    // The expiry sent on is what is left of it [MQTT-3.3.2-6 v5]: at most what was set.
    assert.ok(Number(expiry) > 0 && Number(expiry) <= 3600, `expiry ${expiry}`);
    // User properties keep their order [MQTT-3.3.2-18 v5] (mosquitto_sub prints them space-separated).
    assert.equal(users, "k1:v1 k2:v2");
  } finally {
    await tb.stop();
  }
});

test("a v5 message with properties reaches an MQTT 3.1.1 mosquitto_sub as a plain message", async () => {
  const tb = await startBroker();
  try {
    const s = sub(tb, `-V mqttv311 -i old -t mixed -q 1 -C 1 ${F}`);
    await subscribed(tb, "old", "mixed");
    await pub(
      tb,
      "-V mqttv5 -t mixed -m hi -q 1 -D publish user-property k v -D publish content-type text/plain",
    );
    const e = await s.done;
    assert.equal(e.code, 0, e.stderr);
    assert.deepEqual(messages(e.stdout), ["mixed|hi|1|0"]);
  } finally {
    await tb.stop();
  }
});

for (const v of ["mqttv311", "mqttv5"] as const) {
  test(`${v}: persistent session (-c): QoS 1/2 published while offline are delivered on reconnect [MQTT-3.1.2-4 v3.1.1][MQTT-3.1.2-5 v3.1.1]`, async () => {
    const tb = await startBroker();
    const id = `persist-${v}`;
    const session = `-V ${v} -c ${v === "mqttv5" ? "-x 300" : ""} -i ${id}`;
    try {
      const first = await run(tb, "mosquitto_sub", `${session} -t off/# -q 2 -E`);
      assert.equal(first.code, 0, first.stderr);
      await waitFor("the session to go offline", () => !tb.broker.sessions.get(id)?.connection);
      await pub(tb, `-V ${v} -t off/1 -m one -q 1`);
      await pub(tb, `-V ${v} -t off/2 -m two -q 2`);
      await pub(tb, `-V ${v} -t off/0 -m zero -q 0`);
      const back = await run(tb, "mosquitto_sub", `${session} -t off/# -q 2 -C 2 ${F}`);
      assert.equal(back.code, 0, back.stderr);
      // QoS 0 is not queued for an offline client (queue_qos0_messages = false).
      assert.deepEqual(messages(back.stdout), ["off/1|one|1|0", "off/2|two|2|0"]);

      // -U removes the subscription from the stored session [MQTT-3.10.4-1].
      const unsub = await run(tb, "mosquitto_sub", `${session} -U off/# -t other -E`);
      assert.equal(unsub.code, 0, unsub.stderr);
      assert.deepEqual([...tb.broker.sessions.get(id)!.subscriptions.keys()], ["other"]);
    } finally {
      await tb.stop();
    }
  });
}

test("mosquitto_pub -l: 300 lines at QoS 1 arrive complete and in order; a 300 KB payload arrives intact", async () => {
  const tb = await startBroker();
  try {
    const n = 300;
    const s = sub(tb, `-i many -t many/# -q 1 -C ${n + 1} -F M|%t|%l|%p`);
    await subscribed(tb, "many", "many/#");
    const lines = Array.from({ length: n }, (_, i) => `line-${i}`);
    await pub(tb, "-t many/lines -q 1 -l", lines.join("\n") + "\n");
    const big = "x".repeat(300 * 1024 - 3) + "end";
    await pub(tb, "-t many/big -q 1 -s", big);
    const e = await s.done;
    assert.equal(e.code, 0, e.stderr);
    const got = messages(e.stdout);
    assert.deepEqual(got.slice(0, n), lines.map((l) => `many/lines|${l.length}|${l}`));
    assert.equal(got[n], `many/big|${big.length}|${big}`);
  } finally {
    await tb.stop();
  }
});

test("max_keepalive: MQTT 3.1.1 mosquitto_pub -k over it is refused, MQTT 5 is told Server Keep Alive", async () => {
  const tb = await startBroker({ max_keepalive: 60 });
  try {
    const refused = await run(tb, "mosquitto_pub", "-V mqttv311 -k 120 -t k -m x");
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /Connection Refused/i);

    const s = sub(tb, `-V mqttv5 -i k5 -k 120 -t k -C 1 ${F}`);
    await subscribed(tb, "k5", "k");
    assert.equal((tb.broker.sessions.get("k5")!.connection as Connection).keepalive, 60);
    await pub(tb, "-V mqttv5 -k 120 -t k -m ok");
    const e = await s.done;
    assert.equal(e.code, 0, e.stderr);
    assert.deepEqual(messages(e.stdout), ["k|ok|0|0"]);
  } finally {
    await tb.stop();
  }
});
