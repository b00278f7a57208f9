/**
 * The client's transports: TLS (CA file, client certificate, --insecure host-name check) and
 * WebSockets (ws://, wss://, subprotocol "mqtt", binary frames), each through a small proxy in
 * front of the broker (node:tls, and the `ws` package as an independent WebSocket server).
 * Certificates are made with `openssl` at test time.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { connect as netConnect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import { type WebSocket, WebSocketServer } from "ws";
import {
  ConnectError,
  MqttClient,
  parseServerUrl,
  type ServerAddress,
} from "../src/client/client.ts";
import type { PublishPacket } from "../src/codec/types.ts";
import { startBroker, type TestBroker } from "./helpers/broker.ts";

const dir = mkdtempSync(join(tmpdir(), "midge-client-tls-"));
const pem = (name: string) => readFileSync(join(dir, name), "utf8");
let tb: TestBroker;
const closers: (() => Promise<void> | void)[] = [];

function openssl(...args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
}

/** CA; server cert for localhost/127.0.0.1; server cert for another name; client cert. */
function makeCerts(): void {
  openssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=Midge Test CA",
  );
  const leaf = (name: string, cn: string, san: string) => {
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${san}\n`);
    openssl(
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      `/CN=${cn}`,
    );
    openssl(
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      "2",
      "-extfile",
      `${name}.ext`,
    );
  };
  leaf("server", "localhost", "DNS:localhost,IP:127.0.0.1");
  leaf("other", "other.example", "DNS:other.example");
  leaf("client", "alice", "DNS:alice");
}

/** Pipes an accepted stream to the broker's TCP port. */
function pipeToBroker(s: Socket | TLSSocket): void {
  const up = netConnect(tb.port, "127.0.0.1");
  s.pipe(up).pipe(s);
  s.on("error", () => up.destroy());
  up.on("error", () => s.destroy());
  s.on("close", () => up.destroy());
  up.on("close", () => s.destroy());
}

function listen(server: {
  listen(port: number, host: string, cb: () => void): unknown;
  address(): unknown;
}) {
  return new Promise<number>((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve((server.address() as { port: number }).port))
  );
}

/** A WebSocket endpoint (upgrade on any path, subprotocol mqtt) bridged to the broker. */
function wsBridge(server: HttpServer, seen: { protocol?: string; path?: string }): WebSocketServer {
  const wss = new WebSocketServer({ noServer: true });
  server.on("upgrade", (req, socket, head) => {
    seen.path = req.url;
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      seen.protocol = ws.protocol;
      const up = netConnect(tb.port, "127.0.0.1");
      up.on("data", (d) => ws.send(d));
      ws.on("message", (d: Uint8Array) => up.write(d));
      ws.on("close", () => up.destroy());
      up.on("close", () => ws.close());
      up.on("error", () => ws.close());
    });
  });
  return wss;
}

let tlsPort = 0;
let tlsOtherPort = 0;
let tlsClientAuthPort = 0;
let wsPort = 0;
let wssPort = 0;
const wsSeen: { protocol?: string; path?: string } = {};
const wssSeen: { protocol?: string; path?: string } = {};

before(async () => {
  makeCerts();
  tb = await startBroker();
  const tls1 = createTlsServer({ cert: pem("server.pem"), key: pem("server.key") }, pipeToBroker);
  tlsPort = await listen(tls1);
  const tls2 = createTlsServer({ cert: pem("other.pem"), key: pem("other.key") }, pipeToBroker);
  tlsOtherPort = await listen(tls2);
  const tls3 = createTlsServer({
    cert: pem("server.pem"),
    key: pem("server.key"),
    ca: pem("ca.pem"),
    requestCert: true,
    rejectUnauthorized: true,
  }, pipeToBroker);
  tlsClientAuthPort = await listen(tls3);
  const http = createHttpServer();
  const wss1 = wsBridge(http, wsSeen);
  wsPort = await listen(http);
  const https = createHttpsServer({ cert: pem("server.pem"), key: pem("server.key") });
  const wss2 = wsBridge(https as unknown as HttpServer, wssSeen);
  wssPort = await listen(https);
  closers.push(() => {
    for (const s of [tls1, tls2, tls3]) s.close();
    wss1.close();
    wss2.close();
    http.closeAllConnections?.();
    https.closeAllConnections?.();
    http.close();
    https.close();
  });
});

after(async () => {
  for (const c of closers) await c();
  await tb.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Connects over `server`, subscribes, publishes to itself at QoS 1 and returns the payload. */
async function roundTrip(server: ServerAddress, extra = {}): Promise<string> {
  const c = await MqttClient.connect({ servers: [server], connectTimeout: 5000, ...extra });
  try {
    const got = new Promise<PublishPacket>((r) => c.once("message", r));
    await c.subscribe([{ topic: "tr/echo", qos: 1 }]);
    // A payload larger than one WebSocket frame header's short forms (> 65535 bytes).
    const big = "x".repeat(70000);
    await c.publish("tr/echo", big, { qos: 1 });
    const p = await got;
    assert.equal(p.payload.length, big.length);
    return server.protocol;
  } finally {
    await c.end();
  }
}

test("mqtts:// with --cafile: the CA and the host name are checked", async () => {
  const server: ServerAddress = { protocol: "mqtts", host: "localhost", port: tlsPort };
  assert.equal(await roundTrip(server, { tls: { ca: pem("ca.pem") } }), "mqtts");
  // Without the CA the self-made certificate is refused.
  await assert.rejects(
    MqttClient.connect({ servers: [server], connectTimeout: 5000 }),
    (e: unknown) => e instanceof ConnectError,
  );
});

test("--insecure skips only the host-name check (the CA chain is still checked)", async () => {
  const server: ServerAddress = { protocol: "mqtts", host: "127.0.0.1", port: tlsOtherPort };
  await assert.rejects(
    MqttClient.connect({ servers: [server], connectTimeout: 5000, tls: { ca: pem("ca.pem") } }),
    (e: unknown) => e instanceof ConnectError,
  );
  assert.equal(
    await roundTrip(server, { tls: { ca: pem("ca.pem"), insecure: true } }),
    "mqtts",
  );
});

test("--cert/--key: a client certificate for a server that requires one", async () => {
  const server: ServerAddress = { protocol: "mqtts", host: "localhost", port: tlsClientAuthPort };
  assert.equal(
    await roundTrip(server, {
      tls: { ca: pem("ca.pem"), cert: pem("client.pem"), key: pem("client.key") },
    }),
    "mqtts",
  );
});

test("ws:// speaks MQTT in binary frames with subprotocol mqtt on the URL's path", async () => {
  const server = parseServerUrl(`ws://127.0.0.1:${wsPort}/mqtt-path`);
  assert.equal(await roundTrip(server), "ws");
  assert.equal(wsSeen.protocol, "mqtt");
  assert.equal(wsSeen.path, "/mqtt-path");
});

test("wss:// with --cafile", async () => {
  const server = parseServerUrl(`wss://localhost:${wssPort}`);
  assert.equal(server.path, "/mqtt");
  assert.equal(await roundTrip(server, { tls: { ca: pem("ca.pem") } }), "wss");
  assert.equal(wssSeen.protocol, "mqtt");
});

test("parseServerUrl: schemes, default ports, credentials, topic, IPv6", () => {
  assert.deepEqual(parseServerUrl("mqtt://u:p%40ss@example.com/a/b"), {
    protocol: "mqtt",
    host: "example.com",
    port: 1883,
    username: "u",
    password: "p@ss",
    topic: "a/b",
  });
  assert.equal(parseServerUrl("mqtts://h").port, 8883);
  assert.equal(parseServerUrl("ws://h").port, 80);
  assert.equal(parseServerUrl("wss://h:9443/x").path, "/x");
  assert.deepEqual(parseServerUrl("mqtt://[::1]:1884"), {
    protocol: "mqtt",
    host: "::1",
    port: 1884,
  });
  assert.throws(() => parseServerUrl("http://h"), /unsupported URL scheme/);
  assert.throws(() => parseServerUrl("not a url"), /invalid URL/);
});
