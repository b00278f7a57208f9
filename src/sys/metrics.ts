/**
 * Prometheus metrics in the text exposition format (version 0.0.4): `# HELP`, `# TYPE`, then
 * `name value` lines. Counters end in `_total`; sizes are bytes, durations seconds.
 * Also the event-loop lag sampler behind `midge_event_loop_lag_*`.
 */
import process from "node:process";
import type { Broker } from "../broker/broker.ts";
import { VERSION } from "../version.ts";
import { gauges } from "./stats.ts";

/** The Content-Type of `/metrics`. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/**
 * Measures how late a timer fires: a timer due every `periodMs` that runs `d` ms late means the
 * event loop was busy for about `d` ms. Keeps the last sample and the maximum over the last minute.
 */
export class LagSampler {
  readonly periodMs: number;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #due = 0;
  /** Lags (ms) of the samples of the last minute, oldest first. */
  #window: number[] = [];
  /** The most recent lag, ms. */
  last = 0;

  constructor(periodMs = 500) {
    this.periodMs = periodMs;
  }

  start(): void {
    if (this.#timer) return;
    this.#schedule();
  }

  #schedule(): void {
    this.#due = performance.now() + this.periodMs;
    this.#timer = setTimeout(() => {
      this.record(Math.max(0, performance.now() - this.#due));
      this.#schedule();
    }, this.periodMs);
  }

  /** Add one sample (ms); public so the window logic can be tested without waiting. */
  record(lagMs: number): void {
    this.last = lagMs;
    this.#window.push(lagMs);
    const keep = Math.max(1, Math.ceil(60000 / this.periodMs));
    if (this.#window.length > keep) this.#window.splice(0, this.#window.length - keep);
  }

  /** The largest lag of the samples taken in the last `ms` milliseconds (at least one), ms. */
  maxOver(ms: number): number {
    const n = Math.max(1, Math.ceil(ms / this.periodMs));
    let m = 0;
    for (let i = Math.max(0, this.#window.length - n); i < this.#window.length; i++) {
      if (this.#window[i] > m) m = this.#window[i];
    }
    return m;
  }

  /** The largest lag of the last minute, ms. */
  get max(): number {
    let m = 0;
    for (const v of this.#window) if (v > m) m = v;
    return m;
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }
}

type Kind = "counter" | "gauge";

/** Builds the exposition text one metric family at a time. */
class Exposition {
  #lines: string[] = [];
  add(name: string, kind: Kind, help: string, value: number, labels?: Record<string, string>) {
    this.#lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${kind}`);
    const l = labels
      ? `{${
        Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/[\\"\n]/g, escape)}"`).join(",")
      }}`
      : "";
    this.#lines.push(`${name}${l} ${format(value)}`);
  }
  text(): string {
    return this.#lines.join("\n") + "\n";
  }
}

function escape(c: string): string {
  return c === "\n" ? "\\n" : `\\${c}`;
}

function format(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "+Inf" : "-Inf";
  return String(v);
}

/** The `/metrics` text for `broker` (and `lag`, when sampled). */
export function renderMetrics(broker: Broker, lag?: LagSampler): string {
  const st = broker.stats;
  const g = gauges(broker);
  const m = new Exposition();
  const c = (name: string, help: string, v: number) => m.add(`midge_${name}`, "counter", help, v);
  const gg = (name: string, help: string, v: number) => m.add(`midge_${name}`, "gauge", help, v);

  m.add("midge_build_info", "gauge", "Midge version (always 1).", 1, { version: VERSION });
  gg(
    "start_time_seconds",
    "Start time of the broker, seconds since the epoch.",
    broker.startedAt / 1000,
  );
  gg("uptime_seconds", "Seconds since the broker started.", (Date.now() - broker.startedAt) / 1000);

  gg("connections", "Open client sockets (including those not yet past CONNECT).", g.sockets);
  c("connections_accepted_total", "Client sockets accepted.", st.connectionsTotal);
  gg("clients_connected", "Clients connected (CONNECT accepted).", g.connected);
  gg(
    "clients_sessions",
    "Sessions held: connected clients and offline persistent sessions.",
    g.sessions,
  );
  gg("clients_disconnected", "Offline persistent sessions.", g.sessions - g.connected);
  c("clients_connects_total", "CONNECTs accepted.", st.connects);
  c("clients_expired_total", "Offline sessions ended by their expiry.", st.clientsExpired);
  c(
    "protocol_errors_total",
    "Connections closed for a malformed packet or protocol violation.",
    st.protocolErrors,
  );

  c("packets_received_total", "MQTT packets received, of every type.", st.messagesReceived);
  c("packets_sent_total", "MQTT packets sent, of every type.", st.messagesSent);
  c("bytes_received_total", "Bytes received from clients.", st.bytesReceived);
  c("bytes_sent_total", "Bytes sent to clients.", st.bytesSent);
  c("publish_received_total", "PUBLISH packets received from clients.", st.publishReceived);
  c("publish_sent_total", "PUBLISH packets sent to clients.", st.publishSent);
  c(
    "publish_dropped_total",
    "Messages dropped: queue full, slow reader, or over message_size_limit.",
    st.publishDropped,
  );
  c(
    "publish_bytes_received_total",
    "Payload bytes of PUBLISH packets received.",
    st.publishBytesReceived,
  );
  c("publish_bytes_sent_total", "Payload bytes of PUBLISH packets sent.", st.publishBytesSent);

  gg("messages_queued", "Messages waiting in session queues.", g.queued);
  gg(
    "messages_queued_bytes",
    "Bytes (payload and topic) of the messages waiting in session queues.",
    g.queuedBytes,
  );
  gg("messages_inflight", "Outgoing QoS 1/2 messages sent and not yet acknowledged.", g.inflight);
  gg("retained_messages", "Retained messages held.", g.retained);
  gg("retained_bytes", "Bytes (payload and topic) of the retained messages held.", g.retainedBytes);
  gg("subscriptions", "Subscriptions, shared ones included.", g.subscriptions);
  gg("shared_subscriptions", "Shared subscriptions ($share/...).", g.sharedSubscriptions);

  const store = broker.store;
  gg("persistence_enabled", "1 when the persistent store is open.", store ? 1 : 0);
  if (store) {
    const s = store.stats;
    c("persistence_commits_total", "Group commits written to the store.", s.commits);
    c(
      "persistence_commit_errors_total",
      "Commits that failed (nothing was acknowledged for them).",
      s.errors,
    );
    c(
      "persistence_commit_seconds_total",
      "Time spent in commits; divide by commits for the mean.",
      s.totalCommitMs / 1000,
    );
    gg("persistence_last_commit_seconds", "Duration of the latest commit.", s.lastCommitMs / 1000);
  }

  if (lag) {
    gg(
      "event_loop_lag_seconds",
      "How late the latest event-loop probe timer ran.",
      lag.last / 1000,
    );
    gg(
      "event_loop_lag_max_seconds",
      "Largest event-loop probe delay of the last minute.",
      lag.max / 1000,
    );
  }
  const mem = process.memoryUsage();
  m.add("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", mem.rss);
  gg("heap_used_bytes", "JavaScript heap in use, bytes.", mem.heapUsed);
  return m.text();
}
