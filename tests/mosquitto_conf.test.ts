/**
 * Mosquitto's own configuration files run unchanged: a mosquitto.conf with several listeners
 * (plain, TLS, websockets, a Unix socket from include_dir), per_listener_settings with a
 * mosquitto_passwd-made password file and an ACL file, and pid_file, served by `midge serve`
 * and exercised with mosquitto_pub/mosquitto_sub; the same checks against the TOML that
 * `midge convert` makes of it; Debian's example file; all malformed lines reported at once.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import mqtt from "mqtt";
import { freePort, until } from "./helpers/broker.ts";
import { makeCerts, type TestCerts } from "./helpers/certs.ts";
import { ConfigError, loadConfig } from "../src/config/load.ts";
import { lookupUser } from "../src/sys/process.ts";
import {
  conversionMessages,
  isMosquittoConf,
  translateMosquittoConf,
} from "../src/config/mosquitto_conf.ts";

const root = new URL("..", import.meta.url).pathname;
const runtime = process.env.MIDGE_TEST_RUNTIME ?? ("Bun" in globalThis ? "bun" : "deno");
const bin = join(root, "node_modules", ".bin", runtime);
const prefix = runtime === "deno" ? ["run", "-A", "src/main.ts"] : ["src/main.ts"];

interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program to its end (killed after 20 s); resolves with its exit code and output. */
function run(cmd: string, args: string[]): Promise<Exit> {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  const guard = setTimeout(() => child.kill("SIGKILL"), 20000);
  return new Promise<Exit>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  }).finally(() => clearTimeout(guard));
}

/** `midge <args>` to its end. */
function midge(...args: string[]): Promise<Exit> {
  return run(bin, [...prefix, ...args]);
}

