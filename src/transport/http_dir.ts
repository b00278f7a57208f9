/**
 * Mosquitto's `http_dir` on a websockets listener: a plain HTTP GET (not a WebSocket upgrade)
 * is answered with a file from the directory, so a page and its scripts can be served next to
 * the MQTT endpoint. Paths cannot leave the directory; "/" serves index.html; files are read
 * whole and at most MAX_FILE_BYTES long.
 */
import { readFileSync, statSync } from "node:fs";
import { extname, resolve, sep } from "node:path";

/** Largest file served, bytes. */
export const MAX_FILE_BYTES = 16 * 1024 * 1024;

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".htm": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".txt": "text/plain; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".ico": "image/x-icon",
  ".wasm": "application/wasm",
};

/** The answer to a GET for `url` (path and query) from `dir`. */
export interface StaticAnswer {
  status: 200 | 403 | 404;
  type: string;
  body: Uint8Array;
}

/** Looks up `url` in `dir`: 200 with the file, 404 when missing, 403 when outside or too large. */
export function staticFile(dir: string, url: string): StaticAnswer {
  const none = (status: 403 | 404): StaticAnswer => ({
    status,
    type: "text/plain; charset=utf-8",
    body: new TextEncoder().encode(status === 404 ? "Not Found\n" : "Forbidden\n"),
  });
  let path: string;
  try {
    path = decodeURIComponent(url.split("?")[0]);
  } catch {
    return none(404);
  }
  if (path.includes("\0")) return none(404);
  if (path.endsWith("/")) path += "index.html";
  const root = resolve(dir);
  const file = resolve(root, "." + path);
  if (file !== root && !file.startsWith(root + sep)) return none(403);
  try {
    const st = statSync(file);
    if (!st.isFile()) return none(404);
    if (st.size > MAX_FILE_BYTES) return none(403);
    const body = readFileSync(file);
    return {
      status: 200,
      type: TYPES[extname(file).toLowerCase()] ?? "application/octet-stream",
      body,
    };
  } catch {
    return none(404);
  }
}

/** The whole HTTP/1.1 response for `a` (the connection is closed after it). */
export function staticResponse(a: StaticAnswer, head = false): Uint8Array {
  const text = a.status === 200 ? "OK" : a.status === 403 ? "Forbidden" : "Not Found";
  const header = new TextEncoder().encode(
    `HTTP/1.1 ${a.status} ${text}\r\nContent-Type: ${a.type}\r\nContent-Length: ${a.body.length}\r\n` +
      "Connection: close\r\n\r\n",
  );
  if (head) return header;
  const out = new Uint8Array(header.length + a.body.length);
  out.set(header);
  out.set(a.body, header.length);
  return out;
}
