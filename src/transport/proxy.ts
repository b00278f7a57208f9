/**
 * PROXY protocol v1 (text) and v2 (binary) headers, as sent by HAProxy, nginx, AWS NLB and
 * others in front of a listener with `enable_proxy_protocol`: the header comes before any other
 * byte (before TLS and before the HTTP upgrade of a WebSocket), and names the real client.
 * Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
 */

/** Which versions a listener accepts: 1, 2, or both. */
export type ProxyVersions = 1 | 2 | "both";

/** The largest header accepted (v1 is at most 107 bytes; v2 is 16 + its length field). */
export const PROXY_MAX_HEADER = 4096;

/** The outcome of looking at the first bytes of a connection. */
export type ProxyParse =
  | { status: "more" }
  | { status: "error"; reason: string }
  | {
    status: "ok";
    /** Bytes taken by the header; the connection's own data starts there. */
    length: number;
    version: 1 | 2;
    /** The real client, or undefined when the header carries none (v1 UNKNOWN, v2 LOCAL). */
    source?: { address: string; port: number };
  };

const V2_SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
const V1_PREFIX = [0x50, 0x52, 0x4f, 0x58, 0x59, 0x20]; // "PROXY "
const V1_MAX = 107;

/** True while `buf` could still be the start of `sig`. */
function prefixOf(buf: Uint8Array, sig: number[]): boolean {
  const n = Math.min(buf.length, sig.length);
  for (let i = 0; i < n; i++) if (buf[i] !== sig[i]) return false;
  return true;
}

/**
 * Parses a PROXY header at the start of `buf` (everything received so far). Returns "more"
 * while the header is incomplete, "error" when the bytes are not a valid header of an accepted
 * version (the connection must then be closed), or the header's length and source address.
 */
export function parseProxyHeader(buf: Uint8Array, accept: ProxyVersions = "both"): ProxyParse {
  if (buf.length === 0) return { status: "more" };
  const v1 = accept !== 2 && prefixOf(buf, V1_PREFIX);
  const v2 = accept !== 1 && prefixOf(buf, V2_SIGNATURE);
  if (!v1 && !v2) {
    const want = accept === "both" ? "v1 or v2" : `v${accept}`;
    return { status: "error", reason: `no PROXY protocol ${want} header` };
  }
  return v1 ? parseV1(buf) : parseV2(buf);
}

function parseV1(buf: Uint8Array): ProxyParse {
  let end = -1;
  const limit = Math.min(buf.length, V1_MAX);
  for (let i = V1_PREFIX.length; i < limit - 1; i++) {
    if (buf[i] === 0x0d && buf[i + 1] === 0x0a) {
      end = i;
      break;
    }
  }
  if (end < 0) {
    return buf.length >= V1_MAX
      ? { status: "error", reason: "PROXY v1 header longer than 107 bytes" }
      : { status: "more" };
  }
  let line = "";
  for (let i = 0; i < end; i++) {
    const c = buf[i];
    if (c < 0x20 || c > 0x7e) return { status: "error", reason: "PROXY v1 header not ASCII" };
    line += String.fromCharCode(c);
  }
  const parts = line.split(" ");
  const length = end + 2;
  if (parts[1] === "UNKNOWN") return { status: "ok", length, version: 1 };
  if (parts.length !== 6) return { status: "error", reason: "PROXY v1 header malformed" };
  const [, family, src, dst, sport, dport] = parts;
  const check = family === "TCP4" ? isIPv4 : family === "TCP6" ? isIPv6 : null;
  if (!check) return { status: "error", reason: `PROXY v1 unknown family ${family}` };
  if (!check(src) || !check(dst)) {
    return { status: "error", reason: "PROXY v1 address invalid" };
  }
  const port = readPort(sport);
  if (port < 0 || readPort(dport) < 0) return { status: "error", reason: "PROXY v1 port invalid" };
  return { status: "ok", length, version: 1, source: { address: src, port } };
}

function readPort(s: string): number {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(s)) return -1;
  const n = Number(s);
  return n <= 65535 ? n : -1;
}

function parseV2(buf: Uint8Array): ProxyParse {
  if (buf.length < 16) return { status: "more" };
  const verCmd = buf[12];
  if (verCmd >> 4 !== 2) return { status: "error", reason: "PROXY v2 version not 2" };
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return { status: "error", reason: "PROXY v2 unknown command" };
  const fam = buf[13];
  const len = (buf[14] << 8) | buf[15];
  const length = 16 + len;
  if (length > PROXY_MAX_HEADER) {
    return { status: "error", reason: `PROXY v2 header over ${PROXY_MAX_HEADER} bytes` };
  }
  if (buf.length < length) return { status: "more" };
  // LOCAL: the proxy's own connection (health checks); the socket's address stands.
  if (cmd === 0) return { status: "ok", length, version: 2 };
  const body = buf.subarray(16, length);
  switch (fam) {
    case 0x11: // TCP over IPv4
    case 0x12: // UDP over IPv4
      if (len < 12) return { status: "error", reason: "PROXY v2 IPv4 block too short" };
      return {
        status: "ok",
        length,
        version: 2,
        source: { address: body.subarray(0, 4).join("."), port: (body[8] << 8) | body[9] },
      };
    case 0x21: // TCP over IPv6
    case 0x22:
      if (len < 36) return { status: "error", reason: "PROXY v2 IPv6 block too short" };
      return {
        status: "ok",
        length,
        version: 2,
        source: { address: formatIPv6(body.subarray(0, 16)), port: (body[32] << 8) | body[33] },
      };
    case 0x00: // UNSPEC: no address to take
    case 0x31: // Unix stream / datagram: a path, no IP
    case 0x32:
      return { status: "ok", length, version: 2 };
    default:
      return { status: "error", reason: `PROXY v2 unknown address family 0x${fam.toString(16)}` };
  }
}

function isIPv4(s: string): boolean {
  const p = s.split(".");
  return p.length === 4 && p.every((x) => /^(0|[1-9][0-9]{0,2})$/.test(x) && Number(x) <= 255);
}

function isIPv6(s: string): boolean {
  if (!/^[0-9A-Fa-f:.]{2,45}$/.test(s)) return false;
  const dbl = s.split("::");
  if (dbl.length > 2) return false;
  const groups = (part: string) => part === "" ? [] : part.split(":");
  const head = groups(dbl[0]);
  const tail = dbl.length === 2 ? groups(dbl[1]) : [];
  const all = [...head, ...tail];
  let count = all.length;
  const last = all[all.length - 1];
  if (last !== undefined && last.includes(".")) {
    if (!isIPv4(last)) return false;
    all.pop();
    count++; // an embedded IPv4 address takes two groups
  }
  if (!all.every((g) => /^[0-9A-Fa-f]{1,4}$/.test(g))) return false;
  return dbl.length === 2 ? count <= 7 : count === 8;
}

/** RFC 5952 text form of 16 address bytes (IPv4-mapped addresses as ::ffff:a.b.c.d). */
export function formatIPv6(b: Uint8Array): string {
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((b[i] << 8) | b[i + 1]);
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  }
  // The longest run of two or more zero groups becomes "::" (the first one on a tie).
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(":");
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}
