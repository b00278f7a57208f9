/**
 * A SOCKS5 client (RFC 1928, with RFC 1929 user name/password authentication), for the client
 * tools' `--proxy socks5h://[user[:password]@]host[:port]`, as mosquitto_pub's. The broker's
 * host name is sent to the proxy unresolved (socks5h: the proxy resolves it).
 */
import { connect as netConnect, type Socket } from "node:net";

/** A SOCKS5 proxy: where it is and how to authenticate. */
export interface ProxyOptions {
  host: string;
  port: number;
  username?: string;
  password?: string;
}

/** Parses `socks5h://[user[:password]@]host[:port]` (port 1080 by default). */
export function parseProxyUrl(url: string): ProxyOptions {
  const m = /^socks5h:\/\/(?:([^@/]*)@)?(\[[^\]]+\]|[^:/?#]+)(?::(\d+))?\/?$/i.exec(url);
  if (!m) {
    throw new Error(
      `invalid proxy URL ${JSON.stringify(url)}: expected socks5h://[user[:password]@]host[:port]`,
    );
  }
  const port = m[3] !== undefined ? Number(m[3]) : 1080;
  if (port < 1 || port > 65535) throw new Error(`invalid port in proxy URL ${url}`);
  const out: ProxyOptions = { host: m[2].replace(/^\[(.*)\]$/, "$1"), port };
  if (m[1] !== undefined) {
    const i = m[1].indexOf(":");
    out.username = decodeURIComponent(i < 0 ? m[1] : m[1].slice(0, i));
    if (i >= 0) out.password = decodeURIComponent(m[1].slice(i + 1));
  }
  return out;
}

/** SOCKS5 reply codes (RFC 1928 §6). */
const REPLIES: Record<number, string> = {
  1: "general SOCKS server failure",
  2: "connection not allowed by ruleset",
  3: "network unreachable",
  4: "host unreachable",
  5: "connection refused",
  6: "TTL expired",
  7: "command not supported",
  8: "address type not supported",
};

/**
 * Opens a TCP connection to `host`:`port` through the proxy. Resolves with the socket, ready for
 * MQTT (or TLS on top); rejects with the proxy's refusal or the socket error.
 */
export function socksConnect(
  proxy: ProxyOptions,
  host: string,
  port: number,
  opts: { localAddress?: string; timeout?: number } = {},
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = netConnect({
      host: proxy.host,
      port: proxy.port,
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    });
    let buf = new Uint8Array(0);
    let step: "method" | "auth" | "connect" = "method";
    const timer = setTimeout(
      () => fail(Object.assign(new Error("SOCKS5 proxy timed out"), { code: "ETIMEDOUT" })),
      opts.timeout ?? 30000,
    );
    function fail(e: Error): void {
      clearTimeout(timer);
      sock.off("data", onData);
      sock.destroy();
      reject(e);
    }
    const withAuth = proxy.username !== undefined;
    const enc = new TextEncoder();
    sock.once("error", fail);
    sock.once("connect", () => {
      // Greeting: version 5, the methods we offer (0 none, 2 user name/password).
      sock.write(new Uint8Array(withAuth ? [5, 2, 0, 2] : [5, 1, 0]));
    });
    const sendConnect = () => {
      step = "connect";
      const name = enc.encode(host);
      if (name.length > 255) return fail(new Error("host name too long for SOCKS5"));
      const req = new Uint8Array(7 + name.length);
      req.set([5, 1, 0, 3, name.length]);
      req.set(name, 5);
      req[5 + name.length] = port >> 8;
      req[6 + name.length] = port & 0xff;
      sock.write(req);
    };
    const onData = (d: Uint8Array) => {
      const next = new Uint8Array(buf.length + d.length);
      next.set(buf);
      next.set(d, buf.length);
      buf = next;
      if (step === "method") {
        if (buf.length < 2) return;
        if (buf[0] !== 5) return fail(new Error("not a SOCKS5 proxy"));
        const method = buf[1];
        buf = buf.subarray(2);
        if (method === 0) return sendConnect();
        if (method === 2 && withAuth) {
          step = "auth";
          const u = enc.encode(proxy.username ?? "");
          const p = enc.encode(proxy.password ?? "");
          if (u.length > 255 || p.length > 255) {
            return fail(new Error("SOCKS5 user name or password too long"));
          }
          const msg = new Uint8Array(3 + u.length + p.length);
          msg[0] = 1;
          msg[1] = u.length;
          msg.set(u, 2);
          msg[2 + u.length] = p.length;
          msg.set(p, 3 + u.length);
          sock.write(msg);
          return;
        }
        return fail(
          new Error("the SOCKS5 proxy accepts none of the offered authentication methods"),
        );
      }
      if (step === "auth") {
        if (buf.length < 2) return;
        if (buf[1] !== 0) return fail(new Error("SOCKS5 proxy authentication failed"));
        buf = buf.subarray(2);
        return sendConnect();
      }
      // CONNECT reply: VER REP RSV ATYP BND.ADDR BND.PORT
      if (buf.length < 5) return;
      if (buf[1] !== 0) {
        return fail(
          Object.assign(new Error(`SOCKS5 proxy: ${REPLIES[buf[1]] ?? `error ${buf[1]}`}`), {
            code: buf[1] === 5 ? "ECONNREFUSED" : "ESOCKS",
          }),
        );
      }
      const atyp = buf[3];
      const addrLen = atyp === 1 ? 4 : atyp === 4 ? 16 : atyp === 3 ? 1 + buf[4] : -1;
      if (addrLen < 0) return fail(new Error("SOCKS5 proxy: bad reply"));
      const total = 4 + addrLen + 2;
      if (buf.length < total) return;
      clearTimeout(timer);
      sock.off("data", onData);
      sock.off("error", fail);
      const rest = buf.subarray(total);
      resolve(sock);
      if (rest.length) queueMicrotask(() => sock.emit("data", rest));
    };
    sock.on("data", onData);
  });
}
