/**
 * Just enough DER to read what the listeners need from certificates and CRLs: a certificate's
 * serial number, issuer and subject, and the serial numbers a CRL revokes. Used for
 * `use_identity_as_username` / `use_subject_as_username` (the same strings Mosquitto derives
 * with OpenSSL) and for `crlfile` on runtimes whose TLS library does not check CRLs (Deno).
 */

interface Tlv {
  tag: number;
  /** Offset of the first content byte. */
  start: number;
  /** Offset after the last content byte. */
  end: number;
}

class DerError extends Error {}

function tlv(b: Uint8Array, off: number, limit = b.length): Tlv {
  if (off + 2 > limit) throw new DerError("truncated");
  const tag = b[off];
  let len = b[off + 1];
  let start = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > limit) throw new DerError("bad length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[start + i];
    start += n;
  }
  const end = start + len;
  if (end > limit) throw new DerError("truncated");
  return { tag, start, end };
}

/** The children of a constructed value. */
function children(b: Uint8Array, t: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let off = t.start; off < t.end;) {
    const c = tlv(b, off, t.end);
    out.push(c);
    off = c.end;
  }
  return out;
}

function hex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/** An INTEGER's magnitude as lower-case hex without leading zero bytes. */
function serialHex(b: Uint8Array, t: Tlv): string {
  let i = t.start;
  while (i < t.end - 1 && b[i] === 0) i++;
  return hex(b.subarray(i, t.end));
}

