/**
 * Reload and shutdown: which keys a reload applies and which it reports as needing a restart
 * (in process), SIGHUP on a running `midge serve` (changes a limit, logs what it could not
 * apply), and SIGTERM (MQTT 5 clients get DISCONNECT 0x8B, the process exits 0).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { assembleBroker } from "../src/assemble.ts";
import { Logger } from "../src/sys/log.ts";
import { configureLog, Ops } from "../src/sys/ops.ts";
import { applyReloadable, diffConfig } from "../src/sys/reload.ts";
import { testConfig } from "./helpers/broker.ts";
import { connectPacket, rawConnect } from "./helpers/raw.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const runtime = process.env.MIDGE_TEST_RUNTIME ?? ("Bun" in globalThis ? "bun" : "deno");
const bin = join(root, "node_modules", ".bin", runtime);
const prefix = runtime === "deno" ? ["run", "-A", "src/main.ts"] : ["src/main.ts"];

const dir = mkdtempSync(join(tmpdir(), "midge-signals-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));

test("applyReloadable: limits are copied into the running config, listeners and persistence are not", () => {
  const running = testConfig({ max_inflight_messages: 20, persistence_location: "data" });
  const next = testConfig({ max_inflight_messages: 5, persistence_location: "elsewhere" });
  next.listeners = [{ ...next.listeners[0], port: 1999 }];
  const report = applyReloadable(running, next);
  assert.deepEqual(report.applied.map((c) => c.key), ["max_inflight_messages"]);
  assert.deepEqual(
    report.notApplied.map((c) => c.key).sort(),
    ["listener[0].port", "persistence_location"],
  );
  assert.equal(running.max_inflight_messages, 5);
  assert.equal(running.persistence_location, "data");
  assert.equal(running.listeners[0].port, 0);
  assert.deepEqual(diffConfig(running, running), []);
});

/** A broker (not listening) with its Ops, logging to a file; `lines()` reads the file. */
function withFileLog(name: string, over: Parameters<typeof testConfig>[0] = {}) {
  const file = join(dir, name);
  const config = testConfig({ log_dest: [`file ${file}`], log_timestamp: false, ...over });
  const log = new Logger(config.log_type, { sinks: [] });
  const broker = assembleBroker(config, log).broker;
  configureLog(log, broker, config);
  const ops = new Ops(broker);
  const lines = () => readFileSync(file, "utf8").trimEnd().split("\n");
  return { broker, log, ops, lines, config };
}

test("Ops.reload: log types, $SYS interval and admin token apply; hooks run with the new config", async () => {
  const { broker, log, ops, lines, config } = withFileLog("reload.log", {
    log_type: ["error", "warning", "notice"],
    sys_interval: 0,
  });
  let hookSaw = "";
  broker.reloadHooks.push(() => (hookSaw = broker.config.admin_token));
  try {
    const next = testConfig({
      log_dest: config.log_dest,
      log_timestamp: false,
      log_type: ["all"],
      sys_interval: 1,
      admin_token: "a-new-token-0123456789",
      persistence_file: "other.db",
    });
    const report = await ops.reload(next);
    assert.deepEqual(
      report.applied.map((c) => c.key).sort(),
      ["admin_token", "log_type", "sys_interval"],
    );
    assert.equal(log.on("debug"), true, "log_type all is in force");
    assert.equal(hookSaw, "a-new-token-0123456789", "hooks run after the config is updated");
    const applied = lines().find((l) => l.startsWith("Configuration reloaded"));
    assert.ok(applied, lines().join("\n"));
    assert.match(applied, /sys_interval=1 \(was 0\)/);
    assert.match(applied, /admin_token \(changed\)/);
    assert.ok(!applied.includes("a-new-token"), "the token itself is not logged");
    assert.ok(
      lines().includes('Not applied until restart: persistence_file="other.db" (was "midge.db").'),
      lines().join("\n"),
    );
  } finally {
    await ops.stop();
    log.close();
  }
});

test("Ops.reload: a log file that cannot be opened keeps the previous destinations", async () => {
  const { broker, log, ops, lines, config } = withFileLog("kept.log");
  try {
    const bad = `file ${join(dir, "missing", "x.log")}`;
    const report = await ops.reload(testConfig({ log_timestamp: false, log_dest: [bad] }));
    assert.deepEqual(report.notApplied.map((c) => c.key), ["log_dest"]);
    assert.deepEqual(broker.config.log_dest, config.log_dest);
    assert.ok(lines().some((l) => /cannot open log file .*missing/.test(l)), lines().join("\n"));
    log.notice("still here");
    assert.equal(lines().at(-1), "still here");
  } finally {
    await ops.stop();
    log.close();
  }
});