/** `midge serve -c <file>`; resolves once `listeners` lines `listening ...` were printed. */
function serve(
  file: string,
  listeners: number,
): Promise<{ child: ChildProcess; out: () => string }> {
  const child = spawn(bin, [...prefix, "serve", "-c", file], {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let text = "";
  child.stdout!.on("data", (b) => (text += b));
  child.stderr!.on("data", (b) => (text += b));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${text}`)), 20000);
    const check = () => {
      if ((text.match(/^listening /gm) ?? []).length >= listeners) {
        clearTimeout(timer);
        resolve({ child, out: () => text });
      }
    };
    child.stdout!.on("data", check);
    child.on("exit", (code) => reject(new Error(`serve exited with ${code}: ${text}`)));
  });
}

/** Stops a served broker with SIGTERM and waits for it to exit. */
async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  child.removeAllListeners("exit");
  const exited = new Promise((r) => child.once("exit", r));
  process.kill(child.pid!, "SIGTERM");
  await exited;
}

interface Setup {
  dir: string;
  certs: TestCerts;
  conf: string;
  pidFile: string;
  socket: string;
  plain: number;
  tls: number;
  ws: number;
  cleanup(): void;
}

/** Writes a mosquitto.conf, its include_dir, a mosquitto_passwd file and an ACL file. */
async function setup(): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), "midge-mconf-"));
  // The broker may drop root privileges (Mosquitto's `user`): it must still remove its pid file.
  chmodSync(dir, 0o777);
  const certs = makeCerts();
  const [plain, tls, ws] = [await freePort(), await freePort(), await freePort()];
  const passwd = join(dir, "passwd");
  execFileSync("mosquitto_passwd", ["-c", "-b", passwd, "alice", "wonderland"]);
  execFileSync("mosquitto_passwd", ["-b", passwd, "bob", "builder"]);
  writeFileSync(
    join(dir, "acl"),
    "# Mosquitto ACL file\nuser alice\ntopic readwrite a/#\n\nuser bob\ntopic read a/#\n",
  );
  const socket = join(dir, "mqtt.sock");
  mkdirSync(join(dir, "conf.d"));
  writeFileSync(
    join(dir, "conf.d", "10-unix.conf"),
    `# Local tools\nlistener 0 ${socket}\nallow_anonymous true\n`,
  );
  writeFileSync(join(dir, "conf.d", "ignored.txt"), "not a conf file\n");
  const pidFile = join(dir, "mosquitto.pid");
  const conf = join(dir, "mosquitto.conf");
  writeFileSync(
    conf,
    `# A production setup, unchanged from Mosquitto
per_listener_settings true
pid_file ${pidFile}
autosave_interval 1800
include_dir ${join(dir, "conf.d")}

# Devices: users and ACLs
listener ${plain} 127.0.0.1
password_file ${passwd}
acl_file ${join(dir, "acl")}
allow_anonymous false

# TLS from outside
listener ${tls} 127.0.0.1
certfile ${certs.serverCert}
keyfile ${certs.serverKey}
cafile ${certs.caCert}
allow_anonymous true

# Browsers
listener ${ws} 127.0.0.1
protocol websockets
allow_anonymous true
`,
  );
  return {
    dir,
    certs,
    conf,
    pidFile,
    socket,
    plain,
    tls,
    ws,
    cleanup() {
      certs.cleanup();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const base = (port: number) => ["-h", "127.0.0.1", "-p", String(port)];

/** The checks both the Mosquitto file and its conversion must pass, with Mosquitto's clients. */
async function exercise(s: Setup): Promise<void> {
  const pub = (args: string[]) => run("mosquitto_pub", args);
  const sub = (args: string[]) => run("mosquitto_sub", [...args, "-W", "10"]);

  // Devices listener: no anonymous clients, no wrong passwords (CONNACK 5).
  let r = await pub([...base(s.plain), "-t", "a/1", "-m", "x"]);
  assert.equal(r.code, 5, `anonymous on the password listener: ${r.stderr}`);
  r = await pub([...base(s.plain), "-u", "alice", "-P", "wrong", "-t", "a/1", "-m", "x"]);
  assert.equal(r.code, 5, `wrong password: ${r.stderr}`);

  // alice publishes a retained message; an anonymous TLS client on another listener reads it.
  const alice = ["-u", "alice", "-P", "wonderland"];
  r = await pub([...base(s.plain), ...alice, "-t", "a/r", "-m", "from-alice", "-r", "-q", "1"]);
  assert.equal(r.code, 0, r.stderr);
  const tls = [...base(s.tls), "--cafile", s.certs.caCert];
  r = await sub([...tls, "-t", "a/r", "-C", "1"]);
  assert.equal(r.stdout, "from-alice\n", r.stderr);

  // The TLS listener has no ACL: anonymous publishes anywhere. On the devices listener alice
  // may read a/# only: with b/secret first in the SUBSCRIBE, the ACL is what keeps it away.
  r = await pub([...tls, "-t", "b/secret", "-m", "hidden", "-r", "-q", "1"]);
  assert.equal(r.code, 0, r.stderr);
  r = await pub([...tls, "-t", "a/s", "-m", "visible", "-r", "-q", "1"]);
  assert.equal(r.code, 0, r.stderr);
  r = await sub([
    ...base(s.plain),
    ...alice,
    "-V",
    "5",
    "-t",
    "b/secret",
    "-t",
    "a/s",
    "-C",
    "1",
    "-v",
  ]);
  assert.equal(r.stdout, "a/s visible\n", r.stderr);

  // bob may read a/# but not write it: his message is dropped, alice's retained one stays.
  r = await pub([...base(s.plain), "-u", "bob", "-P", "builder", "-t", "a/r", "-m", "bob", "-r"]);
  assert.equal(r.code, 0, r.stderr);
  r = await sub([...base(s.plain), "-u", "bob", "-P", "builder", "-t", "a/r", "-C", "1"]);
  assert.equal(r.stdout, "from-alice\n", r.stderr);

  // The Unix socket listener from include_dir.
  r = await pub(["--unix", s.socket, "-t", "a/u", "-m", "unix", "-r"]);
  assert.equal(r.code, 0, r.stderr);
  r = await sub(["--unix", s.socket, "-t", "a/u", "-C", "1"]);
  assert.equal(r.stdout, "unix\n", r.stderr);

  // WebSockets on any path, as Mosquitto's listener: ws://host:port and another path.
  for (const url of [`ws://127.0.0.1:${s.ws}`, `ws://127.0.0.1:${s.ws}/some/path`]) {
    const c = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000 });
    try {
      const got = new Promise<string>((resolve) => c.on("message", (_t, p) => resolve(`${p}`)));
      await c.subscribeAsync("a/r");
      assert.equal(await got, "from-alice", url);
    } finally {
      await c.endAsync(true);
    }
  }
}

test("a mosquitto.conf with several listeners, TLS, websockets, per_listener_settings, include_dir and pid_file runs unchanged", async () => {
  const s = await setup();
  let child: ChildProcess | undefined;
  try {
    const served = await serve(s.conf, 4);
    child = served.child;
    assert.equal(readFileSync(s.pidFile, "utf8").trim(), String(child.pid));
    // Mosquitto's `user` (default "mosquitto"): started as root, the broker runs as that user
    // once its listeners are bound; otherwise it keeps its user.
    const uid = Number(
      /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))![1],
    );
    const me = process.getuid!();
    const mosquitto = lookupUser("mosquitto") ?? lookupUser("nobody");
    assert.equal(uid, me === 0 ? mosquitto!.uid : me);
    await exercise(s);
    await stop(child);
    assert.equal(existsSync(s.pidFile), false, "pid_file removed at exit");
  } finally {
    if (child) await stop(child);
    s.cleanup();
  }
});

