/**
 * mosquitto_pub/sub flags the client tools take as Mosquitto's do: --unix, --tls-version,
 * --ciphers, --tls-alpn, --proxy (SOCKS5, checked against mosquitto_pub through the same test
 * proxy), sub --random-filter, and --psk refused with the reason.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect as netConnect, createServer, type Server, type Socket } from "node:net";
import { createServer as tlsServer } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { defaults, LISTENER_KEYS } from "../src/config/schema.ts";
import { startBroker, until } from "./helpers/broker.ts";
import { makeCerts } from "./helpers/certs.ts";

const root = new URL("..", import.meta.url).pathname;
const runtime = process.env.MIDGE_TEST_RUNTIME ?? ("Bun" in globalThis ? "bun" : "deno");
const bin = join(root, "node_modules", ".bin", runtime);
const prefix = runtime === "deno" ? ["run", "-A", "src/main.ts"] : ["src/main.ts"];

interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program to its end (killed after 20 s), `input` on its stdin. */
function run(cmd: string, args: string[], input = ""): Promise<Exit> {
  const child = spawn(cmd, args, { cwd: root, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  child.stdin!.on("error", () => {});
  child.stdin!.end(input);
  const guard = setTimeout(() => child.kill("SIGKILL"), 20000);
  return new Promise<Exit>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  }).finally(() => clearTimeout(guard));
}

const midge = (args: string[], input = "") => run(bin, [...prefix, ...args], input);