/** `midge serve -c <file> -p 0` in a child process; resolves once it listens. */
function serve(
  config: string,
): Promise<{ child: ChildProcess; port: number; output: () => string }> {
  const child = spawn(bin, [...prefix, "serve", "-c", config, "-p", "0"], {
    cwd: root,
    env: { ...process.env, NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let text = "";
  child.stdout!.on("data", (b) => (text += b));
  child.stderr!.on("data", (b) => (text += b));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${text}`)), 20000);
    const check = () => {
      const m = /listening mqtt on 127\.0\.0\.1:(\d+)/.exec(text);
      if (m) {
        clearTimeout(timer);
        child.stdout!.off("data", check);
        resolve({ child, port: Number(m[1]), output: () => text });
      }
    };
    child.stdout!.on("data", check);
    child.on("exit", (code) => reject(new Error(`serve exited with ${code}: ${text}`)));
  });
}

/**
 * Send a signal with process.kill: Deno's ChildProcess.kill() does nothing once it has sent one
 * signal (a process that got SIGHUP must still get SIGTERM), and after it the child's exit code
 * reads null even when the child exited by itself.
 */
function signal(child: ChildProcess, sig: NodeJS.Signals): void {
  process.kill(child.pid!, sig);
}

async function waitFor(output: () => string, re: RegExp): Promise<RegExpExecArray> {
  for (let i = 0; i < 1000; i++) {
    const m = re.exec(output());
    if (m) return m;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`no ${re} in:\n${output()}`);
}

/** Receive Maximum in the CONNACK of a fresh v5 connection. */
async function receiveMaximum(port: number, id: string): Promise<number | undefined> {
  const c = await rawConnect(port, 5);
  c.send(connectPacket(id, 5));
  const ack = await c.next("connack");
  c.close();
  return ack.properties?.receiveMaximum;
}

test("SIGHUP: a changed limit applies to new clients, and the log says what needs a restart", async () => {
  const file = join(dir, "hup.toml");
  const base = `persistence = false\nlog_timestamp = false\nsys_interval = 0\n`;
  writeFileSync(file, `${base}max_inflight_messages = 20\n[[listener]]\nport = 0\n`);
  const { child, port, output } = await serve(file);
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  try {
    assert.equal(await receiveMaximum(port, "before"), 20);
    writeFileSync(
      file,
      `${base}max_inflight_messages = 5\npersistence_location = "elsewhere"\n` +
        `[[listener]]\nport = 0\n\n[[listener]]\nport = 0\nbind_address = "::1"\n`,
    );
    signal(child, "SIGHUP");
    await waitFor(output, /Configuration reloaded from .*hup\.toml: applied .*\.\n/);
    assert.match(output(), /applied max_inflight_messages=5 \(was 20\)/);
    const notApplied = await waitFor(output, /Not applied until restart: (.*)\.\n/);
    assert.match(notApplied[1], /persistence_location="elsewhere" \(was "data"\)/);
    assert.match(notApplied[1], /listener\[1\]/, "an added listener needs a restart");
    assert.doesNotMatch(notApplied[1], /listener\[0\]\.port/, "-p 0 still overrides the port");
    assert.equal(await receiveMaximum(port, "after"), 5);

    // A configuration with a mistake is not applied at all.
    writeFileSync(file, `${base}max_inflight_messages = "many"\n`);
    signal(child, "SIGHUP");
    await waitFor(
      output,
      /Reload failed, the running configuration stays: .*max_inflight_messages/,
    );
    assert.equal(await receiveMaximum(port, "still"), 5);
  } finally {
    signal(child, "SIGTERM");
    assert.equal(await exited, 0);
  }
});

test("SIGTERM: MQTT 5 clients get DISCONNECT 0x8B (server shutting down), exit status 0", async () => {
  const dataDir = join(dir, "data");
  const file = join(dir, "term.toml");
  writeFileSync(
    file,
    `persistence = true\npersistence_location = ${JSON.stringify(dataDir)}\n` +
      `sys_interval = 0\n[[listener]]\nport = 0\n`,
  );
  const { child, port, output } = await serve(file);
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  const c = await rawConnect(port, 5);
  try {
    c.send(connectPacket("term-client", 5));
    assert.equal((await c.next("connack")).reasonCode, 0);
    signal(child, "SIGTERM");
    const d = await c.next("disconnect", 10000);
    assert.equal(d.reasonCode, 0x8b);
    await c.closed;
    assert.equal(await exited, 0, output());
    assert.match(output(), /Received SIGTERM, shutting down\./);
  } finally {
    c.close();
    child.kill("SIGKILL");
  }
});
