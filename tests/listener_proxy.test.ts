/**
 * PROXY protocol (enable_proxy_protocol): the parser on its own, then listeners behind a
 * hand-written header (TCP, TLS, WebSocket), checking that the broker sees the client the
 * header names and refuses connections without a valid header.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { connect as netConnect, type Socket } from "node:net";
import process from "node:process";
import { Duplex } from "node:stream";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { formatIPv6, parseProxyHeader, PROXY_MAX_HEADER } from "../src/transport/proxy.ts";
import { makeCerts } from "./helpers/certs.ts";
import {
  brokerWith,
  clientFrame,
  closesWithoutPacket,
  connectBytes,
  connectionOf,
  packetReader,
  upgradeRequest,
  wsResponseReader,
} from "./helpers/listeners.ts";

const certs = makeCerts();
process.on("exit", () => certs.cleanup());

const enc = (s: string) => new TextEncoder().encode(s);
const SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

/** A v2 header: command (1 PROXY, 0 LOCAL), family byte, address block and TLVs. */
function v2(cmd: number, fam: number, body: number[]): Uint8Array {
  return Uint8Array.from([...SIG, 0x20 | cmd, fam, body.length >> 8, body.length & 0xff, ...body]);
}
const be16 = (n: number) => [n >> 8, n & 0xff];
const V2_TCP4 = v2(1, 0x11, [198, 51, 100, 9, 127, 0, 0, 1, ...be16(51234), ...be16(1883)]);
const V6_SRC = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42];
const V6_DST = [...Array(15).fill(0), 1];
// With a TLV after the addresses (PP2_TYPE_AUTHORITY "example.com"), which is skipped.
const V2_TCP6_TLV = v2(1, 0x21, [
  ...V6_SRC,
  ...V6_DST,
  ...be16(65535),
  ...be16(1883),
  0x02,
  ...be16(11),
  ...enc("example.com"),
]);

test("PROXY v1: TCP4, TCP6 and UNKNOWN headers; partial input asks for more", () => {
  const h = enc("PROXY TCP4 203.0.113.7 10.0.0.1 40000 1883\r\n");
  assert.deepEqual(parseProxyHeader(h), {
    status: "ok",
    length: h.length,
    version: 1,
    source: { address: "203.0.113.7", port: 40000 },
  });
  for (let i = 0; i < h.length; i++) {
    assert.equal(parseProxyHeader(h.subarray(0, i)).status, "more", `prefix of ${i} bytes`);
  }
  const withData = Uint8Array.from([...h, 0x10, 0x00]);
  assert.equal((parseProxyHeader(withData) as { length: number }).length, h.length);
  const six = parseProxyHeader(enc("PROXY TCP6 2001:db8::7 ::1 1 2\r\n"));
  assert.deepEqual(six.status === "ok" && six.source, { address: "2001:db8::7", port: 1 });
  const unknown = parseProxyHeader(enc("PROXY UNKNOWN whatever\r\n"));
  assert.deepEqual(unknown, { status: "ok", length: 24, version: 1 });
});

test("PROXY v1: malformed headers are errors", () => {
  const bad = [
    "PROXY TCP4 203.0.113.7 10.0.0.1 40000\r\n",
    "PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n",
    "PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n",
    "PROXY TCP4 2001:db8::1 1.2.3.4 1 2\r\n",
    "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
    "PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n",
    "PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n",
    "PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n",
    "GET / HTTP/1.1\r\n",
    "\x10\x0c\x00\x04MQTT",
  ];
  for (const s of bad) assert.equal(parseProxyHeader(enc(s)).status, "error", JSON.stringify(s));
  const long = enc("PROXY TCP4 " + "1".repeat(120));
  assert.equal(parseProxyHeader(long).status, "error", "no CRLF within 107 bytes");
  assert.equal(parseProxyHeader(enc("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\r\n"), 2).status, "error");
});