test("--unix: pub and sub through the broker's Unix socket listener", async () => {
  const dir = mkdtempSync(join(tmpdir(), "midge-unix-"));
  const path = join(dir, "mqtt.sock");
  const tb = await startBroker({
    allow_anonymous: true,
    listeners: [{ ...defaults(LISTENER_KEYS), unix_socket: path }],
  });
  try {
    let r = await midge(["pub", "--unix", path, "-t", "u/1", "-m", "over unix", "-r", "-q", "1"]);
    assert.equal(r.code, 0, r.stderr);
    r = await midge(["sub", "--unix", path, "-t", "u/1", "-C", "1", "-W", "10"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "over unix\n");
  } finally {
    await tb.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("--tls-version, --ciphers and --tls-alpn reach the TLS handshake", async () => {
  const certs = makeCerts();
  const seen: { version?: string; cipher?: string; alpn?: string | false | null }[] = [];
  const server = tlsServer({
    cert: certs.read(certs.serverCert),
    key: certs.read(certs.serverKey),
    ALPNProtocols: ["x-test", "mqtt"],
  }, (s) => {
    seen.push({
      version: s.getProtocol() ?? undefined,
      cipher: s.getCipher()?.name,
      alpn: s.alpnProtocol,
    });
    s.destroy();
  });
  server.on("tlsClientError", () => {});
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  const base = ["pub", "-h", "127.0.0.1", "-p", String(port), "--cafile", certs.caCert];
  try {
    await midge([
      ...base,
      "--tls-version",
      "tlsv1.2",
      "--tls-alpn",
      "x-test",
      "-t",
      "t",
      "-m",
      "x",
    ]);
    await until(() => seen.length >= 1, 10000, "the first handshake");
    assert.equal(seen[0].version, "TLSv1.2");
    assert.equal(seen[0].alpn, "x-test");
    await midge([...base, "--tls-version", "tlsv1.3", "-t", "t", "-m", "x"]);
    await until(() => seen.length >= 2, 10000, "the second handshake");
    assert.equal(seen[1].version, "TLSv1.3");
    assert.equal(seen[1].alpn, "mqtt", "mqtts offers ALPN mqtt by default");
    await midge([
      ...base,
      "--tls-version",
      "tlsv1.2",
      "--ciphers",
      "ECDHE-ECDSA-AES256-GCM-SHA384",
      "-t",
      "t",
      "-m",
      "x",
    ]);
    await until(() => seen.length >= 3, 10000, "the third handshake");
    assert.equal(seen[2].cipher, "ECDHE-ECDSA-AES256-GCM-SHA384");
    const old = await midge([...base, "--tls-version", "tlsv1.1", "-t", "t", "-m", "x"]);
    assert.equal(old.code, 1);
    assert.match(old.stderr, /tlsv1\.1 is obsolete/);
  } finally {
    server.close();
    certs.cleanup();
  }
});

/** A SOCKS5 proxy (user name/password required) that records what it was asked to reach. */
async function socksProxy(user: string, pass: string) {
  const asked: string[] = [];
  const server: Server = createServer((c: Socket) => {
    let buf = Buffer.alloc(0);
    let step = 0;
    c.on("error", () => {});
    c.on("data", function onData(d: Buffer) {
      buf = Buffer.concat([buf, d]);
      if (step === 0 && buf.length >= 2 && buf.length >= 2 + buf[1]) {
        const methods = [...buf.subarray(2, 2 + buf[1])];
        buf = buf.subarray(2 + buf[1]);
        if (!methods.includes(2)) return void c.end(Buffer.from([5, 0xff]));
        c.write(Buffer.from([5, 2]));
        step = 1;
      }
      if (step === 1 && buf.length >= 2) {
        const ul = buf[1];
        if (buf.length < 3 + ul || buf.length < 3 + ul + buf[2 + ul]) return;
        const u = buf.subarray(2, 2 + ul).toString();
        const p = buf.subarray(3 + ul, 3 + ul + buf[2 + ul]).toString();
        buf = buf.subarray(3 + ul + buf[2 + ul]);
        if (u !== user || p !== pass) return void c.end(Buffer.from([1, 1]));
        c.write(Buffer.from([1, 0]));
        step = 2;
      }
      if (step === 2 && buf.length >= 5 && buf[3] === 3 && buf.length >= 7 + buf[4]) {
        const host = buf.subarray(5, 5 + buf[4]).toString();
        const port = buf.readUInt16BE(5 + buf[4]);
        const rest = buf.subarray(7 + buf[4]);
        asked.push(`${host}:${port}`);
        step = 3;
        c.off("data", onData);
        const up = netConnect({ host: host === "localhost" ? "127.0.0.1" : host, port }, () => {
          c.write(Buffer.from([5, 0, 0, 1, 127, 0, 0, 1, 0, 0]));
          if (rest.length) up.write(rest);
          c.pipe(up);
          up.pipe(c);
        });
        up.on("error", () => c.destroy());
        c.on("close", () => up.destroy());
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, asked, port: (server.address() as { port: number }).port };
}

test("--proxy socks5h://user:pass@host:port: through a SOCKS5 proxy, as mosquitto_pub", async () => {
  const certs = makeCerts();
  const tb = await startBroker({
    allow_anonymous: true,
    listeners: [
      { ...defaults(LISTENER_KEYS), port: 0 },
      {
        ...defaults(LISTENER_KEYS),
        port: 0,
        certfile: certs.serverCert,
        keyfile: certs.serverKey,
      },
    ],
  });
  const tlsPort = tb.broker.listeners[1].port;
  const proxy = await socksProxy("pu", "pp");
  const url = `socks5h://pu:pp@127.0.0.1:${proxy.port}`;
  try {
    // The test proxy is right: Mosquitto's own client gets through it.
    let r = await run("mosquitto_pub", [
      "--proxy",
      url,
      "-h",
      "localhost",
      "-p",
      String(tb.port),
      "-t",
      "p/1",
      "-m",
      "via mosquitto",
      "-r",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(proxy.asked, [`localhost:${tb.port}`]);
    r = await midge([
      "pub",
      "--proxy",
      url,
      "-h",
      "localhost",
      "-p",
      String(tb.port),
      "-t",
      "p/2",
      "-m",
      "via midge",
      "-r",
      "-q",
      "1",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(proxy.asked, [`localhost:${tb.port}`, `localhost:${tb.port}`]);
    r = await midge(["sub", "-h", "127.0.0.1", "-p", String(tb.port), "-t", "p/2", "-C", "1"]);
    assert.equal(r.stdout, "via midge\n", r.stderr);
    // Wrong credentials: refused by the proxy, a clear error and exit 1.
    r = await midge([
      "pub",
      "--proxy",
      `socks5h://pu:wrong@127.0.0.1:${proxy.port}`,
      "-p",
      String(tb.port),
      "-t",
      "p/3",
      "-m",
      "x",
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /SOCKS5 proxy authentication failed/);
    // TLS inside the tunnel: the certificate is checked for the broker's name, not the proxy's.
    r = await midge([
      "pub",
      "--proxy",
      url,
      "-h",
      "localhost",
      "-p",
      String(tlsPort),
      "--cafile",
      certs.caCert,
      "-t",
      "p/4",
      "-m",
      "tls via midge",
      "-r",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(proxy.asked.at(-1), `localhost:${tlsPort}`);
    r = await midge(["sub", "-h", "127.0.0.1", "-p", String(tb.port), "-t", "p/4", "-C", "1"]);
    assert.equal(r.stdout, "tls via midge\n", r.stderr);
  } finally {
    proxy.server.close();
    await tb.stop();
    certs.cleanup();
  }
});

test("sub --random-filter prints only about that share of the messages (not counted for -C)", async () => {
  const tb = await startBroker({ allow_anonymous: true });
  try {
    const sub = midge([
      "sub",
      "-h",
      "127.0.0.1",
      "-p",
      String(tb.port),
      "-i",
      "rf",
      "-t",
      "n",
      "-q",
      "1",
      "--random-filter",
      "50",
      "-C",
      "100",
      "-W",
      "20",
    ]);
    await until(() => (tb.broker.sessions.get("rf")?.subscriptions.size ?? 0) > 0, 15000, "SUB");
    const lines = Array.from({ length: 1000 }, (_, i) => String(i)).join("\n") + "\n";
    await midge(
      ["pub", "-h", "127.0.0.1", "-p", String(tb.port), "-t", "n", "-q", "1", "-l"],
      lines,
    );
    const r = await sub;
    assert.equal(r.code, 0, r.stderr);
    const got = r.stdout.trim().split("\n").map(Number);
    assert.equal(got.length, 100);
    // With half of the messages left out, the 100th printed is far beyond the 100th sent
    // (below 120 has a chance under 1e-9 at 50%).
    assert.ok(got[99] > 120, `last printed ${got[99]}`);
    const bad = await midge(["sub", "-t", "n", "--random-filter", "150"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /Invalid random filter/);
  } finally {
    await tb.stop();
  }
});

test("--psk and --psk-identity are refused, pointing to client certificates", async () => {
  const r = await midge(["pub", "--psk", "deadbeef", "--psk-identity", "me", "-t", "t", "-m", "x"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /TLS-PSK is not available.*Bun.*Deno.*client certificates/);
});
