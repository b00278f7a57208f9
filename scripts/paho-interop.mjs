// The Eclipse Paho interoperability suites against `midge serve`: interoperability/client_test.py
// (MQTT 3.1.1) and client_test5.py (MQTT 5.0) from github.com/eclipse/paho.mqtt.testing. Not part
// of `npm test`: the suites take minutes (keep-alive and will-delay tests sleep) and the
// repository is not vendored here.
//
// Usage: node scripts/paho-interop.mjs [PAHO_DIR] [--runtime bun|deno] [--suite 3|5]
//                                      [-- Test.test_name ...]
//   PAHO_DIR   a paho.mqtt.testing checkout, or its interoperability/ folder
//              (default: the environment variable PAHO_TESTING_DIR)
//   --runtime  which runtime runs the broker (default bun)
//   --suite    run only client_test.py (3) or client_test5.py (5)
//   after --   unittest test names, to run only those (e.g. Test.test_flow_control2)
// Environment: PYTHON (default python3; the suites are pure Python with their own client).
//
// The broker gets a temporary configuration: max_keepalive = 60 (test_server_keep_alive expects
// Server Keep Alive 60 for a client asking 120), persistence off, and an ACL denying
// "test/nosubscribe" (test_subscribe_failure expects SUBACK 0x80 for it). Prints one line per
// suite and a closing `paho: N passed, N failed` line; exits non-zero when any test failed.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

function usage(msg) {
  console.error(`paho-interop: ${msg}`);
  console.error(
    "usage: node scripts/paho-interop.mjs [PAHO_DIR] [--runtime bun|deno] [--suite 3|5] [-- Test.test_x ...]",
  );
  process.exit(2);
}

const argv = process.argv.slice(2);
const dash = argv.indexOf("--");
const only = dash >= 0 ? argv.slice(dash + 1) : [];
const opts = dash >= 0 ? argv.slice(0, dash) : argv;
let dir = process.env.PAHO_TESTING_DIR ?? "";
let runtime = "bun";
let suites = ["3", "5"];
for (let i = 0; i < opts.length; i++) {
  const a = opts[i];
  if (a === "--runtime") runtime = opts[++i];
  else if (a === "--suite") suites = [opts[++i]];
  else if (a === "-h" || a === "--help") usage("help");
  else if (a.startsWith("-")) usage(`unknown option ${a}`);
  else dir = a;
}
if (!dir) usage("give the path of a paho.mqtt.testing checkout (argument or PAHO_TESTING_DIR)");
if (!["bun", "deno"].includes(runtime)) usage(`unknown runtime ${runtime}`);
if (!suites.every((s) => s === "3" || s === "5")) usage("--suite takes 3 or 5");
const interop = [join(dir, "interoperability"), dir].map((d) => resolve(d)).find((d) =>
  existsSync(join(d, "client_test.py")) && existsSync(join(d, "client_test5.py"))
);
if (!interop) usage(`no interoperability/client_test.py and client_test5.py under ${dir}`);

// The configuration: only keys this version of Midge knows (an unknown key stops the broker).
const tmp = mkdtempSync(join(tmpdir(), "midge-paho-"));
const known = readFileSync(join(root, "config.toml"), "utf8");
const has = (key) => new RegExp(`^${key}\\s*=`, "m").test(known);
const lines = ["max_keepalive = 60"];
if (has("persistence")) lines.push("persistence = false");
let acl = false;
if (has("acl_file")) {
  const aclPath = join(tmp, "acl");
  // Everything is allowed except subscribing to (and reading) test/nosubscribe.
  writeFileSync(aclPath, "topic readwrite #\ntopic deny test/nosubscribe\n");
  lines.push(`acl_file = ${JSON.stringify(aclPath)}`);
  acl = true;
}
const cfg = join(tmp, "midge.toml");
writeFileSync(cfg, lines.join("\n") + "\n");

