/**
 * TLS for listeners over node:tls (on Deno and on Bun): the server options read from the
 * certificate files, re-read by `reload()` (SIGHUP), and the checks made on each client
 * certificate once the handshake is done: revocation (`crlfile`; Deno's TLS library ignores the
 * `crl` option, so the list is also checked here, on every runtime) and the user name a
 * certificate carries (`use_identity_as_username`, `use_subject_as_username`).
 */
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import type { TLSSocket } from "node:tls";
import { certInfo, commonName, RevocationList, subjectRfc2253 } from "./x509.ts";

/** A listener's TLS settings (from its certfile, keyfile, cafile, ... keys). */
export interface TlsSettings {
  certfile: string;
  keyfile: string;
  /** CA certificates client certificates must chain to ("" = none). */
  cafile: string;
  /** Certificate revocation list(s), PEM ("" = none). */
  crlfile: string;
  /** Refuse clients without a valid certificate (mutual TLS). */
  requireCertificate: boolean;
  /** The user name taken from the client certificate: none, its CN, or its whole subject. */
  identity: "none" | "cn" | "subject";
  /** OpenSSL cipher list for TLS 1.2 ("" = the runtime's default). Deno ignores it. */
  ciphers: string;
  /** Lowest TLS version accepted. */
  minVersion: "TLSv1.2" | "TLSv1.3";
}

/** What node:tls needs, read from the files; `crl` is also checked by `verifyPeer`. */
export interface LoadedTls {
  context: {
    cert: string;
    key: string;
    ca?: string;
    crl?: string;
    ciphers?: string;
    minVersion: "TLSv1.2" | "TLSv1.3";
  };
  crl: RevocationList | null;
}

function read(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new Error(`cannot read ${what} ${path}: ${code ?? (e as Error).message}`);
  }
}

/** Reads the certificate files. Throws an Error naming the file at fault. */
export function loadTls(s: TlsSettings): LoadedTls {
  const context: LoadedTls["context"] = {
    cert: read(s.certfile, "certfile"),
    key: read(s.keyfile, "keyfile"),
    minVersion: s.minVersion,
  };
  // Check the pair before it replaces a working one (Deno only notices at the next handshake).
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(context.cert);
  } catch (e) {
    throw new Error(`certfile ${s.certfile}: not a PEM certificate (${(e as Error).message})`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(context.key);
  } catch (e) {
    throw new Error(`keyfile ${s.keyfile}: not a PEM private key (${(e as Error).message})`);
  }
  if (!cert.checkPrivateKey(key)) {
    throw new Error(`keyfile ${s.keyfile} does not belong to certfile ${s.certfile}`);
  }
  if (s.cafile) context.ca = read(s.cafile, "cafile");
  if (s.ciphers) context.ciphers = s.ciphers;
  let crl: RevocationList | null = null;
  if (s.crlfile) {
    context.crl = read(s.crlfile, "crlfile");
    try {
      crl = new RevocationList(new TextEncoder().encode(context.crl));
    } catch (e) {
      throw new Error(`crlfile ${s.crlfile}: ${(e as Error).message}`);
    }
  }
  return { context, crl };
}

/** Whether the client must (and may) present a certificate. */
export function requestsCertificate(s: TlsSettings): boolean {
  return s.requireCertificate || s.identity !== "none";
}

/** After the handshake: accept the peer (with the user name its certificate gives) or refuse. */
export type PeerVerdict = { ok: true; username?: string } | { ok: false; reason: string };

/**
 * Checks a client once its TLS handshake is complete: the certificate (when one is asked for)
 * must be valid, not revoked, and carry the identity the listener takes as user name.
 */
export function verifyPeer(
  sock: TLSSocket,
  s: TlsSettings,
  crl: RevocationList | null,
): PeerVerdict {
  if (!requestsCertificate(s)) return { ok: true };
  // deno-lint-ignore no-explicit-any
  const peer = sock.getPeerCertificate() as any;
  const raw: Uint8Array | undefined = peer?.raw;
  if (!raw || raw.length === 0) return { ok: false, reason: "no client certificate" };
  if (!sock.authorized) {
    return { ok: false, reason: `client certificate not valid (${sock.authorizationError})` };
  }
  let info;
  try {
    info = certInfo(new Uint8Array(raw));
  } catch {
    return { ok: false, reason: "client certificate unreadable" };
  }
  if (crl?.revoked(info)) return { ok: false, reason: "client certificate revoked" };
  if (s.identity === "cn") {
    const cn = commonName(info);
    if (cn === undefined || cn === "" || cn.includes("\0")) {
      return { ok: false, reason: "client certificate has no usable common name" };
    }
    return { ok: true, username: cn };
  }
  if (s.identity === "subject") return { ok: true, username: subjectRfc2253(info) };
  return { ok: true };
}
