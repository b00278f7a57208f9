import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { DatabaseSync } from "node:sqlite";
import { makeCerts } from "./helpers/certs.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const version = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version;
/** Run src/main.ts with the runtime running this test (scripts/test.mjs sets MIDGE_TEST_RUNTIME). */
const runtime = process.env.MIDGE_TEST_RUNTIME ?? ("Bun" in globalThis ? "bun" : "deno");
const bin = join(root, "node_modules", ".bin", runtime);
const prefix = runtime === "deno" ? ["run", "-A", "src/main.ts"] : ["src/main.ts"];

function midge(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(bin, [...prefix, ...args], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1" },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const dir = mkdtempSync(join(tmpdir(), "midge-cli-"));
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}
after(() => rmSync(dir, { recursive: true, force: true }));

test("--version and version print midge <package.json version>", () => {
  for (const args of [["--version"], ["version"]]) {
    const r = midge(...args);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `midge ${version}\n`);
    assert.equal(r.stderr, "");
  }
});

test("help and -h list the commands on stdout; help <command> shows its options", () => {
  for (const args of [["help"], ["-h"], ["--help"]]) {
    const r = midge(...args);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^Usage: midge <command>/);
    for (const c of ["serve", "version", "help"]) {
      assert.match(r.stdout, new RegExp(`^  ${c} `, "m"));
    }
  }
  for (const args of [["help", "serve"], ["serve", "-h"]]) {
    const r = midge(...args);
    assert.equal(r.status, 0, r.stderr);
    for (const o of ["-c, --config", "-p, --port", "-v, --verbose", "--test-config"]) {
      assert.ok(r.stdout.includes(o), `${args.join(" ")}: ${o} missing`);
    }
  }
});

test("serve --test-config accepts the built-in configuration", () => {
  const r = midge("serve", "--test-config");
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, "<default>: configuration OK (listeners: mqtt 127.0.0.1:1883)\n");
});

test("serve -c FILE --test-config accepts a good file; -p replaces the first listener's port", () => {
  const good = file(
    "good.toml",
    `max_qos = 1\n\n[[listener]]\nport = 1999\n\n[[listener]]\nport = 2000\nbind_address = "::1"\n`,
  );
  let r = midge("serve", "-c", good, "--test-config");
  assert.equal(r.status, 0, r.stderr);
  assert.equal(
    r.stdout,
    `${good}: configuration OK (listeners: mqtt 127.0.0.1:1999, mqtt [::1]:2000)\n`,
  );
  r = midge("serve", "--config", good, "-p", "0", "-v", "--test-config");
  assert.equal(r.status, 0, r.stderr);
  assert.equal(
    r.stdout,
    `${good}: configuration OK (listeners: mqtt 127.0.0.1:0, mqtt [::1]:2000)\n`,
  );
});

test("a bad config file prints one line midge: <file>:<line>: key ... and exits 1", () => {
  const bad = file("bad.toml", `# a comment\n[[listener]]\nport = "abc"\n`);
  let r = midge("serve", "-c", bad, "--test-config");
  assert.equal(r.status, 1);
  assert.equal(r.stdout, "");
  assert.equal(
    r.stderr,
    `midge: ${bad}:3: key "listener[0].port": expected an integer 0-65535, got "abc"\n`,
  );

  // Without --test-config the broker does not start either.
  const typo = file("typo.toml", `max_inflite_messages = 5\n`);
  r = midge("serve", "-c", typo);
  assert.equal(r.status, 1);
  assert.equal(
    r.stderr,
    `midge: ${typo}:1: key "max_inflite_messages": unknown key (did you mean "max_inflight_messages"?)\n`,
  );

  const syntax = file("syntax.toml", `max_qos = 1\nlog_type = [\n`);
  r = midge("serve", "-c", syntax, "--test-config");
  assert.equal(r.status, 1);
  assert.match(
    r.stderr,
    new RegExp(`^midge: ${syntax.replace(/[.\\]/g, "\\$&")}:\\d+: TOML syntax error: [^\\n]+\\n$`),
  );

  const missing = join(dir, "missing.toml");
  r = midge("serve", "-c", missing, "--test-config");
  assert.equal(r.status, 1);
  assert.equal(r.stderr, `midge: ${missing}: cannot read the configuration file: no such file\n`);
});

