/**
 * `midge pub`, `midge sub` and `midge rr` as processes (src/main.ts under the runtime running the
 * tests), against a broker in this process: Mosquitto's flags, output formats and exit codes,
 * failover between two brokers, request/response. MQTT.js is the independent client on the
 * other side. Retained messages are used where a test needs a subscriber to be ready.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { collect, connect, endAll, startBroker, type TestBroker } from "./helpers/broker.ts";
import { fakeBroker } from "./helpers/fake_broker.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const runtime = process.env.MIDGE_TEST_RUNTIME ?? ("Bun" in globalThis ? "bun" : "deno");
const bin = join(root, "node_modules", ".bin", runtime);
const prefix = runtime === "deno" ? ["run", "-A", "src/main.ts"] : ["src/main.ts"];
const dir = mkdtempSync(join(tmpdir(), "midge-cli-pubsub-"));
const brokers: TestBroker[] = [];
after(async () => {
  await Promise.all(brokers.map((b) => b.stop()));
  rmSync(dir, { recursive: true, force: true });
});
async function broker(): Promise<TestBroker> {
  const b = await startBroker();
  brokers.push(b);
  return b;
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Starts `midge <args>`; `out` grows with stdout; `done` resolves when it exits. */
function midge(args: string[], input?: string, keepStdin = false) {
  const child = spawn(bin, [...prefix, ...args], {
    cwd: root,
    env: { ...process.env, NO_COLOR: "1" },
  });
  const r = { out: "", err: "" };
  child.stdout.on("data", (d) => r.out += d);
  child.stderr.on("data", (d) => r.err += d);
  if (input !== undefined) child.stdin.end(input);
  else if (!keepStdin) child.stdin.end();
  const timer = setTimeout(() => child.kill("SIGKILL"), 20000);
  const done = new Promise<Run>((resolve) =>
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout: r.out, stderr: r.err });
    })
  );
  return {
    child,
    done,
    get out() {
      return r.out;
    },
    /** Resolves once stdout contains `text`. */
    async waitOut(text: string, ms = 10000): Promise<void> {
      const until = Date.now() + ms;
      while (!r.out.includes(text)) {
        if (Date.now() > until) throw new Error(`no "${text}" in output: ${r.out} ${r.err}`);
        await new Promise((res) => setTimeout(res, 20));
      }
    },
  };
}
const run = (args: string[], input?: string) => midge(args, input).done;

test("pub: -m at QoS 0/1/2 with -r, -f, -n, -s, -l and --repeat reach an MQTT.js subscriber", async () => {
  const tb = await broker();
  const js = await connect(tb);
  const got = collect(js);
  await js.subscribeAsync("p/#", { qos: 2 });
  const p = ["pub", "-p", String(tb.port)];
  const file = join(dir, "payload.bin");
  writeFileSync(file, new Uint8Array([0, 1, 2, 255]));
  const results = await Promise.all([
    run([...p, "-t", "p/q0", "-m", "zero"]),
    run([...p, "-t", "p/q1", "-m", "one", "-q", "1"]),
    run([...p, "-t", "p/q2", "-m", "two", "-q", "2", "-r"]),
    run([...p, "-t", "p/file", "-f", file, "-q", "1"]),
    run([...p, "-t", "p/null", "-n"]),
    run([...p, "-t", "p/stdin", "-s"], "all\nof it\n"),
    run([...p, "-t", "p/lines", "-l", "-q", "1"], "l1\nl2\n\nl4"),
    run([...p, "-t", "p/rep", "-m", "again", "--repeat", "3", "--repeat-delay", "0.01"]),
  ]);
  for (const r of results) assert.equal(r.status, 0, r.stderr);
  const msgs = await got.next(13);
  const by = (t: string) => msgs.filter((m) => m.topic === t);
  assert.equal(by("p/q0")[0].payload, "zero");
  assert.equal(by("p/q1")[0].packet.qos, 1);
  assert.equal(by("p/q2")[0].packet.qos, 2);
  assert.equal(by("p/q2")[0].payload, "two");
  assert.deepEqual([...by("p/file")[0].packet.payload], [0, 1, 2, 255]);
  assert.equal(by("p/null")[0].payload, "");
  assert.equal(by("p/stdin")[0].payload, "all\nof it\n");
  assert.deepEqual(by("p/lines").map((m) => m.payload), ["l1", "l2", "", "l4"]);
  assert.equal(by("p/rep").length, 3);
  // -r: the QoS 2 message was retained.
  const late = await connect(tb);
  const lateGot = collect(late);
  await late.subscribeAsync("p/q2");
  assert.equal((await lateGot.next(1))[0].packet.retain, true);
  await endAll(js, late);
});