const bin = join(root, "node_modules", ".bin", runtime);
const serveArgs = runtime === "bun"
  ? ["src/main.ts", "serve", "-c", cfg, "-p", "0"]
  : ["run", "-A", "src/main.ts", "serve", "-c", cfg, "-p", "0"];
const broker = spawn(bin, serveArgs, { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
let brokerLog = "";
broker.stderr.on("data", (d) => (brokerLog += d));
const port = await new Promise((res, rej) => {
  let out = "";
  const timer = setTimeout(() => rej(new Error(`broker did not start: ${out}${brokerLog}`)), 30000);
  broker.stdout.on("data", (d) => {
    out += d;
    const m = /listening mqtt on [^\s]*:(\d+)/.exec(out);
    if (m) {
      clearTimeout(timer);
      res(Number(m[1]));
    }
  });
  broker.once("exit", (code) => {
    clearTimeout(timer);
    rej(new Error(`broker exited with ${code}: ${out}${brokerLog}`));
  });
}).catch((e) => {
  console.error(`paho-interop: ${e.message}`);
  rmSync(tmp, { recursive: true, force: true });
  process.exit(1);
});
console.log(
  `midge on ${runtime}, port ${port}; config: ${lines.join(", ")}${
    acl ? "" : " (no acl_file in this version: test_subscribe_failure cannot pass)"
  }`,
);

// client_test.py hands its own -p option on to unittest, which refuses it, so both suites run
// through this launcher: unittest.main gets only the test names.
const launcher = `
import os, runpy, sys, unittest
script, port, names = sys.argv[1], sys.argv[2], sys.argv[3:]
main = unittest.main
def only_names(*a, **k):
    k.setdefault("argv", [script] + names)
    return main(*a, **k)
unittest.main = only_names
sys.path.insert(0, os.getcwd())
sys.argv = [script, "-p", port]
runpy.run_path(script, run_name="__main__")
`;

const python = process.env.PYTHON ?? "python3";
let passed = 0;
let failed = 0;
for (const s of suites) {
  const script = s === "3" ? "client_test.py" : "client_test5.py";
  const started = Date.now();
  const r = await new Promise((res) => {
    const p = spawn(python, ["-c", launcher, script, String(port), ...only], {
      cwd: interop,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let text = "";
    p.stdout.on("data", (d) => (text += d));
    p.stderr.on("data", (d) => (text += d));
    p.on("error", (e) => res({ code: -1, text: `${python}: ${e.message}` }));
    p.on("close", (code) => res({ code, text }));
  });
  const ran = Number((/^Ran (\d+) tests? in/m.exec(r.text) ?? [])[1] ?? 0);
  const bad = [...r.text.matchAll(/^(FAIL|ERROR): (\w+)/gm)].map((m) => `${m[2]} (${m[1]})`);
  const ok = /^OK\b/m.test(r.text) && r.code === 0;
  const nFailed = ok ? 0 : Math.max(bad.length, 1);
  const nPassed = Math.max(0, ran - bad.length);
  passed += nPassed;
  failed += nFailed;
  console.log(
    `${script}: ${nPassed} passed, ${nFailed} failed of ${ran} (${
      ((Date.now() - started) / 1000).toFixed(0)
    } s)${bad.length ? ": " + bad.join(", ") : ""}`,
  );
  if (!ok) {
    const log = join(tmp, `${script}.log`);
    writeFileSync(log, r.text);
    console.log(`  output kept in ${log}`);
    if (!bad.length) console.log(r.text.split("\n").slice(-20).join("\n"));
  }
}

broker.kill("SIGTERM");
await new Promise((res) => {
  const t = setTimeout(() => {
    broker.kill("SIGKILL");
    res();
  }, 5000);
  broker.once("exit", () => {
    clearTimeout(t);
    res();
  });
});
if (failed === 0) rmSync(tmp, { recursive: true, force: true });
console.log(`paho: ${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
