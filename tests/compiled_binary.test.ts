/**
 * The compiled executable on its own: copied into an empty temporary directory (no source tree,
 * no node_modules around it), it prints its version and help, serves MQTT, and messages pass
 * through it with its own `pub`/`sub` and with Mosquitto's clients. scripts/test.mjs builds it
 * once per run (MIDGE_TEST_BINARY); run alone, this file builds it.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { generateKeyPairSync } from "node:crypto";
import { now, pem, signJwt, tamper } from "./helpers/jwt.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const version = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version;
const dir = mkdtempSync(join(tmpdir(), "midge-bin-"));
const exe = join(dir, process.platform === "win32" ? "midge.exe" : "midge");
let server: ChildProcess | undefined;
let port = 0;
let wsPort = 0;

function built(): string {
  const given = process.env.MIDGE_TEST_BINARY;
  if (given && existsSync(given)) return given;
  const out = execFileSync("node", [join(root, "scripts", "compile.mjs"), "host"], {
    encoding: "utf8",
  });
  const line = out.trim().split("\n").pop()!;
  return line.slice(0, line.lastIndexOf(": "));
}

function run(args: string[], timeout = 10000) {
  return spawnSync(exe, args, { cwd: dir, encoding: "utf8", timeout });
}

/** Spawns `cmd` and resolves with its exit status and stdout. */
function runAsync(cmd: string, args: string[]): {
  done: Promise<{ status: number | null; stdout: string; stderr: string }>;
} {
  const child = spawn(cmd, args, { cwd: dir });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => stdout += d);
  child.stderr.on("data", (d) => stderr += d);
  const timer = setTimeout(() => child.kill("SIGKILL"), 15000);
  return {
    done: new Promise((resolve) =>
      child.on("close", (status) => {
        clearTimeout(timer);
        resolve({ status, stdout, stderr });
      })
    ),
  };
}

before(async () => {
  copyFileSync(built(), exe);
  writeFileSync(
    join(dir, "midge.toml"),
    `[[listener]]\nport = 0\n\n[[listener]]\nport = 0\nprotocol = "websockets"\n`,
  );
  server = spawn(exe, ["serve", "-c", "midge.toml"], { cwd: dir });
  port = await new Promise<number>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`no listening line: ${out}`)), 15000);
    server!.stdout!.on("data", (d) => {
      out += d;
      const m = /listening mqtt on 127\.0\.0\.1:(\d+)/.exec(out);
      const w = /listening websockets on 127\.0\.0\.1:(\d+)/.exec(out);
      if (m && w) {
        clearTimeout(timer);
        wsPort = Number(w[1]);
        resolve(Number(m[1]));
      }
    });
    server!.on("exit", (code) => reject(new Error(`serve exited with ${code}: ${out}`)));
  });
});

after(async () => {
  if (server && server.exitCode === null) {
    const gone = new Promise((r) => server!.once("exit", r));
    server.kill("SIGTERM");
    await gone;
  }
  rmSync(dir, { recursive: true, force: true });
});

test("the executable prints its version and help with no source tree around it", () => {
  let r = run(["--version"]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, `midge ${version}\n`);
  r = run(["help"]);
  assert.equal(r.status, 0, r.stderr);
  for (const c of ["serve", "pub", "sub", "rr"]) {
    assert.match(r.stdout, new RegExp(`^  ${c} `, "m"));
  }
  r = run(["pub", "--help"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /--repeat-delay/);
  assert.ok(!existsSync(join(dir, "src")) && !existsSync(join(dir, "node_modules")));
});

test("messages pass through the compiled broker with midge pub / midge sub (QoS 0, 1, 2)", async () => {
  const sub = runAsync(exe, ["sub", "-p", String(port), "-t", "bin/#", "-q", "2", "-v", "-C", "3"]);
  // Publish rounds until the subscriber (which may not be subscribed yet) has three messages.
  const got = await Promise.race([
    sub.done,
    (async () => {
      for (let i = 0; i < 50; i++) {
        for (const q of ["0", "1", "2"]) {
          const r = run(["pub", "-p", String(port), "-t", `bin/q${q}`, "-m", `m${q}`, "-q", q]);
          assert.equal(r.status, 0, r.stderr);
        }
        const res = await Promise.race([sub.done, new Promise((r) => setTimeout(r, 300))]);
        if (res) return res as Awaited<typeof sub.done>;
      }
      throw new Error("the subscriber never received three messages");
    })(),
  ]);
  assert.equal(got.status, 0, got.stderr);
  const lines = got.stdout.trim().split("\n");
  assert.equal(lines.length, 3);
  for (const l of lines) assert.match(l, /^bin\/q([012]) m\1$/);
});

test("mosquitto_sub receives what midge pub sends through the compiled broker", async () => {
  const sub = runAsync("mosquitto_sub", ["-p", String(port), "-t", "mq/t", "-C", "1", "-q", "1"]);
  let got: Awaited<typeof sub.done> | undefined;
  for (let i = 0; i < 50 && !got; i++) {
    const r = run(["pub", "-p", String(port), "-t", "mq/t", "-m", "to mosquitto", "-q", "1"]);
    assert.equal(r.status, 0, r.stderr);
    got = await Promise.race([
      sub.done,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 300)),
    ]);
  }
  assert.ok(got, "mosquitto_sub got nothing");
  assert.equal(got.status, 0, got.stderr);
  assert.equal(got.stdout, "to mosquitto\n");
});

