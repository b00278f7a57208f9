/**
 * TLS listeners (certfile/keyfile, node:tls on Deno and on Bun): server-only TLS, mutual TLS,
 * user names from client certificates, CRLs, the lowest TLS version, and reloading the
 * certificate (SIGHUP) while clients stay connected. Certificates are made by `openssl` for
 * each run (tests/helpers/certs.ts).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import mqtt, { type IClientOptions } from "mqtt";
import { endAll } from "./helpers/broker.ts";
import { makeCerts } from "./helpers/certs.ts";
import { brokerWith, connectionOf, mqttJsOutcome } from "./helpers/listeners.ts";
import {
  certInfo,
  commonName,
  pemBlocks,
  RevocationList,
  subjectRfc2253,
} from "../src/transport/x509.ts";

const certs = makeCerts();
process.on("exit", () => certs.cleanup());
const ca = certs.read(certs.caCert);
const server = { certfile: certs.serverCert, keyfile: certs.serverKey };
const mutual = { ...server, cafile: certs.caCert, require_certificate: true };
const alice = { cert: certs.read(certs.clientCert), key: certs.read(certs.clientKey) };

function url(port: number): string {
  return `mqtts://127.0.0.1:${port}`;
}

function opts(extra: IClientOptions = {}): IClientOptions {
  return { reconnectPeriod: 0, connectTimeout: 5000, ca, ...extra };
}

/** The CN of the certificate the broker showed this client. */
function servedCN(client: mqtt.MqttClient): string {
  return (client.stream as unknown as TLSSocket).getPeerCertificate().subject.CN as string;
}

test("TLS: MQTT.js over mqtts:// with the test CA; without the CA it refuses the broker", async () => {
  const tb = await brokerWith([server]);
  try {
    const c = await mqtt.connectAsync(url(tb.ports[0]), opts({ clientId: "tls-1" }));
    assert.equal(servedCN(c), "localhost");
    await c.subscribeAsync("tls/t");
    const got = new Promise<string>((r) => c.once("message", (_t, p) => r(p.toString())));
    await c.publishAsync("tls/t", "encrypted");
    assert.equal(await got, "encrypted");
    const conn = await connectionOf(tb, "tls-1");
    assert.equal(conn.socket.protocol, "mqtts");
    assert.equal(conn.socket.certUsername, undefined);
    await endAll(c);
    assert.equal(await mqttJsOutcome(url(tb.ports[0]), { ca: undefined }), "refused");
    // A plain MQTT client on the TLS port gets no CONNACK.
    assert.equal(await mqttJsOutcome(`mqtt://127.0.0.1:${tb.ports[0]}`, {}, 3000), "refused");
  } finally {
    await tb.stop();
  }
});

test("require_certificate: no certificate or a foreign one is refused, a CA-signed one accepted", async () => {
  const tb = await brokerWith([mutual]);
  try {
    const u = url(tb.ports[0]);
    assert.equal(await mqttJsOutcome(u, opts()), "refused", "no client certificate");
    assert.equal(
      await mqttJsOutcome(
        u,
        opts({
          cert: certs.read(certs.foreignCert),
          key: certs.read(certs.foreignKey),
        }),
      ),
      "refused",
      "a certificate no configured CA signed",
    );
    const c = await mqtt.connectAsync(u, opts({ ...alice, clientId: "mtls", username: "bob" }));
    const conn = await connectionOf(tb, "mtls");
    assert.equal(conn.username, "bob", "without use_identity_as_username the CONNECT name stays");
    await endAll(c);
  } finally {
    await tb.stop();
  }
});

test("use_identity_as_username: the certificate's CN replaces the CONNECT user name and password", async () => {
  // A password file that knows neither alice nor the password sent: the certificate decides.
  const pw = join(certs.dir, "passwd");
  writeFileSync(
    pw,
    "test:$6$njERlZMi/7DzNB9E$iiavfuXvUm8iyDZArTy7smTxh07GXXOrOsqxfW6gkOYVXHGk+W+i/8d3xDxrMwEPygEBhoA8A/gjQC0N2M4Lkw==\n",
  );
  const tb = await brokerWith(
    [{ ...server, cafile: certs.caCert, use_identity_as_username: true }],
    { password_file: pw, allow_anonymous: false },
  );
  try {
    const u = url(tb.ports[0]);
    const c = await mqtt.connectAsync(
      u,
      opts({ ...alice, clientId: "id-1", username: "test", password: "wrong" }),
    );
    const conn = await connectionOf(tb, "id-1");
    assert.equal(conn.username, "alice");
    assert.equal(conn.socket.certUsername, "alice");
    await endAll(c);
    const anon = await mqtt.connectAsync(u, opts({ ...alice, clientId: "id-2" }));
    assert.equal((await connectionOf(tb, "id-2")).username, "alice");
    await endAll(anon);
    assert.equal(
      await mqttJsOutcome(u, opts({ username: "test", password: "test" })),
      "refused",
      "use_identity_as_username implies a client certificate",
    );
  } finally {
    await tb.stop();
  }
});