test("pub -V 5 -D: publish properties; -L mqtt://host:port/topic; -d traces packets", async () => {
  const tb = await broker();
  const js = await connect(tb, { protocolVersion: 5 });
  const got = collect(js);
  await js.subscribeAsync("d/#");
  const r = await run([
    "pub",
    "-L",
    `mqtt://127.0.0.1:${tb.port}/d/props`,
    "-V",
    "5",
    "-m",
    "{}",
    "-d",
    "-D",
    "publish",
    "user-property",
    "k",
    "v",
    "-D",
    "publish",
    "content-type",
    "application/json",
    "-D",
    "publish",
    "message-expiry-interval",
    "60",
  ]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /sending CONNECT/);
  assert.match(r.stdout, /received CONNACK \(0\)/);
  assert.match(r.stdout, /sending PUBLISH \(d0, q0, r0, m0, 'd\/props', \.\.\. \(2 bytes\)\)/);
  const [m] = await got.next(1);
  assert.equal(m.topic, "d/props");
  assert.deepEqual({ ...m.packet.properties.userProperties }, { k: "v" });
  assert.equal(m.packet.properties.contentType, "application/json");
  assert.ok(m.packet.properties.messageExpiryInterval <= 60);
  await endAll(js);
});

test("pub/sub usage errors exit 1 with Mosquitto's messages", async () => {
  const cases: [string[], RegExp][] = [
    [["pub", "--bogus"], /Error: Unknown option '--bogus'/],
    [["pub", "-t", "a"], /Both topic and message must be supplied/],
    [["pub", "-t", "a", "-m", "x", "-n"], /Only one type of message/],
    [["pub", "-t", "a/#", "-m", "x"], /Invalid publish topic 'a\/#'/],
    [["pub", "-t", "a", "-m", "x", "-q", "3"], /Invalid QoS given: 3/],
    [["pub", "-t", "a", "-m", "x", "-c"], /must provide a client id/],
    [
      ["pub", "-t", "a", "-m", "x", "-D", "publish", "content-type", "x"],
      /only valid with MQTT v5/,
    ],
    [["sub"], /You must specify a topic/],
    [["sub", "-t", "a/#/b"], /Invalid subscription topic/],
    [["sub", "-t", "a", "-V", "7"], /Invalid protocol version/],
  ];
  const results = await Promise.all(cases.map(([args]) => run(args)));
  results.forEach((r, i) => {
    assert.equal(r.status, 1, `${cases[i][0].join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, cases[i][1]);
  });
  const help = await run(["pub", "--help"]);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /^Usage: midge pub/);
});

test("connection failures: refused port exits 1; a refused CONNACK exits with its code (5, 135)", async () => {
  const f4 = await fakeBroker(4);
  const f5 = await fakeBroker(5);
  const dead = f4.port;
  const runs = [
    run(["pub", "-p", String(f4.port), "-t", "a", "-m", "x"]),
    run(["sub", "-p", String(f5.port), "-t", "a", "-V", "5"]),
  ];
  const c4 = await f4.accept();
  await c4.next("connect");
  c4.send({ cmd: "connack", returnCode: 5, sessionPresent: false });
  const c5 = await f5.accept();
  await c5.next("connect");
  c5.send({ cmd: "connack", reasonCode: 0x87, sessionPresent: false, properties: {} });
  const [r4, r5] = await Promise.all(runs);
  assert.equal(r4.status, 5, r4.stderr);
  assert.match(r4.stderr, /Connection error: Connection Refused: not authorised/);
  assert.equal(r5.status, 135, r5.stderr);
  assert.match(r5.stderr, /Not authorized/);
  await f4.stop();
  await f5.stop();
  const refused = await run(["pub", "-p", String(dead), "-t", "a", "-m", "x"]);
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /Error: Connection refused/);
});

test("sub: -v -C, -F format fields, -T filter, -R, -W exit 27, -N", async () => {
  const tb = await broker();
  const js = await connect(tb, { protocolVersion: 5 });
  await js.publishAsync("s/a", "alpha", { retain: true, qos: 1 });
  await js.publishAsync("s/b", "beta", { retain: true, qos: 1 });
  await js.publishAsync("s/c", "AB", {
    retain: true,
    qos: 1,
    properties: { contentType: "text/x", userProperties: { u: "1" }, responseTopic: "rt" },
  });
  const p = ["-p", String(tb.port)];
  const [v, fmt, filtered, noRetained, noEol] = await Promise.all([
    run(["sub", ...p, "-t", "s/a", "-t", "s/b", "-v", "-C", "2"]),
    run([
      "sub",
      ...p,
      "-V",
      "5",
      "-t",
      "s/c",
      "-C",
      "1",
      "-F",
      "%t|%p|%q|%r|%l|%x|%X|%C|%P|%R|%5t|%-4l|%%|\\t|@@",
    ]),
    run(["sub", ...p, "-t", "s/#", "-T", "s/a", "-T", "s/c", "-C", "1", "-v"]),
    run(["sub", ...p, "-t", "s/a", "-R", "-W", "1"]),
    run(["sub", ...p, "-t", "s/a", "-N", "-C", "1"]),
  ]);
  assert.equal(v.status, 0, v.stderr);
  assert.deepEqual(v.stdout.split("\n").sort(), ["", "s/a alpha", "s/b beta"]);
  assert.equal(fmt.status, 0, fmt.stderr);
  assert.equal(fmt.stdout, "s/c|AB|0|1|2|4142|4142|text/x|u:1|rt|  s/c|2   |%|\t|@\n");
  assert.equal(filtered.stdout, "s/b beta\n");
  assert.equal(noRetained.status, 27);
  assert.equal(noRetained.stdout, "");
  assert.match(noRetained.stderr, /Timed out/);
  assert.equal(noEol.stdout, "alpha");
  await endAll(js);
});

test("sub -F %j prints JSON; --retained-only exits 0 at the first live message; -E exits after SUBACK", async () => {
  const tb = await broker();
  const js = await connect(tb);
  await js.publishAsync("j/t", "hello", { retain: true, qos: 1 });
  const p = ["-p", String(tb.port)];
  const json = await run(["sub", ...p, "-t", "j/t", "-C", "1", "-F", "%j"]);
  assert.equal(json.status, 0, json.stderr);
  const o = JSON.parse(json.stdout);
  assert.equal(o.topic, "j/t");
  assert.equal(o.payload, "hello");
  assert.equal(o.retain, 1);
  assert.match(o.tst, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z[+-]\d{4}$/);
  const ro = midge(["sub", ...p, "-t", "j/#", "--retained-only", "-v"]);
  await ro.waitOut("j/t hello\n");
  await js.publishAsync("j/live", "now");
  const r = await ro.done;
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, "j/t hello\n");
  const e = await run(["sub", ...p, "-t", "x", "-E"]);
  assert.equal(e.status, 0, e.stderr);
  await endAll(js);
});

test("failover: sub -h A -h B moves to B when A goes away and subscribes again; pub skips a dead host", async () => {
  const a = await startBroker();
  const b = await broker();
  const jsA = await connect(a);
  await jsA.publishAsync("f/t", "on A", { retain: true, qos: 1 });
  await endAll(jsA);
  const sub = midge([
    "sub",
    "-h",
    `127.0.0.1:${a.port}`,
    "-h",
    `127.0.0.1:${b.port}`,
    "-t",
    "f/t",
    "-q",
    "1",
    "-C",
    "2",
  ]);
  await sub.waitOut("on A\n");
  await a.stop();
  // pub with a dead first host publishes (retained) on B; the subscriber gets it once it is there.
  const pub = await run([
    "pub",
    "-h",
    `127.0.0.1:${a.port}`,
    "-h",
    `127.0.0.1:${b.port}`,
    "-t",
    "f/t",
    "-m",
    "on B",
    "-r",
    "-q",
    "1",
  ]);
  assert.equal(pub.status, 0, pub.stderr);
  const r = await sub.done;
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, "on A\non B\n");
});

test("rr: request with response topic and correlation data; prints the reply; -W exits 27", async () => {
  const tb = await broker();
  const responder = await connect(tb, { protocolVersion: 5 });
  responder.on("message", (_t, payload, packet) => {
    const props = packet.properties ?? {};
    if (!props.responseTopic) return;
    responder.publish(props.responseTopic, `pong:${payload}`, {
      properties: { correlationData: props.correlationData },
    });
  });
  await responder.subscribeAsync("svc/req");
  const p = ["-p", String(tb.port)];
  const r = await run(["rr", ...p, "-t", "svc/req", "-e", "svc/resp", "-m", "ping", "-v"]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, "svc/resp pong:ping\n");
  const w = await run(["rr", ...p, "-t", "nobody/home", "-e", "x/resp", "-m", "hi", "-W", "1"]);
  assert.equal(w.status, 27);
  assert.match(w.stderr, /Timed out/);
  await endAll(responder);
});

test("pub --quiet prints no error; sub reports denied subscriptions as Mosquitto does", async () => {
  const f = await fakeBroker(4);
  const quiet = run(["pub", "-p", String(f.port), "-t", "a", "-m", "x", "--quiet"]);
  const c = await f.accept();
  await c.next("connect");
  c.send({ cmd: "connack", returnCode: 4, sessionPresent: false });
  const q = await quiet;
  assert.equal(q.status, 4);
  assert.equal(q.stderr, "");
  const sub = run(["sub", "-p", String(f.port), "-t", "a"]);
  const c2 = await f.accept();
  await c2.next("connect");
  c2.send({ cmd: "connack", returnCode: 0, sessionPresent: false });
  const s = await c2.next("subscribe");
  c2.send({ cmd: "suback", messageId: s.messageId, granted: [0x80] });
  const r = await sub;
  assert.equal(r.status, 1);
  assert.match(r.stderr, /All subscription requests were denied/);
  await f.stop();
});

test("sub --remove-retained clears what it receives; pub --will-topic leaves a will when killed", async () => {
  const tb = await broker();
  const js = await connect(tb);
  await js.publishAsync("rr/1", "one", { retain: true, qos: 1 });
  await js.publishAsync("rr/2", "two", { retain: true, qos: 1 });
  const p = ["-p", String(tb.port)];
  const cleared = await run(["sub", ...p, "-t", "rr/#", "--remove-retained", "-C", "2", "-q", "1"]);
  assert.equal(cleared.status, 0, cleared.stderr);
  assert.deepEqual(cleared.stdout.split("\n").sort(), ["", "one", "two"]);
  const after = await run(["sub", ...p, "-t", "rr/#", "-W", "1"]);
  assert.equal(after.status, 27);
  assert.equal(after.stdout, "");

  const got = collect(js);
  await js.subscribeAsync("will/cli", { qos: 1 });
  // --repeat with a long delay keeps the publisher connected (not stdin: a child's stdin pipe
  // can reach EOF early under Deno); SIGKILL then drops it without DISCONNECT.
  const pub = midge(
    [
      "pub",
      ...p,
      "-t",
      "alive",
      "-m",
      "x",
      "--repeat",
      "100",
      "--repeat-delay",
      "60",
      "-d",
      "--will-topic",
      "will/cli",
      "--will-payload",
      "publisher died",
      "--will-qos",
      "1",
    ],
    undefined,
    true,
  );
  await pub.waitOut("received CONNACK");
  pub.child.kill("SIGKILL");
  const [w] = await got.next(1, 5000);
  assert.equal(w.payload, "publisher died");
  assert.equal(w.packet.qos, 1);
  await endAll(js);
});