test("midge sub (compiled) receives a retained message from mosquitto_pub; -W times out with 27", () => {
  const p = spawnSync("mosquitto_pub", ["-p", String(port), "-t", "mq/ret", "-m", "kept", "-r"]);
  assert.equal(p.status, 0, String(p.stderr));
  const r = run(["sub", "-p", String(port), "-t", "mq/ret", "-C", "1", "-F", "%t %r %p"]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, "mq/ret 1 kept\n");
  const w = run(["sub", "-p", String(port), "-t", "nothing/here", "-W", "1"]);
  assert.equal(w.status, 27);
  assert.match(w.stderr, /Timed out/);
});

test("the compiled client speaks MQTT over WebSockets (midge pub -L ws://) to mosquitto_sub on TCP", async () => {
  const sub = runAsync("mosquitto_sub", ["-p", String(port), "-t", "ws/t", "-C", "1"]);
  let got: Awaited<typeof sub.done> | undefined;
  for (let i = 0; i < 50 && !got; i++) {
    const r = run(["pub", "-L", `ws://127.0.0.1:${wsPort}/mqtt`, "-t", "ws/t", "-m", "via ws"]);
    assert.equal(r.status, 0, r.stderr);
    got = await Promise.race([
      sub.done,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 300)),
    ]);
  }
  assert.ok(got, "mosquitto_sub got nothing");
  assert.equal(got.stdout, "via ws\n");
});

test("the compiled broker verifies JWTs (jose, Ed25519 from a PEM file): mosquitto_pub -P <token> is let in, a tampered token refused", async () => {
  const ed = generateKeyPairSync("ed25519");
  writeFileSync(join(dir, "jwt.pem"), pem(ed.publicKey));
  writeFileSync(
    join(dir, "jwt.toml"),
    `auth_chain = ["jwt"]\njwt_public_key_file = "jwt.pem"\npersistence = false\n` +
      `[[listener]]\nport = 0\n`,
  );
  const jwtServer = spawn(exe, ["serve", "-c", "jwt.toml"], { cwd: dir });
  try {
    const jwtPort = await new Promise<number>((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => reject(new Error(`no listening line: ${out}`)), 15000);
      jwtServer.stdout!.on("data", (d) => {
        out += d;
        const m = /listening mqtt on 127\.0\.0\.1:(\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
      jwtServer.on("exit", (code) => reject(new Error(`serve exited with ${code}: ${out}`)));
    });
    const token = signJwt({ alg: "EdDSA", key: ed.privateKey }, { sub: "dev1", exp: now(600) });
    const pub = (t: string) =>
      runAsync("mosquitto_pub", [
        "-p",
        String(jwtPort),
        "-V",
        "mqttv5",
        "-i",
        "dev1",
        "-u",
        "dev1",
        "-P",
        t,
        "-t",
        "t",
        "-m",
        "x",
      ]).done;
    const ok = await pub(token);
    assert.equal(ok.status, 0, ok.stderr);
    const bad = await pub(tamper(token));
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr + bad.stdout, /bad user name or password/i);
  } finally {
    const gone = new Promise((r) => jwtServer.once("exit", r));
    jwtServer.kill("SIGTERM");
    await gone;
  }
});