test("every problem in the configuration file is reported at once, one line each, in file order", () => {
  const many = file(
    "many.toml",
    `max_inflite = 1\nmax_qos = 7\n\n[[listener]]\nport = "x"\nprotocl = "mqtt"\n`,
  );
  for (const args of [["--test-config"], []]) {
    const r = midge("serve", "-c", many, ...args);
    assert.equal(r.status, 1);
    assert.equal(
      r.stderr,
      [
        `midge: ${many}:1: key "max_inflite": unknown key`,
        `midge: ${many}:2: key "max_qos": expected an integer 0-2, got 7`,
        `midge: ${many}:5: key "listener[0].port": expected an integer 0-65535, got "x"`,
        `midge: ${many}:6: key "listener[0].protocl": unknown key (did you mean "protocol"?)`,
        "",
      ].join("\n"),
    );
  }
});

test("--test-config opens and parses every file the configuration names and reports every problem; serve refuses the same with the same lines", () => {
  const certs = makeCerts();
  try {
    const passwd = file("plain-passwd", "alice:secret\nbob:hunter2\n");
    const acl = file("typo-acl", "topic wirte x\nuser\ntopic read a/#\n");
    const notDir = file("not-a-dir", "");
    const cfg = file(
      "files.toml",
      `password_file = "${passwd}"
acl_file = "${acl}"
persistence_location = "${notDir}"
http_listener = "127.0.0.1:0"
http_certfile = "${join(dir, "missing-http-cert.pem")}"
http_keyfile = "${certs.serverKey}"

[[listener]]
port = 0
certfile = "${join(dir, "missing-cert.pem")}"
keyfile = "${join(dir, "missing-key.pem")}"

[[listener]]
port = 0
certfile = "${certs.serverCert}"
keyfile = "${certs.server2Key}"
cafile = "${certs.caCert}"
crlfile = "${passwd}"

[[bridge]]
name = "b"
addresses = ["127.0.0.1:1"]
topic = ["# out"]
bridge_cafile = "${acl}"
bridge_certfile = "${certs.clientCert}"
bridge_keyfile = "${join(dir, "missing-bridge-key.pem")}"
`,
    );
    const want = [
      `${cfg}: key "listener[0].certfile": cannot read ${
        join(dir, "missing-cert.pem")
      }: no such file`,
      `${cfg}: key "listener[0].keyfile": cannot read ${
        join(dir, "missing-key.pem")
      }: no such file`,
      `${cfg}: key "listener[1].keyfile": ${certs.server2Key} is not the private key of certfile ${certs.serverCert}`,
      `${cfg}: key "listener[1].crlfile": ${passwd}: not a certificate revocation list`,
      `${cfg}: key "bridge[0].bridge_cafile": ${acl}: no PEM certificate`,
      `${cfg}: key "bridge[0].bridge_keyfile": cannot read ${
        join(dir, "missing-bridge-key.pem")
      }: no such file`,
      `${cfg}: key "http_certfile": cannot read ${
        join(dir, "missing-http-cert.pem")
      }: no such file`,
      `${passwd}:1: user "alice": the password is not hashed`,
      `${passwd}:2: user "bob": the password is not hashed`,
      `${acl}:1: unknown access "wirte"`,
      `${acl}:2: \`user\` needs a user name`,
      `${cfg}: key "persistence_location": ${notDir} is not a directory`,
    ];
    const check = midge("serve", "-c", cfg, "--test-config");
    const start = midge("serve", "-c", cfg, "-p", "0");
    for (const r of [check, start]) {
      assert.equal(r.status, 1, r.stdout);
      const lines = r.stderr.trimEnd().split("\n");
      assert.equal(lines.length, want.length, r.stderr);
      want.forEach((w, i) =>
        assert.ok(lines[i].startsWith(`midge: ${w}`), `${lines[i]}\n  lacks ${w}`)
      );
    }
    assert.equal(start.stderr, check.stderr, "serve refuses with the same lines");

    // The same files made right pass.
    const hashed = join(dir, "hashed-passwd");
    assert.equal(midge("passwd", "-c", "-b", hashed, "alice", "secret").status, 0);
    const good = file(
      "files-good.toml",
      `password_file = "${hashed}"
acl_file = "${file("good-acl", "topic read a/#\n")}"
persistence_location = "${join(dir, "data-good")}"

[[listener]]
port = 0
certfile = "${certs.serverCert}"
keyfile = "${certs.serverKey}"
cafile = "${certs.caCert}"
crlfile = "${certs.crl}"

[[bridge]]
name = "b"
addresses = ["127.0.0.1:1"]
topic = ["# out"]
bridge_cafile = "${certs.caCert}"
bridge_certfile = "${certs.clientCert}"
bridge_keyfile = "${certs.clientKey}"
`,
    );
    const ok = midge("serve", "-c", good, "--test-config");
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /configuration OK/);
  } finally {
    certs.cleanup();
  }
});