test("PROXY v2: IPv4, IPv6 with TLVs, LOCAL and UNSPEC; limits", () => {
  assert.deepEqual(parseProxyHeader(V2_TCP4), {
    status: "ok",
    length: 28,
    version: 2,
    source: { address: "198.51.100.9", port: 51234 },
  });
  for (let i = 0; i < V2_TCP4.length; i++) {
    assert.equal(parseProxyHeader(V2_TCP4.subarray(0, i)).status, "more", `prefix of ${i}`);
  }
  const six = parseProxyHeader(V2_TCP6_TLV);
  assert.deepEqual(six, {
    status: "ok",
    length: V2_TCP6_TLV.length,
    version: 2,
    source: { address: "2001:db8::42", port: 65535 },
  });
  assert.deepEqual(parseProxyHeader(v2(0, 0x11, [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2])), {
    status: "ok",
    length: 28,
    version: 2,
  });
  assert.deepEqual(parseProxyHeader(v2(1, 0x00, [])), { status: "ok", length: 16, version: 2 });
  assert.equal(parseProxyHeader(V2_TCP4, 1).status, "error", "v1 only");
  const wrongVersion = Uint8Array.from(V2_TCP4);
  wrongVersion[12] = 0x11;
  assert.equal(parseProxyHeader(wrongVersion).status, "error");
  assert.equal(parseProxyHeader(v2(1, 0x11, [1, 2, 3])).status, "error", "short IPv4 block");
  assert.equal(parseProxyHeader(v2(1, 0x41, [])).status, "error", "unknown family");
  const huge = Uint8Array.from([...SIG, 0x21, 0x11, 0xff, 0xff]);
  assert.equal(parseProxyHeader(huge).status, "error", `over ${PROXY_MAX_HEADER} bytes`);
});

test("IPv6 text form follows RFC 5952", () => {
  const b = (...g: number[]) => Uint8Array.from(g.flatMap((x) => [x >> 8, x & 0xff]));
  assert.equal(formatIPv6(b(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)), "2001:db8::1");
  assert.equal(formatIPv6(b(0, 0, 0, 0, 0, 0, 0, 1)), "::1");
  assert.equal(formatIPv6(b(0, 0, 0, 0, 0, 0, 0, 0)), "::");
  assert.equal(formatIPv6(b(1, 0, 0, 1, 0, 0, 0, 1)), "1:0:0:1::1");
  assert.equal(formatIPv6(b(1, 0, 1, 1, 1, 1, 1, 1)), "1:0:1:1:1:1:1:1", "no :: for one group");
  assert.equal(formatIPv6(b(0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0201)), "::ffff:192.0.2.1");
});

function tcp(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ port, host: "127.0.0.1" }, () => resolve(s));
    s.once("error", reject);
  });
}

test("PROXY v1 and v2 before CONNECT: the broker sees the client the header names", async () => {
  const tb = await brokerWith([{ enable_proxy_protocol: true }]);
  try {
    const a = await tcp(tb.ports[0]);
    const ra = packetReader(a);
    a.write(
      Buffer.concat([enc("PROXY TCP4 203.0.113.7 10.0.0.1 40000 1883\r\n"), connectBytes("v1")]),
    );
    assert.equal((await ra.next("connack")).returnCode, 0);
    const ca = await connectionOf(tb, "v1");
    assert.equal(ca.socket.remoteAddress, "203.0.113.7");
    assert.equal(ca.socket.remotePort, 40000);

    // v2 with IPv6 and a TLV, the header split over two writes.
    const b = await tcp(tb.ports[0]);
    const rb = packetReader(b);
    b.write(V2_TCP6_TLV.subarray(0, 10));
    await new Promise((r) => setTimeout(r, 20));
    b.write(Buffer.concat([V2_TCP6_TLV.subarray(10), connectBytes("v2")]));
    assert.equal((await rb.next("connack")).returnCode, 0);
    const cb = await connectionOf(tb, "v2");
    assert.equal(cb.socket.remoteAddress, "2001:db8::42");
    assert.equal(cb.socket.remotePort, 65535);

    // LOCAL (a health check of the proxy itself): the socket's own address stands.
    const c = await tcp(tb.ports[0]);
    const rc = packetReader(c);
    c.write(Buffer.concat([v2(0, 0x00, []), connectBytes("local")]));
    assert.equal((await rc.next("connack")).returnCode, 0);
    const cl = await connectionOf(tb, "local");
    assert.equal(cl.socket.remoteAddress.replace(/^::ffff:/, ""), "127.0.0.1");
    for (const s of [a, b, c]) s.destroy();
  } finally {
    await tb.stop();
  }
});

test("a listener expecting PROXY closes connections without a valid header, or of the wrong version", async () => {
  const tb = await brokerWith([{ enable_proxy_protocol: true }, { enable_proxy_protocol: 1 }], {
    connect_timeout: 1,
  });
  try {
    const plain = await tcp(tb.ports[0]);
    const r1 = packetReader(plain);
    plain.write(connectBytes("no-header"));
    assert.equal(await closesWithoutPacket(r1), true, "CONNECT without a header");

    const v2on1 = await tcp(tb.ports[1]);
    const r2 = packetReader(v2on1);
    v2on1.write(Buffer.concat([V2_TCP4, connectBytes("v2-on-v1")]));
    assert.equal(await closesWithoutPacket(r2), true, "v2 header on a v1-only listener");

    const stalled = await tcp(tb.ports[0]);
    const r3 = packetReader(stalled);
    stalled.write("PROXY TCP4 ");
    assert.equal(await closesWithoutPacket(r3, 5000), true, "a header never finished");

    const v1 = await tcp(tb.ports[1]);
    const r4 = packetReader(v1);
    v1.write(Buffer.concat([enc("PROXY TCP4 192.0.2.1 10.0.0.1 5 6\r\n"), connectBytes("v1-ok")]));
    assert.equal((await r4.next("connack")).returnCode, 0);
    v1.destroy();
  } finally {
    await tb.stop();
  }
});

