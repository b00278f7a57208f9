/**
 * The files a configuration names, opened and parsed as the broker would: certificates, keys
 * (and that each key is its certificate's), CA files and CRLs of listeners, bridges, the HTTP
 * listener and the cluster's NATS connection; password_file and acl_file (every problem in them),
 * dynamic security's file, and the JWT keys and HTTP auth CA of the links a chain uses; the persistence directory (writable) and an existing database
 * (every table read); log files and Unix socket directories (writable). `midge serve --test-config` reports what this finds,
 * and `midge serve` refuses to start on the same findings with the same lines.
 */
import { accessSync, constants, readFileSync, statSync } from "node:fs";
import { createPrivateKey, createPublicKey, type KeyObject, X509Certificate } from "node:crypto";
import { dirname, join, resolve } from "node:path";
import { parsePasswordFile } from "../auth/password.ts";
import { parseAcl } from "../auth/acl.ts";
import { parseDynsec } from "../auth/dynsec/model.ts";
import type { Config } from "../config/schema.ts";
import { ConfigError } from "../config/load.ts";
import { formatMessage, mosquittoSource } from "../config/mosquitto_conf.ts";
import { pemBlocks, RevocationList } from "../transport/x509.ts";
import { SqliteStore, StoreError } from "../store/sqlite.ts";

/** What to check beyond the files themselves. */
export interface CheckOptions {
  /**
   * Read every row of an existing persistence database (default true). `serve` leaves this to
   * the store it opens next, which fails with the same line.
   */
  readStore?: boolean;
}

/**
 * Checks every file `config` names. Returns one line per problem (empty when all is well); each
 * names the file at fault and, for a file named by a key, the configuration file and key.
 */
export function checkFiles(config: Config, opts: CheckOptions = {}): string[] {
  const out: string[] = [];
  /**
   * A problem with the file named by `key`: `config.toml: key "k": problem`, or for a
   * mosquitto.conf `mosquitto.conf:12: option: problem` at the line that named the file.
   */
  const bad = (key: string, problem: string) => {
    const at = mosquittoSource(config, key);
    if (at) out.push(formatMessage({ ...at, message: `${key.replace(/^.*\./, "")}: ${problem}` }));
    else out.push(new ConfigError(config.file, 0, key, problem).message);
  };

  /** A certificate and its key, each set or not: both read, and paired when both are. */
  const pair = (certKey: string, cert: string, keyKey: string, key: string) => {
    const c = cert ? readCert(cert, certKey, bad) : null;
    const k = key ? readKey(key, keyKey, bad) : null;
    if (c && k && !c.checkPrivateKey(k)) {
      bad(keyKey, `${key} is not the private key of ${certKey.replace(/^.*\./, "")} ${cert}`);
    }
  };

  config.listeners.forEach((l, i) => {
    const at = `listener[${i}].`;
    if (l.certfile) {
      pair(at + "certfile", l.certfile, at + "keyfile", l.keyfile);
      if (l.cafile) readCerts(l.cafile, at + "cafile", bad);
      if (l.crlfile) {
        const data = readBytes(l.crlfile, at + "crlfile", bad);
        if (data) {
          try {
            new RevocationList(data);
          } catch (e) {
            bad(at + "crlfile", `${l.crlfile}: not a certificate revocation list (${msg(e)})`);
          }
        }
      }
    }
    if (l.unix_socket) writableDir(dirname(resolve(l.unix_socket)), at + "unix_socket", bad);
  });

  (config.bridges ?? []).forEach((b, i) => {
    const at = `bridge[${i}].`;
    if (b.bridge_cafile) readCerts(b.bridge_cafile, at + "bridge_cafile", bad);
    pair(at + "bridge_certfile", b.bridge_certfile, at + "bridge_keyfile", b.bridge_keyfile);
  });

  pair("http_certfile", config.http_certfile, "http_keyfile", config.http_keyfile);
  const cluster = config.cluster;
  if (cluster) {
    if (cluster.tls_ca) readCerts(cluster.tls_ca, "cluster.tls_ca", bad);
    pair("cluster.tls_cert", cluster.tls_cert, "cluster.tls_key", cluster.tls_key);
    if (cluster.creds_file) readText(cluster.creds_file, "cluster.creds_file", bad);
  }

  // The top-level files, and each listener's own with per_listener_settings (each file once).
  const security: [string, string, string][] = [
    ["password_file", config.password_file, "password_file"],
    ["acl_file", config.acl_file, "acl_file"],
  ];
  if (config.per_listener_settings) {
    config.listeners.forEach((l, i) => {
      security.push(["password_file", l.password_file, `listener[${i}].password_file`]);
      security.push(["acl_file", l.acl_file, `listener[${i}].acl_file`]);
    });
  }
  const seen = new Set<string>();
  for (const [kind, path, key] of security) {
    if (!path || seen.has(path)) continue;
    seen.add(path);
    const text = readText(path, key, bad);
    if (text === null) continue;
    const problems = kind === "password_file"
      ? parsePasswordFile(text).problems
      : parseAcl(text).problems;
    for (const p of problems) out.push(at(path, p));
  }

  (config.plugins ?? []).forEach((p, i) => {
    if (p.name !== "dynamic-security" || !p.config_file) return;
    const text = readText(p.config_file, `plugins[${i}].config_file`, bad);
    if (text === null) return;
    try {
      parseDynsec(text);
    } catch (e) {
      out.push(`${p.config_file}: ${msg(e)}`);
    }
  });

  // The keys of the jwt link and the CA of the http link, when a chain uses them.
  const uses = (link: string) =>
    config.auth_chain.includes(link) || config.listeners.some((l) => l.auth_chain.includes(link));
  if (uses("jwt")) {
    if (config.jwt_public_key_file) {
      const text = readText(config.jwt_public_key_file, "jwt_public_key_file", bad);
      if (text !== null) {
        try {
          if (text.includes("-----BEGIN CERTIFICATE-----")) new X509Certificate(text);
          else createPublicKey(text);
        } catch (e) {
          bad(
            "jwt_public_key_file",
            `${config.jwt_public_key_file}: not a PEM public key (${msg(e)})`,
          );
        }
      }
    }
    if (config.jwt_jwks_file) {
      const text = readText(config.jwt_jwks_file, "jwt_jwks_file", bad);
      if (text !== null) {
        let keys: unknown;
        try {
          keys = (JSON.parse(text) as { keys?: unknown }).keys;
        } catch (e) {
          keys = undefined;
          bad("jwt_jwks_file", `${config.jwt_jwks_file}: not JSON (${msg(e)})`);
        }
        if (keys !== undefined && (!Array.isArray(keys) || keys.length === 0)) {
          bad("jwt_jwks_file", `${config.jwt_jwks_file}: not a JWKS ({"keys": [...]})`);
        }
      }
    }
    if (config.jwt_cafile) readCerts(config.jwt_cafile, "jwt_cafile", bad);
  }
  if (uses("http") && config.auth_opt_http_with_tls && config.auth_opt_http_cafile) {
    readCerts(config.auth_opt_http_cafile, "auth_opt_http_cafile", bad);
  }

  for (const d of config.log_dest) {
    if (d.startsWith("file ")) writableFile(d.slice(5), "log_dest", bad);
  }

  if (config.persistence) {
    const dir = config.persistence_location;
    const file = join(dir, config.persistence_file);
    if (writableDir(dir, "persistence_location", bad) && exists(file)) {
      try {
        accessSync(file, constants.R_OK | constants.W_OK);
        if (opts.readStore !== false) {
          const store = new SqliteStore(file, "full", { readOnly: true });
          try {
            store.load();
          } finally {
            store.close();
          }
        }
      } catch (e) {
        if (e instanceof StoreError) out.push(e.message);
        else bad("persistence_file", `cannot open ${file}: ${msg(e)}`);
      }
    }
  }
  return out;
}

