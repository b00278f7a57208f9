/**
 * Logging like Mosquitto's: line format with Unix-seconds timestamps, log_type filtering,
 * log_dest file and topic ($SYS/broker/log/<X>), and the JSON-lines format.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assembleBroker } from "../src/assemble.ts";
import { Logger, sinksFor } from "../src/sys/log.ts";
import { configureLog } from "../src/sys/ops.ts";
import {
  collect,
  connect,
  endAll,
  sleep,
  type TestBroker,
  testConfig,
  until,
} from "./helpers/broker.ts";
import type { Config } from "../src/config/schema.ts";

const dir = mkdtempSync(join(tmpdir(), "midge-log-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** A broker on port 0 whose logger is set up from `over` as `midge serve` does. */
async function start(over: Partial<Config>): Promise<TestBroker & { log: Logger }> {
  const config = testConfig(over);
  const log = new Logger(config.log_type, { sinks: [] });
  const broker = assembleBroker(config, log).broker;
  configureLog(log, broker, config);
  const [l] = await broker.start();
  return {
    broker,
    log,
    port: l.port,
    url: `mqtt://127.0.0.1:${l.port}`,
    stop: async () => {
      await broker.stop();
      log.close();
    },
  };
}

test("text lines: '<unix seconds>: text' as Mosquitto, or the bare text without timestamps", () => {
  const log = new Logger(["all"], { sinks: [] });
  assert.equal(log.format("notice", "hello", 1700000000999), "1700000000: hello");
  log.configure({ timestamp: false });
  assert.equal(log.format("notice", "hello", 1700000000999), "hello");
});

test("json lines: time (ISO 8601), type and message; no time without timestamps", () => {
  const log = new Logger(["all"], { sinks: [], format: "json" });
  const line = log.format("warning", 'quote " and \n newline', 1700000000123);
  assert.ok(!line.includes("\n"), "one line");
  assert.deepEqual(JSON.parse(line), {
    time: "2023-11-14T22:13:20.123Z",
    type: "warning",
    message: 'quote " and \n newline',
  });
  log.configure({ timestamp: false });
  assert.deepEqual(JSON.parse(log.format("debug", "x")), { type: "debug", message: "x" });
});

test("log_type filters what is written ('none', 'all', a list)", () => {
  const lines: string[] = [];
  const log = new Logger(["error"], { timestamp: false, sink: (l) => lines.push(l) });
  log.notice("not this");
  log.error("this");
  log.setTypes(["none"]);
  log.error("nor this");
  log.setTypes(["all"]);
  log.debug("and this");
  assert.deepEqual(lines, ["this", "and this"]);
  assert.equal(log.on("subscribe"), true);
});

test("log_dest file with log_format json: connection messages appended as JSON lines", async () => {
  const file = join(dir, "broker.log");
  const tb = await start({
    log_dest: [`file ${file}`],
    log_format: "json",
    log_type: ["all"],
  });
  try {
    const c = await connect(tb, { clientId: "logged-client" });
    await c.subscribeAsync("s/t");
    await endAll(c);
    await sleep(50);
  } finally {
    await tb.stop();
  }
  const lines = readFileSync(file, "utf8").trimEnd().split("\n").map((l) => JSON.parse(l));
  const connected = lines.find((l) =>
    /^New client connected from .* as logged-client/.test(l.message)
  );
  assert.ok(connected, JSON.stringify(lines));
  assert.equal(connected.type, "notice");
  assert.match(connected.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.ok(lines.some((l) => l.type === "subscribe" && l.message === "logged-client 0 s/t"));
  assert.ok(lines.some((l) => /logged-client closed its connection/.test(l.message)));
});

test("log_dest file appends (text format) and several destinations all get the line", () => {
  const a = join(dir, "a.log");
  const b = join(dir, "b.log");
  const log = new Logger(["all"], { sinks: sinksFor([`file ${a}`, `file ${b}`], () => {}) });
  log.notice("first");
  log.close();
  const again = new Logger(["all"], { sinks: sinksFor([`file ${a}`], () => {}) });
  again.notice("second");
  again.close();
  assert.match(readFileSync(a, "utf8"), /^\d+: first\n\d+: second\n$/);
  assert.match(readFileSync(b, "utf8"), /^\d+: first\n$/);
});

test("a log file that cannot be opened is an error naming the path", () => {
  const bad = join(dir, "no-such-dir", "x.log");
  assert.throws(() => sinksFor(["stderr", `file ${bad}`], () => {}), (e: Error) => {
    assert.match(e.message, /cannot open log file .*no-such-dir/);
    return true;
  });
});

test("log_dest topic: lines on $SYS/broker/log/<E|W|N|I|D|M/subscribe>, unseen by '#'", async () => {
  const tb = await start({ log_dest: ["topic"], log_type: ["all"], log_timestamp: false });
  const watcher = await connect(tb, { clientId: "watcher" });
  const plain = await connect(tb, { clientId: "plain" });
  try {
    const got = collect(watcher);
    const other = collect(plain);
    await plain.subscribeAsync("#");
    await watcher.subscribeAsync("$SYS/broker/log/#");
    tb.log.error("an error");
    tb.log.warning("a warning");
    tb.log.info("some information");
    tb.log.debug("a detail");
    // With debug on, packet lines (Sending SUBACK, ...) arrive on .../D too: look for these.
    const want: [string, string][] = [
      ["$SYS/broker/log/M/subscribe", "watcher 0 $SYS/broker/log/#"],
      ["$SYS/broker/log/E", "an error"],
      ["$SYS/broker/log/W", "a warning"],
      ["$SYS/broker/log/I", "some information"],
      ["$SYS/broker/log/D", "a detail"],
    ];
    const has = ([t, p]: [string, string]) =>
      got.messages.some((m) => m.topic === t && m.payload === p);
    await until(() => want.every(has), 5000, "the log lines on $SYS/broker/log/#");
    const msgs = got.messages;
    assert.ok(msgs.every((m) => !m.packet.retain), "log lines are not retained");
    await sleep(50);
    assert.equal(other.messages.length, 0, "a '#' subscriber sees no $SYS log topic");
  } finally {
    await endAll(watcher, plain);
    await tb.stop();
  }
});