test("use_subject_as_username: the subject as openssl -nameopt RFC2253 prints it", async () => {
  const odd = certs.client("odd", "/C=DE/O=Midge\\, Test+OU=R&D/CN=Zoë <x>; #y \\\\z ");
  const tb = await brokerWith([{ ...server, cafile: certs.caCert, use_subject_as_username: true }]);
  try {
    for (
      const [cert, key, id] of [
        [certs.clientCert, certs.clientKey, "subj-1"],
        [odd.cert, odd.key, "subj-2"],
      ]
    ) {
      const expected = execFileSync("openssl", [
        "x509",
        "-in",
        cert,
        "-noout",
        "-subject",
        "-nameopt",
        "RFC2253",
      ]).toString().trim().replace(/^subject=/, "");
      const c = await mqtt.connectAsync(
        url(tb.ports[0]),
        opts({ cert: certs.read(cert), key: certs.read(key), clientId: id }),
      );
      assert.equal((await connectionOf(tb, id)).username, expected);
      await endAll(c);
    }
  } finally {
    await tb.stop();
  }
});

test("crlfile: a revoked client certificate is refused, others are not", async () => {
  const tb = await brokerWith([{ ...mutual, crlfile: certs.crl }]);
  try {
    const u = url(tb.ports[0]);
    assert.equal(
      await mqttJsOutcome(
        u,
        opts({
          cert: certs.read(certs.revokedCert),
          key: certs.read(certs.revokedKey),
        }),
      ),
      "refused",
    );
    assert.equal(await mqttJsOutcome(u, opts(alice)), "connected");
  } finally {
    await tb.stop();
  }
});

test("tls_version = tlsv1.3 refuses a TLS 1.2-only client", async () => {
  const tb = await brokerWith([{ ...server, tls_version: "tlsv1.3" }, server]);
  try {
    const attempt = (port: number) =>
      new Promise<string>((resolve) => {
        const s = tlsConnect({
          port,
          host: "127.0.0.1",
          servername: "localhost",
          ca,
          maxVersion: "TLSv1.2",
        });
        s.once("secureConnect", () => {
          resolve(s.getProtocol() ?? "?");
          s.destroy();
        });
        s.once("error", () => resolve("refused"));
      });
    assert.equal(await attempt(tb.ports[0]), "refused");
    assert.equal(await attempt(tb.ports[1]), "TLSv1.2", "tlsv1.2 (the default) still takes 1.2");
  } finally {
    await tb.stop();
  }
});

test("reload (SIGHUP): new connections get the new certificate, connected clients stay", async () => {
  const live = { certfile: join(certs.dir, "live.crt"), keyfile: join(certs.dir, "live.key") };
  copyFileSync(certs.serverCert, live.certfile);
  copyFileSync(certs.serverKey, live.keyfile);
  const tb = await brokerWith([live]);
  try {
    const u = url(tb.ports[0]);
    const old = await mqtt.connectAsync(u, opts({ clientId: "before" }));
    assert.equal(servedCN(old), "localhost");
    await old.subscribeAsync("reload/t", { qos: 1 });

    copyFileSync(certs.server2Cert, live.certfile);
    copyFileSync(certs.server2Key, live.keyfile);
    await tb.broker.reload();
    const fresh = await mqtt.connectAsync(u, opts({ clientId: "after" }));
    assert.equal(servedCN(fresh), "localhost-2");

    // The connection made before the reload still works both ways.
    const got = new Promise<string>((r) => old.once("message", (_t, p) => r(p.toString())));
    await fresh.publishAsync("reload/t", "still here", { qos: 1 });
    assert.equal(await got, "still here");
    assert.ok(old.connected);

    // A broken file, or a key of another certificate, keeps the certificate in force.
    writeFileSync(live.keyfile, "not a key");
    await tb.broker.reload();
    copyFileSync(certs.serverKey, live.keyfile);
    await tb.broker.reload();
    const third = await mqtt.connectAsync(u, opts({ clientId: "third" }));
    assert.equal(servedCN(third), "localhost-2");
    await endAll(old, fresh, third);
  } finally {
    await tb.stop();
  }
});

test("x509: serial, issuer, common name and subject read from DER; CRL entries by issuer", () => {
  const der = (path: string) => pemBlocks(readFileSync(path, "utf8"), "CERTIFICATE")[0];
  const a = certInfo(der(certs.clientCert));
  assert.equal(a.serial, "2001");
  assert.equal(commonName(a), "alice");
  assert.equal(subjectRfc2253(a), "CN=alice,O=Midge Test");
  assert.deepEqual(a.subject, [[["O", "Midge Test"]], [["CN", "alice"]]]);
  const m = certInfo(der(certs.revokedCert));
  assert.equal(a.issuer, m.issuer, "both signed by the test CA");
  const crl = new RevocationList(readFileSync(certs.crl));
  assert.equal(crl.count, 1);
  assert.equal(crl.revoked(m), true);
  assert.equal(crl.revoked(a), false);
  // Same serial from another issuer is not revoked.
  assert.equal(crl.revoked({ ...m, issuer: certInfo(der(certs.foreignCert)).issuer }), false);
  assert.throws(() => new RevocationList(new TextEncoder().encode("garbage")), /no CRL|malformed/);
});

test("listener files that cannot be read or do not match stop the start, naming the file", async () => {
  await assert.rejects(
    brokerWith([{ certfile: join(certs.dir, "missing.crt"), keyfile: certs.serverKey }]),
    /cannot read certfile .*missing\.crt/,
  );
  await assert.rejects(
    brokerWith([{ certfile: certs.serverCert, keyfile: certs.server2Key }]),
    /keyfile .*server2\.key does not belong to certfile/,
  );
  await assert.rejects(
    brokerWith([{ ...mutual, crlfile: certs.caCert }]),
    /crlfile .*: no CRL found/,
  );
});