/** Decodes PEM blocks labelled `label`; input without any PEM block is taken as one DER blob. */
export function pemBlocks(text: Uint8Array | string, label: string): Uint8Array[] {
  const s = typeof text === "string" ? text : new TextDecoder("latin1").decode(text);
  const re = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`, "g");
  const out: Uint8Array[] = [];
  for (let m; (m = re.exec(s));) {
    const bin = atob(m[1].replace(/[^A-Za-z0-9+/=]/g, ""));
    out.push(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
  }
  if (out.length === 0 && typeof text !== "string" && !s.includes("-----BEGIN")) out.push(text);
  return out;
}

/** What a certificate (DER) says about itself. */
export interface CertInfo {
  serial: string;
  /** The issuer Name, DER, as hex: compared byte for byte with a CRL's issuer. */
  issuer: string;
  /** The subject's RDNs in certificate order; each RDN is a list of [short name, value]. */
  subject: [string, string][][];
}

/** Reads serial, issuer and subject from a DER certificate. Throws on malformed input. */
export function certInfo(der: Uint8Array): CertInfo {
  const cert = tlv(der, 0);
  const tbs = children(der, cert)[0];
  const f = children(der, tbs);
  let i = f[0].tag === 0xa0 ? 1 : 0; // [0] version
  const serial = serialHex(der, f[i++]);
  i++; // signature algorithm
  const issuerT = f[i++];
  i++; // validity
  const subjectT = f[i];
  return {
    serial,
    issuer: hex(der.subarray(issuerT.start, issuerT.end)),
    subject: readName(der, subjectT),
  };
}

/** OpenSSL's short names for the attribute types one meets in subjects. */
const ATTR_NAMES: Record<string, string> = {
  "2.5.4.3": "CN",
  "2.5.4.4": "SN",
  "2.5.4.5": "serialNumber",
  "2.5.4.6": "C",
  "2.5.4.7": "L",
  "2.5.4.8": "ST",
  "2.5.4.9": "street",
  "2.5.4.10": "O",
  "2.5.4.11": "OU",
  "2.5.4.12": "title",
  "2.5.4.17": "postalCode",
  "2.5.4.42": "GN",
  "2.5.4.43": "initials",
  "2.5.4.46": "dnQualifier",
  "2.5.4.65": "pseudonym",
  "1.2.840.113549.1.9.1": "emailAddress",
  "0.9.2342.19200300.100.1.1": "UID",
  "0.9.2342.19200300.100.1.25": "DC",
};

function oid(b: Uint8Array, t: Tlv): string {
  const parts: number[] = [];
  let v = 0;
  for (let i = t.start; i < t.end; i++) {
    v = v * 128 + (b[i] & 0x7f);
    if (!(b[i] & 0x80)) {
      if (parts.length === 0) parts.push(v < 80 ? Math.floor(v / 40) : 2, v < 80 ? v % 40 : v - 80);
      else parts.push(v);
      v = 0;
    }
  }
  return parts.join(".");
}

/** A directory string's text (UTF8String, PrintableString, IA5String, T61String, BMPString). */
function dirString(b: Uint8Array, t: Tlv): string {
  const bytes = b.subarray(t.start, t.end);
  if (t.tag === 0x1e) {
    let s = "";
    for (let i = 0; i + 1 < bytes.length; i += 2) {
      s += String.fromCharCode((bytes[i] << 8) | bytes[i + 1]);
    }
    return s;
  }
  if (t.tag === 0x14) return new TextDecoder("latin1").decode(bytes);
  return new TextDecoder().decode(bytes);
}

function readName(b: Uint8Array, name: Tlv): [string, string][][] {
  return children(b, name).map((set) =>
    children(b, set).map((atv) => {
      const [type, value] = children(b, atv);
      const id = oid(b, type);
      return [ATTR_NAMES[id] ?? id, dirString(b, value)] as [string, string];
    })
  );
}

/** The first common name of a subject (Mosquitto's `use_identity_as_username`). */
export function commonName(info: CertInfo): string | undefined {
  for (const rdn of info.subject) for (const [k, v] of rdn) if (k === "CN") return v;
  return undefined;
}

/**
 * The subject as OpenSSL prints it with XN_FLAG_RFC2253 (Mosquitto's `use_subject_as_username`):
 * entries in reverse order, RDNs joined by ",", the values of a multi-valued RDN by "+",
 * RFC 2253 escapes, and bytes outside printable ASCII as \XX.
 */
export function subjectRfc2253(info: CertInfo): string {
  // OpenSSL reverses its flat list of entries, so a multi-valued RDN comes out reversed too.
  return info.subject.slice().reverse().map((rdn) =>
    rdn.slice().reverse().map(([k, v]) => `${k}=${escape2253(v)}`).join("+")
  ).join(",");
}

function escape2253(v: string): string {
  const bytes = new TextEncoder().encode(v);
  let out = "";
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    const ch = String.fromCharCode(c);
    if (c < 0x20 || c >= 0x7f) out += "\\" + c.toString(16).toUpperCase().padStart(2, "0");
    else if (',+"\\<>;'.includes(ch)) out += "\\" + ch;
    else if ((i === 0 && (ch === "#" || ch === " ")) || (i === bytes.length - 1 && ch === " ")) {
      out += "\\" + ch;
    } else out += ch;
  }
  return out;
}

/** The certificates a set of CRLs revokes, keyed by issuer and serial. */
export class RevocationList {
  readonly #revoked = new Set<string>();
  /** Number of CRLs read. */
  readonly count: number;

  /** Parses every CRL in `data` (PEM "X509 CRL" blocks, or one DER CRL). Throws on bad input. */
  constructor(data: Uint8Array) {
    const crls = pemBlocks(data, "X509 CRL");
    if (crls.length === 0) throw new Error("no CRL found");
    for (const der of crls) this.#add(der);
    this.count = crls.length;
  }

  #add(der: Uint8Array): void {
    try {
      const list = tlv(der, 0);
      const tbs = children(der, list)[0];
      const f = children(der, tbs);
      let i = f[0].tag === 0x02 ? 1 : 0; // version
      i++; // signature algorithm
      const issuerT = f[i++];
      const issuer = hex(der.subarray(issuerT.start, issuerT.end));
      i++; // thisUpdate
      if (i < f.length && (f[i].tag === 0x17 || f[i].tag === 0x18)) i++; // nextUpdate
      if (i < f.length && f[i].tag === 0x30) {
        for (const entry of children(der, f[i])) {
          const serial = children(der, entry)[0];
          this.#revoked.add(`${issuer}/${serialHex(der, serial)}`);
        }
      }
    } catch (e) {
      throw new Error(`malformed CRL (${e instanceof Error ? e.message : e})`);
    }
  }

  /** True when the certificate is listed as revoked by its issuer. */
  revoked(info: CertInfo): boolean {
    return this.#revoked.has(`${info.issuer}/${info.serial}`);
  }
}
