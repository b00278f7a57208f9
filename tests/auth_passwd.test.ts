// `midge passwd` run as a program: mosquitto_passwd's options, no echo on a terminal, -c refusing to
// erase other users, and Debian's Mosquitto 2.0 accepting the files it writes.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import mqtt from "mqtt";
import { parsePasswordFile, verifyPassword } from "../src/auth/password.ts";
import { connect, endAll, freePort, startBroker } from "./helpers/broker.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const runtime = process.env.MIDGE_TEST_RUNTIME ?? ("Bun" in globalThis ? "bun" : "deno");
const bin = join(root, "node_modules", ".bin", runtime);
const prefix = runtime === "deno" ? ["run", "-A", "src/main.ts"] : ["src/main.ts"];

const dir = mkdtempSync(join(tmpdir(), "midge-passwd-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const path = (name = `pw${++n}`) => join(dir, name);

/** Runs `midge passwd ARGS` with `input` on a pipe as stdin. */
function passwd(args: string[], input = ""): { status: number | null; out: string; err: string } {
  const r = spawnSync(bin, [...prefix, "passwd", ...args], {
    cwd: root,
    input,
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1" },
  });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

/** Users of a password file with their hashes, parsed by the broker's reader. */
function users(file: string) {
  const { users, problems } = parsePasswordFile(readFileSync(file, "utf8"));
  assert.deepEqual(problems, []);
  return users;
}

const enc = (s: string) => new TextEncoder().encode(s);

test("-c -b creates the file (owner-only) with a $7$ hash: 1000 iterations, 12-byte salt", async () => {
  const f = path();
  const r = passwd(["-c", "-b", f, "alice", "wonder land"]);
  assert.equal(r.status, 0, r.err);
  assert.equal(r.out + r.err, "", "nothing printed, the password least of all");
  assert.equal(statSync(f).mode & 0o777, 0o600);
  const text = readFileSync(f, "utf8");
  assert.match(text, /^alice:\$7\$1000\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==\n$/);
  const h = users(f).get("alice")!;
  assert.equal(await verifyPassword(h, enc("wonder land")), true);
  assert.equal(await verifyPassword(h, enc("wonderland")), false);
});

test("add, update and delete users; comments and other lines are kept", async () => {
  const f = path();
  assert.equal(passwd(["-c", "-b", f, "a", "pa"]).status, 0);
  writeFileSync(f, "# team\n" + readFileSync(f, "utf8"));
  assert.equal(passwd(["-b", f, "b", "pb"]).status, 0);
  assert.equal(passwd(["-b", "-H", "sha512", f, "c", "pc"]).status, 0);
  assert.equal(passwd(["-b", "-I", "101", f, "a", "pa2"]).status, 0);
  const text = readFileSync(f, "utf8");
  assert.match(text, /^# team\na:\$7\$101\$.*\nb:\$7\$1000\$.*\nc:\$6\$.*\n$/);
  const u = users(f);
  assert.equal(await verifyPassword(u.get("a")!, enc("pa2")), true);
  assert.equal(await verifyPassword(u.get("c")!, enc("pc")), true);

  assert.equal(passwd(["-D", f, "b"]).status, 0);
  assert.deepEqual([...users(f).keys()], ["a", "c"]);
  const missing = passwd(["-D", f, "b"]);
  assert.equal(missing.status, 1);
  assert.match(missing.err, /User b not found/);
});

test("mistakes are refused: conflicting flags, missing file, bad user names, empty password", () => {
  const f = path();
  const cases: [string[], RegExp][] = [
    [["-c", "-D", f, "u"], /-c and -D cannot be used together/],
    [["-b", "-D", f, "u", "p"], /-b and -D cannot be used together/],
    [["-b", f, "u", "p"], /Unable to open password file .* \(use -c to create it\)/],
    [["-c", "-b", f, "a:b", "p"], /must not contain the ':' character/],
    [["-c", "-b", f, "a\tb", "p"], /control characters/],
    [["-c", "-b", f, "u", ""], /Empty password/],
    [["-H", "md5", "-c", "-b", f, "u", "p"], /Unknown hash type 'md5'/],
    [["-I", "0", "-c", "-b", f, "u", "p"], /iterations must be/],
    [["-c", "-b", f, "u"], /wrong number of arguments/],
    [["-x", f, "u"], /Unknown option '-x'/],
  ];
  for (const [args, re] of cases) {
    const r = passwd(args);
    assert.equal(r.status, 1, args.join(" "));
    assert.match(r.err, re, args.join(" "));
  }
  assert.throws(() => statSync(f), "no file was created by a refused command");
  const help = passwd(["--help"]);
  assert.equal(help.status, 0);
  assert.match(help.out, /-c {13}Create FILE with USER as its only user/);
});

test("-c does not erase other users when stdin is not a terminal; it may replace a file of that user alone", () => {
  const f = path();
  assert.equal(passwd(["-c", "-b", f, "a", "pa"]).status, 0);
  assert.equal(passwd(["-b", f, "b", "pb"]).status, 0);
  const before = readFileSync(f, "utf8");
  const r = passwd(["-c", "-b", f, "a", "new"]);
  assert.equal(r.status, 1);
  assert.match(r.err, /already holds 1 other user; -c would erase them/);
  assert.equal(readFileSync(f, "utf8"), before, "file unchanged");

  const g = path();
  assert.equal(passwd(["-c", "-b", g, "solo", "one"]).status, 0);
  const first = readFileSync(g, "utf8");
  assert.equal(passwd(["-c", "-b", g, "solo", "two"]).status, 0, "re-running a setup script works");
  assert.notEqual(readFileSync(g, "utf8"), first);
  assert.deepEqual([...users(g).keys()], ["solo"]);
});

test("without -b the password is read twice from a pipe; a mismatch exits 2 and changes nothing", async () => {
  const f = path();
  assert.equal(passwd(["-c", f, "p"], "pipe pw\npipe pw\n").status, 0);
  assert.equal(await verifyPassword(users(f).get("p")!, enc("pipe pw")), true);
  const before = readFileSync(f, "utf8");
  const r = passwd([f, "p"], "one\ntwo\n");
  assert.equal(r.status, 2);
  assert.match(r.err, /Passwords do not match/);
  assert.equal(readFileSync(f, "utf8"), before);
  assert.equal(passwd([f, "p"], "").status, 1, "no input: empty password");
});

test("on a terminal the password is asked twice and never echoed", async () => {
  const f = path();
  // util-linux `script` gives the program a pseudo-terminal; its output is what a user would see.
  const cmd = [bin, ...prefix, "passwd", "-c", f, "tty-user"].join(" ");
  const child = spawn("script", ["-qec", cmd, "/dev/null"], {
    cwd: root,
    env: { ...process.env, NO_COLOR: "1" },
  });
  let screen = "";
  const waitFor = (text: string, from: number) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no "${text}" in ${JSON.stringify(screen)}`)),
        15000,
      );
      const check = () => {
        if (screen.indexOf(text, from) >= 0) {
          clearTimeout(timer);
          child.stdout.off("data", check);
          resolve();
        }
      };
      child.stdout.on("data", check);
      check();
    });
  child.stdout.on("data", (d) => (screen += d.toString()));
  const exited = new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
  await waitFor("Password: ", 0);
  child.stdin.write("t0p-s3cret\r");
  await waitFor("Reenter password: ", 0);
  child.stdin.write("t0p-s3cret\r");
  assert.equal(await exited, 0, screen);
  assert.ok(!screen.includes("t0p-s3cret"), `password echoed: ${JSON.stringify(screen)}`);
  assert.equal(await verifyPassword(users(f).get("tty-user")!, enc("t0p-s3cret")), true);
});

test("-U hashes the plain-text lines of a file in place and keeps hashed ones", async () => {
  const f = path();
  assert.equal(passwd(["-c", "-b", f, "hashed", "h"]).status, 0);
  const hashedLine = readFileSync(f, "utf8");
  writeFileSync(f, `# plain\nx:xpw\n${hashedLine}y : y pw \n`);
  const r = passwd(["-U", f]);
  assert.equal(r.status, 0, r.err);
  const text = readFileSync(f, "utf8");
  assert.ok(text.startsWith("# plain\nx:$7$1000$"));
  assert.ok(text.includes(hashedLine));
  const u = users(f);
  assert.equal(await verifyPassword(u.get("x")!, enc("xpw")), true);
  assert.equal(await verifyPassword(u.get("y")!, enc("y pw")), true);
  writeFileSync(f, "garbage\n");
  assert.match(passwd(["-U", f]).err, /Corrupt password file at line 1/);
});

/** A port that was free a moment ago (Mosquitto needs a number; port 0 is not possible there). */
test("Debian's Mosquitto 2.0 accepts a file written by midge passwd ($7$ 1000 and 101, $6$)", async () => {
  const f = path();
  assert.equal(passwd(["-c", "-b", f, "m1", "pw one"]).status, 0);
  assert.equal(passwd(["-b", "-I", "101", f, "m2", "pw two"]).status, 0);
  assert.equal(passwd(["-b", "-H", "sha512", f, "m3", "pw three"]).status, 0);
  const port = await freePort();
  const conf = path("mosquitto.conf");
  // `user`: Mosquitto started as root would switch to "mosquitto" and could not read the file.
  // (`id -un`: Bun's os.userInfo() does not know the user name here.)
  const me = spawnSync("id", ["-un"], { encoding: "utf8" }).stdout.trim() || userInfo().username;
  writeFileSync(
    conf,
    `user ${me}\nlistener ${port} 127.0.0.1\npassword_file ${f}\nallow_anonymous false\n`,
  );
  const mosq: ChildProcess = spawn("/usr/sbin/mosquitto", ["-c", conf]);
  let log = "";
  mosq.stdout!.on("data", (d) => (log += d));
  mosq.stderr!.on("data", (d) => (log += d));
  try {
    const deadline = Date.now() + 10000;
    while (!log.includes("running") && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(log.includes("running"), log);
    const url = `mqtt://127.0.0.1:${port}`;
    for (const [u, p] of [["m1", "pw one"], ["m2", "pw two"], ["m3", "pw three"]]) {
      const c = await mqtt.connectAsync(url, { username: u, password: p, reconnectPeriod: 0 });
      await c.endAsync();
    }
    await assert.rejects(
      mqtt.connectAsync(url, { username: "m1", password: "pw two", reconnectPeriod: 0 }),
      (e: { code?: number }) => e.code === 5,
    );
    assert.ok(!/Error|Warning: Invalid/.test(log), log);
  } finally {
    if (mosq.exitCode === null && mosq.signalCode === null) {
      const exited = new Promise((r) => mosq.once("exit", r));
      mosq.kill();
      await exited;
    }
  }

  // And Midge itself reads the same file.
  const tb = await startBroker({ password_file: f, allow_anonymous: false });
  try {
    await endAll(await connect(tb, { username: "m2", password: "pw two" }));
  } finally {
    await tb.stop();
  }
});
