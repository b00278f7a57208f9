/**
 * The web console's own reads, next to the admin API (admin.ts):
 *   GET /api/overview[?since=<ms>]        figures now, the 15-minute history after `since`, nodes
 *   GET /api/topics?prefix=a/b            the topic tree one level below `prefix`, with rates
 *   GET /api/logs?since=N&filter=S&types=error,notice   the log ring after line N
 *   GET /api/security                     dynamic security or the password and ACL files
 *   GET /api/messages/stream?filter=a/%23 messages as server-sent events (live console)
 * and the state they read: the history ring, the log ring, the topic counters and the streams.
 */
import type { ClusterView, NodeInfo } from "./cluster_view.ts";
import { readFileSync } from "node:fs";
import { Buffer } from "node:buffer";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Broker } from "../broker/broker.ts";
import { validTopicFilter } from "../broker/topic.ts";
import { parsePasswordFile } from "../auth/password.ts";
import { VERSION } from "../version.ts";
import { apiError, type ApiResponse } from "./admin.ts";
import { controlHandler, DYNSEC_TOPIC } from "./admin_write.ts";
import { ConsoleSessions } from "./console_auth.ts";
import { History } from "./history.ts";
import { LogRing } from "./log_ring.ts";
import type { LagSampler } from "./metrics.ts";
import { snapshot, Tap } from "./tap.ts";
import { TopicStats } from "./topic_stats.ts";

/** Message streams open at once at most (each holds an internal subscription). */
export const MAX_STREAMS = 8;
/** Messages a stream holds for a reader that does not keep up; later ones are dropped. */
export const STREAM_BUFFER = 200;
/** Payload bytes sent per streamed message at most. */
export const STREAM_PAYLOAD_BYTES = 4096;

/** One broker of a cluster as the overview lists it (today only this one). */
export type { NodeInfo };

/** Everything the console's endpoints share for one broker. */
export class ConsoleState {
  readonly broker: Broker;
  readonly history: History;
  readonly logs: LogRing = new LogRing();
  readonly topics: TopicStats;
  readonly sessions: ConsoleSessions = new ConsoleSessions();
  /** Open message streams. */
  streams = 0;
  /**
   * The cluster's nodes for the overview. A cluster replaces this; alone, the broker is the one
   * node.
   */
  /** The cluster this broker is a node of, or null. */
  cluster: ClusterView | null = null;
  nodes: () => NodeInfo[] = () => [{
    id: "local",
    version: VERSION,
    self: true,
    clients: this.history.latest?.connected ?? 0,
    uptime: Math.floor((Date.now() - this.broker.startedAt) / 1000),
  }];

  constructor(broker: Broker, lag?: LagSampler, sampleMs = 2000) {
    this.broker = broker;
    this.topics = new TopicStats(broker);
    this.history = new History(broker, lag, sampleMs, {
      subscriptions: () => this.topics.subscriptions + this.streams,
    });
  }

  /** Start sampling and collecting log lines. */
  start(): void {
    this.history.start();
    this.logs.attach(this.broker.log);
  }

  stop(): void {
    this.history.stop();
    this.logs.detach();
    this.topics.stop();
  }
}

function intOf(q: URLSearchParams, name: string, dflt: number, max: number): number {
  const v = Number(q.get(name) ?? "");
  return q.get(name) && Number.isFinite(v) && v >= 0 ? Math.min(Math.floor(v), max) : dflt;
}

/** Answer a console GET, or undefined when the path is not one of the console's. */
export function consoleRead(
  st: ConsoleState,
  parts: string[],
  q: URLSearchParams,
): ApiResponse | undefined {
  if (parts.length !== 2) return undefined;
  switch (parts[1]) {
    case "overview":
      return overview(st, q);
    case "topics":
      return topics(st, q);
    case "logs": {
      const types = q.get("types");
      return {
        status: 200,
        body: {
          last: st.logs.last,
          lines: st.logs.read(
            intOf(q, "since", 0, Number.MAX_SAFE_INTEGER),
            intOf(q, "limit", 500, 2000),
            q.get("filter") ?? "",
            types ? new Set(types.split(",")) : undefined,
          ),
        },
      };
    }
    case "security":
      return security(st.broker);
  }
  return undefined;
}