type Bad = (key: string, problem: string) => void;

/** `file:line: message`, as AuthFileError writes it. */
function at(file: string, p: { line: number; message: string }): string {
  return p.line > 0 ? `${file}:${p.line}: ${p.message}` : `${file}: ${p.message}`;
}

function msg(e: unknown): string {
  const code = (e as { code?: string }).code;
  if (code === "ENOENT") return "no such file";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "EISDIR") return "is a directory";
  if (code === "ENOTDIR") return "a part of the path is not a directory";
  return String((e as Error)?.message ?? e).split("\n")[0];
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

function readBytes(path: string, key: string, bad: Bad): Uint8Array | null {
  try {
    return readFileSync(path);
  } catch (e) {
    bad(key, `cannot read ${path}: ${msg(e)}`);
    return null;
  }
}

function readText(path: string, key: string, bad: Bad): string | null {
  const b = readBytes(path, key, bad);
  return b === null ? null : new TextDecoder().decode(b);
}

/** The first certificate of a PEM file (a server or client certificate, then its chain). */
function readCert(path: string, key: string, bad: Bad): X509Certificate | null {
  const certs = readCerts(path, key, bad);
  return certs?.[0] ?? null;
}

/** Every certificate in a PEM file; at least one. */
function readCerts(path: string, key: string, bad: Bad): X509Certificate[] | null {
  const text = readText(path, key, bad);
  if (text === null) return null;
  if (!text.includes("-----BEGIN CERTIFICATE-----")) {
    bad(key, `${path}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it`);
    return null;
  }
  const certs: X509Certificate[] = [];
  const blocks = pemBlocks(text, "CERTIFICATE");
  for (let i = 0; i < blocks.length; i++) {
    try {
      certs.push(new X509Certificate(blocks[i]));
    } catch (e) {
      bad(key, `${path}: certificate ${i + 1} cannot be parsed (${msg(e)})`);
      return null;
    }
  }
  return certs;
}

function readKey(path: string, key: string, bad: Bad): KeyObject | null {
  const text = readText(path, key, bad);
  if (text === null) return null;
  try {
    return createPrivateKey(text);
  } catch (e) {
    bad(key, `${path}: not a PEM private key (${msg(e)})`);
    return null;
  }
}

/** `dir` is a writable directory, or can be made as one (its nearest existing parent is). */
function writableDir(dir: string, key: string, bad: Bad): boolean {
  let d = resolve(dir);
  for (;;) {
    let isDir: boolean;
    try {
      isDir = statSync(d).isDirectory();
    } catch {
      const up = dirname(d);
      if (up === d) break;
      d = up;
      continue;
    }
    if (!isDir) {
      bad(key, `${d} is not a directory`);
      return false;
    }
    try {
      accessSync(d, constants.W_OK | constants.X_OK);
      return true;
    } catch (e) {
      bad(
        key,
        d === resolve(dir)
          ? `${dir} is not writable: ${msg(e)}`
          : `cannot create ${dir}: ${d} is not writable (${msg(e)})`,
      );
      return false;
    }
  }
  bad(key, `cannot create ${dir}`);
  return false;
}

/** `path` can be appended to, or created in a writable directory. */
function writableFile(path: string, key: string, bad: Bad): void {
  if (!exists(path)) {
    writableDir(dirname(resolve(path)), key, bad);
    return;
  }
  try {
    if (statSync(path).isDirectory()) throw Object.assign(new Error(), { code: "EISDIR" });
    accessSync(path, constants.W_OK);
  } catch (e) {
    bad(key, `cannot write ${path}: ${msg(e)}`);
  }
}
