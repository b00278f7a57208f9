/**
 * The HTTP listener (`http_listener`): Prometheus `/metrics`, and the read-only admin API under
 * `/api/` (see admin.ts). Built on node:http, which Deno and Bun both provide.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Broker } from "../broker/broker.ts";
import { adminRequest } from "./admin.ts";
import { type LagSampler, METRICS_CONTENT_TYPE, renderMetrics } from "./metrics.ts";

/** A bound HTTP listener. */
export interface HttpListener {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Start the HTTP listener on `host:port` (port 0 = chosen by the OS). */
export function startHttp(
  broker: Broker,
  host: string,
  port: number,
  lag?: LagSampler,
): Promise<HttpListener> {
  const server = createServer((req, res) => {
    try {
      handle(broker, lag, req, res);
    } catch (e) {
      broker.log.error(`HTTP ${req.method} ${req.url}: ${e}`);
      if (!res.headersSent) send(res, req, 500, "text/plain; charset=utf-8", "internal error\n");
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      server.on("error", (e) => broker.log.error(`HTTP listener: ${e}`));
      const bound = (server.address() as AddressInfo).port;
      resolve({
        host,
        port: bound,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            // Scrapers keep connections alive; do not wait for them to go.
            (server as { closeAllConnections?: () => void }).closeAllConnections?.();
          }),
      });
    });
  });
}

function send(
  res: ServerResponse,
  req: IncomingMessage,
  status: number,
  type: string,
  body: string,
  headers: Record<string, string> = {},
): void {
  const bytes = new TextEncoder().encode(body);
  res.writeHead(status, {
    "Content-Type": type,
    "Content-Length": String(bytes.length),
    "Cache-Control": "no-store",
    ...headers,
  });
  res.end(req.method === "HEAD" ? undefined : bytes);
}

function handle(
  broker: Broker,
  lag: LagSampler | undefined,
  req: IncomingMessage,
  res: ServerResponse,
): void {
  const url = new URL(req.url ?? "/", "http://localhost");
  const path = url.pathname;
  if (path === "/api" || path.startsWith("/api/")) {
    const r = adminRequest(
      broker,
      req.method ?? "GET",
      path,
      url.searchParams,
      req.headers.authorization,
    );
    send(res, req, r.status, "application/json", JSON.stringify(r.body) + "\n", r.headers);
    return;
  }
  if (path === "/metrics") {
    if (req.method !== "GET" && req.method !== "HEAD") {
      send(res, req, 405, "text/plain; charset=utf-8", "GET only\n", { Allow: "GET, HEAD" });
      return;
    }
    send(res, req, 200, METRICS_CONTENT_TYPE, renderMetrics(broker, lag));
    return;
  }
  send(res, req, 404, "text/plain; charset=utf-8", "not found: try /metrics or /api/clients\n");
}