function overview(st: ConsoleState, q: URLSearchParams): ApiResponse {
  const b = st.broker;
  const since = intOf(q, "since", 0, Number.MAX_SAFE_INTEGER);
  const latest = st.history.latest ?? st.history.sample();
  return {
    status: 200,
    body: {
      version: VERSION,
      started: b.startedAt,
      uptime: Math.floor((Date.now() - b.startedAt) / 1000),
      interval_ms: st.history.intervalMs,
      persistence: b.store !== null,
      listeners: b.listeners.map((l) => ({ protocol: l.protocol, host: l.host, port: l.port })),
      now: latest,
      history: st.history.columns(since),
      nodes: st.nodes(),
    },
  };
}

function topics(st: ConsoleState, q: URLSearchParams): ApiResponse {
  const prefix = q.get("prefix") ?? "";
  if (/[+#]/.test(prefix)) return apiError(400, "prefix: a topic without wildcards");
  st.topics.touch();
  const { nodes, total } = st.topics.children(prefix, intOf(q, "limit", 500, 5000));
  return {
    status: 200,
    body: {
      prefix,
      tracking_since: st.topics.since,
      untracked: st.topics.untracked,
      total,
      nodes,
    },
  };
}

/** The ACL file's text, for showing read-only (it holds topics and user names, no secrets). */
function readText(path: string): { text?: string; error?: string } {
  try {
    return { text: readFileSync(path, "utf8") };
  } catch (e) {
    return { error: `${path}: ${(e as Error).message}` };
  }
}

function security(broker: Broker): ApiResponse {
  const c = broker.config;
  const dynsec = controlHandler(broker, DYNSEC_TOPIC) !== undefined;
  const body: Record<string, unknown> = {
    dynsec,
    allow_anonymous: c.allow_anonymous,
    password_file: null,
    acl_file: null,
  };
  if (c.password_file) {
    const r = readText(c.password_file);
    if (r.text !== undefined) {
      // User names only: the hashes never leave the broker.
      const users = [...parsePasswordFile(r.text).users.keys()].sort();
      body.password_file = { path: c.password_file, users };
    } else body.password_file = { path: c.password_file, error: r.error };
  }
  if (c.acl_file) body.acl_file = { path: c.acl_file, ...readText(c.acl_file) };
  return { status: 200, body };
}

/**
 * Serve `GET /api/messages/stream?filter=F` as server-sent events: one `message` event per
 * message routed to an internal subscription on F, a `dropped` count when the reader fell behind
 * by more than STREAM_BUFFER messages, a comment every 15 s to keep proxies from closing it.
 */
export function messageStream(
  st: ConsoleState,
  req: IncomingMessage,
  res: ServerResponse,
  q: URLSearchParams,
): ApiResponse | undefined {
  const filter = q.get("filter") ?? "#";
  if (!validTopicFilter(filter) || filter.startsWith("$share/")) {
    return apiError(400, `invalid topic filter ${JSON.stringify(filter)}`);
  }
  if (st.streams >= MAX_STREAMS) {
    return apiError(429, `at most ${MAX_STREAMS} message streams at once`);
  }
  st.streams++;
  res.writeHead(200, {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",
  });
  res.write(`: subscribed to ${filter}\n\n`);
  const pending: string[] = [];
  let waiting = false;
  let dropped = 0;
  const flush = () => {
    waiting = false;
    while (pending.length && !waiting) {
      if (!res.write(pending.shift()!)) waiting = true;
    }
    if (!waiting && dropped) {
      const d = dropped;
      dropped = 0;
      if (!res.write(`event: dropped\ndata: ${d}\n\n`)) waiting = true;
    }
  };
  res.on("drain", flush);
  const tap = new Tap(st.broker, filter, (m) => {
    const s = snapshot(m, STREAM_PAYLOAD_BYTES);
    const ev = `event: message\ndata: ${
      JSON.stringify({
        time: s.time,
        topic: s.topic,
        qos: s.qos,
        retain: s.retain,
        bytes: s.bytes,
        payload: Buffer.from(s.payload).toString("base64"),
        properties: s.properties,
      })
    }\n\n`;
    if (waiting) {
      if (pending.length < STREAM_BUFFER) pending.push(ev);
      else dropped++;
      return;
    }
    if (!res.write(ev)) waiting = true;
  });
  const beat = setInterval(() => {
    try {
      if (!waiting) res.write(": keep-alive\n\n");
    } catch {
      close(); // the stream is gone
    }
  }, 15000);
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    clearInterval(beat);
    tap.close();
    st.streams--;
  };
  req.on("close", close);
  res.on("close", close);
  res.on("error", close);
  return undefined;
}