/** A TLS client whose first bytes on the wire are `header` (as a proxy in TCP mode sends). */
function tlsBehindProxy(
  port: number,
  header: Uint8Array,
  extra: { cert?: string; key?: string } = {},
): Promise<{ tls: TLSSocket; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const raw = netConnect({ port, host: "127.0.0.1" }, () => {
      let first = true;
      const wire = new Duplex({
        read() {},
        write(chunk, _enc, cb) {
          raw.write(first ? Buffer.concat([header, chunk]) : chunk, cb);
          first = false;
        },
        final(cb) {
          raw.end();
          cb();
        },
        destroy(err, cb) {
          raw.destroy();
          cb(err);
        },
      });
      raw.on("data", (d: Buffer) => wire.push(d));
      raw.on("end", () => wire.push(null));
      const closed = new Promise<void>((r) => raw.once("close", () => r()));
      const t = tlsConnect({
        socket: wire,
        servername: "localhost",
        ca: certs.read(certs.caCert),
        ...extra,
      });
      t.once("secureConnect", () => resolve({ tls: t, closed }));
      t.once("error", reject);
    });
    raw.once("error", reject);
  });
}

test("PROXY then TLS: the header comes before the handshake; certificates still checked", async () => {
  const tb = await brokerWith([{
    enable_proxy_protocol: 2,
    certfile: certs.serverCert,
    keyfile: certs.serverKey,
    cafile: certs.caCert,
    use_identity_as_username: true,
  }]);
  try {
    const { tls } = await tlsBehindProxy(tb.ports[0], V2_TCP4, {
      cert: certs.read(certs.clientCert),
      key: certs.read(certs.clientKey),
    });
    assert.equal(tls.getPeerCertificate().subject.CN, "localhost");
    const r = packetReader(tls);
    tls.write(connectBytes("proxied-tls"));
    assert.equal((await r.next("connack")).returnCode, 0);
    const conn = await connectionOf(tb, "proxied-tls");
    assert.equal(conn.socket.remoteAddress, "198.51.100.9");
    assert.equal(conn.socket.protocol, "mqtts");
    assert.equal(conn.username, "alice");
    tls.destroy();

    // Without a client certificate the handshake (or the connection right after it) fails.
    const refused = await tlsBehindProxy(tb.ports[0], V2_TCP4).then(
      async ({ tls, closed }) => {
        const r2 = packetReader(tls);
        tls.write(connectBytes("no-cert"));
        await closed;
        return r2.packets.length === 0;
      },
      () => true,
    );
    assert.equal(refused, true);
  } finally {
    await tb.stop();
  }
});

test("PROXY then a WebSocket upgrade: the broker sees the proxied client", async () => {
  const tb = await brokerWith([{ protocol: "websockets", enable_proxy_protocol: true }]);
  try {
    const sock = await tcp(tb.ports[0]);
    const packets = packetReader(sock, 4, false);
    const frames = wsResponseReader(sock, (p) => packets.feed(p));
    const req = upgradeRequest("/mqtt", { protocol: "mqtt" });
    sock.write(Buffer.concat([enc("PROXY TCP6 2001:db8::5 ::1 4242 80\r\n"), req.bytes]));
    assert.match(await frames.status, /^HTTP\/1\.1 101 /);
    sock.write(clientFrame(connectBytes("proxied-ws")));
    assert.equal((await packets.next("connack")).returnCode, 0);
    const conn = await connectionOf(tb, "proxied-ws");
    assert.equal(conn.socket.remoteAddress, "2001:db8::5");
    assert.equal(conn.socket.remotePort, 4242);
    assert.equal(conn.socket.protocol, "ws");
    sock.destroy();

    const direct = await tcp(tb.ports[0]);
    const d = wsResponseReader(direct, () => {});
    direct.write(upgradeRequest("/mqtt", { protocol: "mqtt" }).bytes);
    assert.equal(await d.status, "", "an upgrade without the header is closed unanswered");
  } finally {
    await tb.stop();
  }
});