test("--test-config reads every row of an existing database; serve refuses it with the same line", () => {
  const data = join(dir, "data-badrow");
  const cfg = file("badrow.toml", `persistence_location = "${data}"\n\n[[listener]]\nport = 0\n`);
  assert.equal(midge("serve", "-c", cfg, "--test-config").status, 0, "no database yet: fine");
  // A database with a row the broker cannot read.
  mkdirSync(data, { recursive: true });
  const db = new DatabaseSync(join(data, "midge.db"));
  db.exec(
    "CREATE TABLE retained(topic TEXT PRIMARY KEY, payload BLOB NOT NULL, qos INTEGER NOT NULL, props TEXT, expires_at INTEGER NOT NULL, origin TEXT NOT NULL)",
  );
  db.exec(`INSERT INTO retained VALUES ('r/t', x'00', 0, '{"a":', 0, 'c')`);
  db.close();
  const check = midge("serve", "-c", cfg, "--test-config");
  assert.equal(check.status, 1);
  assert.match(
    check.stderr,
    /^midge: \S+midge\.db: malformed row in table retained \(topic "r\/t"\): props: [^\n]+\n$/,
  );
  const start = midge("serve", "-c", cfg, "-p", "0");
  assert.equal(start.status, 1);
  assert.equal(start.stderr, check.stderr);
});

test("unknown commands, unknown flags and bad values print usage on stderr and exit 1", () => {
  let r = midge("frobnicate");
  assert.equal(r.status, 1);
  assert.equal(r.stdout, "");
  assert.match(r.stderr, /^midge: unknown command "frobnicate"\n\nUsage: midge <command>/);

  r = midge("--bogus");
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^midge: unknown option --bogus\n\nUsage: midge <command>/);

  r = midge("serve", "--bogus", "--test-config");
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^midge: serve: .*--bogus.*\n\nUsage: midge serve/);

  r = midge("serve", "extra-argument", "--test-config");
  assert.equal(r.status, 1);
  assert.match(r.stderr, /extra-argument[^]*Usage: midge serve/);

  r = midge("serve", "-p", "abc", "--test-config");
  assert.equal(r.status, 1);
  assert.equal(r.stderr, `midge: -p: expected a port number 0-65535, got "abc"\n`);

  r = midge();
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^midge: no command given\n\nUsage: midge <command>/);
});

test("serve -c FILE -p 0 starts the broker on the configured listener", async () => {
  // Persistence off: the test must not leave a database in the source tree.
  const cfg = file(
    "serve.toml",
    `log_type = "none"\npersistence = false\n\n[[listener]]\nport = 1\n`,
  );
  const child = spawn(bin, [...prefix, "serve", "-c", cfg, "-p", "0"], {
    cwd: root,
    env: { ...process.env, NO_COLOR: "1" },
  });
  try {
    // serve prints "listening mqtt on 127.0.0.1:<port>" once the listener is bound.
    const port = await new Promise<number>((resolve, reject) => {
      let text = "";
      child.stdout.on("data", (b) => {
        text += b;
        const m = /listening mqtt on 127\.0\.0\.1:(\d+)/.exec(text);
        if (m) resolve(Number(m[1]));
      });
      child.stderr.on("data", (b) => (text += b));
      child.on("exit", (code) => reject(new Error(`serve exited with ${code}: ${text}`)));
    });
    assert.notEqual(port, 0, "-p 0 lets the OS choose a port");
    assert.notEqual(port, 1, "-p replaced the configured port");
    await new Promise<void>((resolve, reject) => {
      const s = connect(port, "127.0.0.1", () => {
        s.destroy();
        resolve();
      });
      s.on("error", reject);
    });
  } finally {
    const exited = new Promise((resolve) => child.on("exit", resolve));
    child.kill("SIGTERM");
    await exited;
  }
});