test("midge convert: the TOML it prints behaves as the mosquitto.conf it came from", async () => {
  const s = await setup();
  let child: ChildProcess | undefined;
  try {
    const r = await midge("convert", s.conf);
    assert.equal(r.code, 0, r.stderr);
    // Comments are carried over, Mosquitto's defaults written out.
    assert.match(r.stdout, /^# Devices: users and ACLs$/m);
    assert.match(r.stdout, /^# A production setup, unchanged from Mosquitto$/m);
    assert.match(r.stdout, /^persistence = false$/m);
    assert.match(r.stdout, /^websockets_path = "\*"$/m);
    const toml = join(s.dir, "midge.toml");
    writeFileSync(toml, r.stdout);
    assert.equal(isMosquittoConf(r.stdout, toml), false);
    const served = await serve(toml, 4);
    child = served.child;
    assert.equal(readFileSync(s.pidFile, "utf8").trim(), String(child.pid));
    await exercise(s);
  } finally {
    if (child) await stop(child);
    s.cleanup();
  }
});

test("Debian's example mosquitto.conf is accepted as it is, with Mosquitto 2.0's local-only defaults", async () => {
  const dir = "/usr/share/doc/mosquitto/examples";
  const name = ["mosquitto.conf", "mosquitto.conf.gz", "mosquitto.conf.example"].find((n) =>
    existsSync(join(dir, n))
  );
  assert.ok(name, `Debian's mosquitto package ships ${dir}/mosquitto.conf`);
  let file = join(dir, name);
  const tmp = mkdtempSync(join(tmpdir(), "midge-debian-"));
  try {
    if (file.endsWith(".gz")) {
      const text = execFileSync("gzip", ["-dc", file]);
      file = join(tmp, "mosquitto.conf");
      writeFileSync(file, text);
    }
    const config = await loadConfig(file);
    assert.equal(config.listeners.length, 1);
    assert.equal(config.listeners[0].bind_address, "127.0.0.1");
    assert.equal(config.listeners[0].port, 1883);
    assert.equal(config.allow_anonymous, true);
    assert.equal(config.persistence, false);
    assert.equal(config.max_inflight_messages, 20);
    assert.equal(config.max_queued_messages, 1000);
    assert.equal(config.max_keepalive, 65535);
    assert.equal(config.max_packet_size, 268435460);
    assert.deepEqual(conversionMessages(config).warnings, []);
    const r = await midge("serve", "-c", file, "--test-config");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /configuration OK \(listeners: mqtt 127\.0\.0\.1:1883\)/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test("every malformed line of a mosquitto.conf and its include_dir is reported at once with file:line", async () => {
  const dir = mkdtempSync(join(tmpdir(), "midge-mbad-"));
  try {
    mkdirSync(join(dir, "conf.d"));
    const inc = join(dir, "conf.d", "a.conf");
    writeFileSync(inc, "# included\nmax_queued_messages many\n");
    const file = join(dir, "mosquitto.conf");
    writeFileSync(
      file,
      [
        "listener abc",
        "max_qos 3",
        "persistance true",
        "allow_anonymous yes",
        `include_dir ${join(dir, "conf.d")}`,
        "listener 0",
        "log_dest syslogg",
      ].join("\n") + "\n",
    );
    const e = await loadConfig(file).then(() => null, (e) => e);
    assert.ok(e instanceof ConfigError, String(e));
    const lines = e.message.split("\n");
    assert.deepEqual(lines, [
      `${file}:1: listener: invalid port "abc"`,
      `${file}:2: max_qos: expected an integer 0-2, got 3`,
      `${file}:3: unknown configuration option "persistance"`,
      `${file}:4: allow_anonymous: expected true or false, got "yes"`,
      `${inc}:2: max_queued_messages: expected an integer, got "many"`,
      `${file}:6: listener: a listener with port 0 must give a Unix socket path`,
      `${file}:7: log_dest: invalid value "syslogg"`,
    ]);
    const r = await midge("serve", "-c", file, "--test-config");
    assert.equal(r.code, 1);
    for (const l of lines) assert.ok(r.stderr.includes(l), `${l}\nin\n${r.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("options Midge cannot honour are warned about with file, line and reason (psk_file points to client certificates)", () => {
  const t = translateMosquittoConf(
    "listener 8883\npsk_hint hint\npsk_file /etc/mosquitto/psk\ncapath /etc/ssl/certs\nlistener 1884\n",
    "m.conf",
  );
  assert.deepEqual(t.errors, []);
  const w = t.warnings.map((m) => `${m.file}:${m.line}: ${m.message}`);
  assert.equal(w.length, 3, w.join("\n"));
  assert.match(w[0], /^m\.conf:2: psk_hint: TLS-PSK .*Bun.*Deno.*client certificates/);
  assert.match(w[1], /^m\.conf:3: psk_file: TLS-PSK .*client certificates/);
  assert.match(w[2], /^m\.conf:4: capath: .*use cafile/);
  // Carried into the TOML as comments, not silently dropped.
  assert.match(t.toml, /^# psk_file \/etc\/mosquitto\/psk {4}\(not used: TLS-PSK/m);
});

test("Mosquitto's defaults, not Midge's, for what a mosquitto.conf leaves out; recommendations where unsafe", () => {
  const t = translateMosquittoConf("listener 1883\n", "m.conf");
  assert.match(t.toml, /^allow_anonymous = false$/m);
  assert.match(t.toml, /^persistence = false$/m);
  assert.match(t.toml, /^max_packet_size = 268435460$/m);
  assert.match(t.toml, /^bind_address = "0\.0\.0\.0"$/m);
  const notes = t.notes.map((n) => n.message).join("\n");
  assert.match(notes, /max_packet_size 2000000 is recommended/);
  assert.match(notes, /persistence is off/);
});

test("1.x and 2.0 aliases: port, bind_address, maximum_qos, retained_persistence, auth_plugin with auth_opt_", () => {
  const t = translateMosquittoConf(
    [
      "port 1884",
      "bind_address 127.0.0.1",
      "maximum_qos 1",
      "retained_persistence true",
      "auth_plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
      "auth_opt_config_file /var/lib/mosquitto/dynamic-security.json",
      "max_inflight_messages 65535",
    ].join("\n"),
    "old.conf",
  );
  assert.deepEqual(t.errors, []);
  assert.match(t.toml, /^max_qos = 1$/m);
  assert.match(t.toml, /^persistence = true$/m);
  assert.match(t.toml, /^max_inflight_messages = 0$/m);
  assert.match(
    t.toml,
    /^plugins = \[\{ name = "dynamic-security", config_file = "\/var\/lib\/mosquitto\/dynamic-security\.json" \}\]$/m,
  );
  assert.match(t.toml, /^\[\[listener\]\]\nport = 1884\nbind_address = "127\.0\.0\.1"$/m);
});

test("content, not only the name, tells a mosquitto.conf from TOML", () => {
  assert.equal(isMosquittoConf("# comment\nlistener 1883\n", "broker.cfg"), true);
  assert.equal(isMosquittoConf("max_qos = 1\n", "mosquitto.conf"), false);
  assert.equal(isMosquittoConf("[[listener]]\nport = 1\n", "x.conf"), false);
  assert.equal(isMosquittoConf("# only comments\n", "mosquitto.conf"), true);
  assert.equal(isMosquittoConf("# only comments\n", "midge.toml"), false);
});

test("midge serve -d runs in the background and pid_file lets kill find it", async () => {
  const dir = mkdtempSync(join(tmpdir(), "midge-daemon-"));
  chmodSync(dir, 0o777);
  const port = await freePort();
  const pidFile = join(dir, "midge.pid");
  const conf = join(dir, "mosquitto.conf");
  writeFileSync(conf, `pid_file ${pidFile}\nlistener ${port} 127.0.0.1\nallow_anonymous true\n`);
  let pid = 0;
  try {
    const r = await midge("serve", "-c", conf, "-d");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`listening mqtt on 127\\.0\\.0\\.1:${port}`));
    pid = Number(readFileSync(pidFile, "utf8"));
    assert.ok(pid > 0);
    const p = await run("mosquitto_pub", [...base(port), "-t", "t", "-m", "m"]);
    assert.equal(p.code, 0, p.stderr);
    process.kill(pid, "SIGTERM");
    await until(() => !existsSync(pidFile), 15000, "the pid file to be removed");
    pid = 0;
  } finally {
    if (pid) process.kill(pid, "SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
});

test("bridges: connection blocks become [[bridge]] tables with Mosquitto's option names", async () => {
  const dir = mkdtempSync(join(tmpdir(), "midge-mbridge-"));
  try {
    const file = join(dir, "mosquitto.conf");
    writeFileSync(
      file,
      [
        "listener 1883 127.0.0.1",
        "",
        "# Cloud bridge",
        "connection cloud",
        "address 10.0.0.1:1884 10.0.0.2",
        'topic sensors/# out 1 site1/ ""',
        "topic commands/# in 2",
        "bridge_protocol_version mqttv50",
        "remote_clientid site1",
        "cleansession true",
        "keepalive_interval 2",
        "try_private false",
        "restart_timeout 2 10",
      ].join("\n") + "\n",
    );
    const config = await loadConfig(file);
    assert.equal(config.bridges.length, 1);
    const b = config.bridges[0];
    assert.equal(b.name, "cloud");
    assert.deepEqual(b.addresses, ["10.0.0.1:1884", "10.0.0.2"]);
    assert.deepEqual(b.topic, ['sensors/# out 1 site1/ ""', "commands/# in 2"]);
    assert.equal(b.bridge_protocol_version, "mqttv50");
    assert.equal(b.remote_clientid, "site1");
    assert.equal(b.cleansession, true);
    assert.equal(b.keepalive_interval, 5, "raised to Mosquitto's minimum, with a note");
    assert.equal(b.try_private, false);
    assert.equal(b.restart_timeout, "2 10");
    assert.ok(conversionMessages(config).notes.some((n) => /:11: keepalive_interval 2/.test(n)));
    const t = translateMosquittoConf(readFileSync(file, "utf8"), file);
    assert.match(t.toml, /^# Cloud bridge\n\[\[bridge\]\]\nname = "cloud"$/m);
    // A bridge option outside a bridge is a malformed line.
    const bad = translateMosquittoConf("topic a/# both\n", "m.conf");
    assert.deepEqual(bad.errors.map((e) => `${e.line}: ${e.message}`), [
      `1: topic: only in a bridge (after "connection")`,
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a file a mosquitto.conf names that cannot be read is reported at the line naming it", async () => {
  const dir = mkdtempSync(join(tmpdir(), "midge-mfiles-"));
  try {
    const file = join(dir, "mosquitto.conf");
    const missing = join(dir, "missing.pem");
    writeFileSync(
      file,
      `listener 1883 127.0.0.1\ncertfile ${missing}\nkeyfile ${join(dir, "missing.key")}\n`,
    );
    const r = await midge("serve", "-c", file, "--test-config");
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${file}:2: certfile: cannot read ${missing}`));
    assert.match(r.stderr, new RegExp(`${file}:3: keyfile: cannot read`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("check_retain_source: Mosquitto's default (true) with an ACL is warned about; false is accepted", () => {
  const warned = translateMosquittoConf("listener 1883\nacl_file /etc/acl\n", "m.conf");
  assert.ok(warned.warnings.some((w) => /check_retain_source .*not honoured/.test(w.message)));
  const off = translateMosquittoConf(
    "listener 1883\nacl_file /etc/acl\ncheck_retain_source false\n",
    "m.conf",
  );
  assert.deepEqual(off.warnings, []);
  const noAcl = translateMosquittoConf("listener 1883\n", "m.conf");
  assert.deepEqual(noAcl.warnings, []);
});

test("the same mosquitto.conf: Midge's CONNACK properties are those real Mosquitto sends", async () => {
  const dir = mkdtempSync(join(tmpdir(), "midge-mconnack-"));
  chmodSync(dir, 0o777);
  const [mport, gport] = [await freePort(), await freePort()];
  const text = (port: number) =>
    `listener ${port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 15\n`;
  writeFileSync(join(dir, "mosquitto.conf"), text(mport));
  writeFileSync(join(dir, "midge.conf"), text(gport));
  const mosquitto = spawn("mosquitto", ["-c", join(dir, "mosquitto.conf")], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  mosquitto.stderr!.on("data", (d) => (log += d));
  let midgeChild: ChildProcess | undefined;
  try {
    await until(() => /running/.test(log), 15000, `mosquitto to start: ${log}`);
    midgeChild = (await serve(join(dir, "midge.conf"), 1)).child;
    const connack = async (port: number, o: mqtt.IClientOptions) => {
      const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
        protocolVersion: 5,
        reconnectPeriod: 0,
        ...o,
      });
      // deno-lint-ignore no-explicit-any
      const p = { ...((c as any).connackPacket?.properties ?? {}) };
      await c.endAsync();
      if (p.assignedClientIdentifier) p.assignedClientIdentifier = "<assigned>";
      return p;
    };
    for (
      const o of [
        { clientId: "c1", keepalive: 60 },
        { clientId: "c2", keepalive: 0 },
        { clientId: "", keepalive: 30 },
      ]
    ) {
      assert.deepEqual(await connack(gport, o), await connack(mport, o), JSON.stringify(o));
    }
  } finally {
    mosquitto.kill("SIGTERM");
    if (midgeChild) await stop(midgeChild);
    rmSync(dir, { recursive: true, force: true });
  }
});

test("socket_domain picks the address family of a listener without an address; an address wins", async () => {
  const t = translateMosquittoConf(
    "listener 1883\nsocket_domain ipv6\nlistener 1884\nsocket_domain ipv4\nlistener 1885 127.0.0.1\nsocket_domain ipv6\n",
    "m.conf",
  );
  assert.deepEqual(t.errors, []);
  const dir = mkdtempSync(join(tmpdir(), "midge-mdomain-"));
  try {
    const file = join(dir, "m.conf");
    writeFileSync(file, t.toml);
    const config = await loadConfig(file);
    assert.deepEqual(config.listeners.map((l) => l.bind_address), ["::", "0.0.0.0", "127.0.0.1"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const bad = translateMosquittoConf("listener 1883\nsocket_domain ipx\n", "m.conf");
  assert.deepEqual(bad.errors.map((e) => e.line), [2]);
});

test("options Midge behaves as one value of are accepted at that value and warned about at the other", () => {
  const t = translateMosquittoConf(
    [
      "listener 1883",
      "allow_duplicate_messages false",
      "allow_duplicate_messages true",
      "auth_plugin_deny_special_chars true",
      "auth_plugin_deny_special_chars false",
      "set_tcp_nodelay true",
      "set_tcp_nodelay false",
      "autosave_interval 300",
    ].join("\n"),
    "m.conf",
  );
  assert.deepEqual(t.errors, []);
  assert.deepEqual(t.warnings.map((w) => w.line), [3, 5, 7]);
  assert.match(t.toml, /^# autosave_interval 300 {4}\(not needed: /m);
  assert.match(t.toml, /^# allow_duplicate_messages false {4}\(as Midge does: /m);
});
