/**
 * Test certificates made at test time with the `openssl` command: a CA, server certificates for
 * localhost / 127.0.0.1 signed by it (Deno refuses a self-signed CA certificate used as a server
 * certificate), client certificates, and a CRL revoking one of them.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Paths of the generated PEM files (and their contents, for clients). */
export interface TestCerts {
  dir: string;
  /** CA certificate (PEM path) that signed everything below. */
  caCert: string;
  caKey: string;
  /** Server certificate for CN=localhost, SAN localhost and 127.0.0.1. */
  serverCert: string;
  serverKey: string;
  /** A second server certificate (CN=localhost-2, same SANs), for reload tests. */
  server2Cert: string;
  server2Key: string;
  /** Client certificate CN=alice, O=Midge Test. */
  clientCert: string;
  clientKey: string;
  /** Client certificate CN=mallory, revoked in `crl`. */
  revokedCert: string;
  revokedKey: string;
  /** A self-signed client certificate (CN=stranger) that no configured CA signed. */
  foreignCert: string;
  foreignKey: string;
  /** A certificate revocation list from the CA revoking mallory's certificate. */
  crl: string;
  /**
   * Another client certificate signed by the CA, for subject `subj` (openssl -subj syntax,
   * UTF-8 allowed); returns its certificate and key paths.
   */
  client(name: string, subj: string): { cert: string; key: string };
  /** Read a file (PEM text). */
  read(path: string): string;
  /** Remove the directory. */
  cleanup(): void;
}

function openssl(dir: string, ...args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
}

const CA_CONF = `[ca]
default_ca = test_ca
[test_ca]
dir = .
database = index.txt
new_certs_dir = .
serial = serial
crlnumber = crlnumber
default_md = sha256
default_days = 2
default_crl_days = 2
policy = anything
[anything]
commonName = supplied
organizationName = optional
`;

/** Generate a fresh set of certificates in a temporary directory (takes well under a second). */
export function makeCerts(): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), "midge-certs-"));
  const p = (f: string) => join(dir, f);
  openssl(dir, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key");
  openssl(
    dir,
    "req",
    "-x509",
    "-new",
    "-key",
    "ca.key",
    "-sha256",
    "-days",
    "2",
    "-subj",
    "/CN=Midge Test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
    "-out",
    "ca.crt",
  );
  const leaf = (name: string, subj: string, ext: string, serial: string) => {
    openssl(dir, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${name}.key`);
    openssl(
      dir,
      "req",
      "-new",
      "-utf8",
      "-key",
      `${name}.key`,
      "-subj",
      subj,
      "-out",
      `${name}.csr`,
    );
    writeFileSync(p(`${name}.ext`), ext);
    openssl(
      dir,
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-set_serial",
      serial,
      "-days",
      "2",
      "-sha256",
      "-extfile",
      `${name}.ext`,
      "-out",
      `${name}.crt`,
    );
  };
  const serverExt = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n" +
    "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n";
  const clientExt = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n" +
    "extendedKeyUsage=clientAuth\n";
  leaf("server", "/CN=localhost", serverExt, "0x1001");
  leaf("server2", "/CN=localhost-2", serverExt, "0x1002");
  leaf("client", "/O=Midge Test/CN=alice", clientExt, "0x2001");
  leaf("revoked", "/O=Midge Test/CN=mallory", clientExt, "0x2002");
  openssl(
    dir,
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    "foreign.key",
    "-out",
    "foreign.crt",
    "-subj",
    "/CN=stranger",
    "-days",
    "2",
    "-addext",
    "extendedKeyUsage=clientAuth",
  );
  let serial = 0x2100;

  // A CRL revoking mallory, via `openssl ca` and a minimal CA database.
  writeFileSync(p("ca.conf"), CA_CONF);
  writeFileSync(p("index.txt"), "");
  writeFileSync(p("crlnumber"), "01\n");
  writeFileSync(p("serial"), "3001\n");
  openssl(
    dir,
    "ca",
    "-config",
    "ca.conf",
    "-keyfile",
    "ca.key",
    "-cert",
    "ca.crt",
    "-revoke",
    "revoked.crt",
  );
  openssl(
    dir,
    "ca",
    "-config",
    "ca.conf",
    "-keyfile",
    "ca.key",
    "-cert",
    "ca.crt",
    "-gencrl",
    "-out",
    "ca.crl",
  );

  return {
    dir,
    caCert: p("ca.crt"),
    caKey: p("ca.key"),
    serverCert: p("server.crt"),
    serverKey: p("server.key"),
    server2Cert: p("server2.crt"),
    server2Key: p("server2.key"),
    clientCert: p("client.crt"),
    clientKey: p("client.key"),
    revokedCert: p("revoked.crt"),
    revokedKey: p("revoked.key"),
    foreignCert: p("foreign.crt"),
    foreignKey: p("foreign.key"),
    crl: p("ca.crl"),
    client(name, subj) {
      leaf(name, subj, clientExt, `0x${(serial++).toString(16)}`);
      return { cert: p(`${name}.crt`), key: p(`${name}.key`) };
    },
    read: (path) => readFileSync(path, "utf8"),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
