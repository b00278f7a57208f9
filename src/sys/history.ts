/**
 * The broker's recent past for the web console's overview: every `intervalMs` a sample of the
 * gauges (clients, subscriptions, retained, queued) and of the counters' rates (messages and
 * bytes in and out per second, drops), the mean persistence commit time and the largest
 * event-loop lag of the interval, kept in a ring that covers the last 15 minutes. A page opened
 * now is shown that history at once.
 */
import type { Broker } from "../broker/broker.ts";
import { safely } from "../broker/guard.ts";
import type { LagSampler } from "./metrics.ts";

/** The series of a sample, in the order of `Sample`'s fields after `t`. */
export const SERIES = [
  "connected",
  "sessions",
  "subscriptions",
  "retained",
  "queued",
  "inflight",
  "dropped",
  "msgIn",
  "msgOut",
  "bytesIn",
  "bytesOut",
  "dropRate",
  "commitMs",
  "lagMs",
] as const;

/** One sample's name → value. */
export type Series = (typeof SERIES)[number];

/** One point in time. Rates are per second over the interval before `t`. */
export type Sample = { t: number } & Record<Series, number>;

/** The window kept, ms. */
export const HISTORY_MS = 15 * 60 * 1000;

/** Up to this many sessions, every sample walks them all. */
export const WALK_EVERY_SAMPLE = 10_000;
/** Beyond that, the session walk is repeated at most this often, ms. */
export const WALK_MS = 10_000;

/** What the console subtracts from the figures (its own internal subscriptions). */
export interface HiddenCounts {
  subscriptions(): number;
}

/** A 15-minute ring of samples taken every `intervalMs`. */
export class History {
  readonly intervalMs: number;
  readonly capacity: number;
  readonly #broker: Broker;
  readonly #lag: LagSampler | undefined;
  readonly #hidden: HiddenCounts | undefined;
  #ring: (Sample | undefined)[];
  #count = 0;
  #timer: ReturnType<typeof setInterval> | null = null;
  #prev: { t: number; pr: number; ps: number; br: number; bs: number; dr: number } | null = null;
  #prevCommit = { n: 0, ms: 0 };
  #walk: { t: number; connected: number; queued: number; inflight: number } | null = null;

  constructor(broker: Broker, lag?: LagSampler, intervalMs = 2000, hidden?: HiddenCounts) {
    this.#broker = broker;
    this.#lag = lag;
    this.#hidden = hidden;
    this.intervalMs = intervalMs;
    this.capacity = Math.ceil(HISTORY_MS / intervalMs);
    this.#ring = new Array(this.capacity);
  }

  /** Take a sample now and then every interval. */
  start(): void {
    if (this.#timer) return;
    this.sample();
    this.#timer = setInterval(
      () => safely(this.#broker.log, "the metrics history", () => this.sample()),
      this.intervalMs,
    );
    (this.#timer as { unref?: () => void }).unref?.();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** Take one sample (public so tests need not wait for the timer). */
  sample(now = Date.now()): Sample {
    const b = this.#broker;
    const st = b.stats;
    // The per-session gauges need a walk over every session (about 0.2-0.4 µs each); with many
    // sessions it is taken every WALK_MS only, and the figures of the last walk are repeated.
    let w = this.#walk;
    if (!w || b.sessions.size <= WALK_EVERY_SAMPLE || now - w.t >= WALK_MS || now < w.t) {
      let connected = 0, queued = 0, inflight = 0;
      for (const s of b.sessions.values()) {
        if (s.connection && s.connection.state === "open") connected++;
        queued += s.queue.length;
        inflight += s.inflight.size;
      }
      w = this.#walk = { t: now, connected, queued, inflight };
    }
    const { connected, queued, inflight } = w;
    const cur = {
      t: now,
      pr: st.publishReceived,
      ps: st.publishSent,
      br: st.bytesReceived,
      bs: st.bytesSent,
      dr: st.publishDropped,
    };
    const p = this.#prev;
    const dt = p ? Math.max(0.001, (now - p.t) / 1000) : 1;
    const rate = (a: number, b: number) => (p ? Math.max(0, (a - b) / dt) : 0);
    let commitMs = 0;
    const store = b.store;
    if (store) {
      const s = store.stats;
      const n = s.commits - this.#prevCommit.n;
      commitMs = n > 0 ? (s.totalCommitMs - this.#prevCommit.ms) / n : 0;
      this.#prevCommit = { n: s.commits, ms: s.totalCommitMs };
    }
    const sample: Sample = {
      t: now,
      connected,
      sessions: b.sessions.size,
      subscriptions: Math.max(0, b.router.count - (this.#hidden?.subscriptions() ?? 0)),
      retained: b.retained.size,
      queued,
      inflight,
      dropped: st.publishDropped,
      msgIn: rate(cur.pr, p?.pr ?? 0),
      msgOut: rate(cur.ps, p?.ps ?? 0),
      bytesIn: rate(cur.br, p?.br ?? 0),
      bytesOut: rate(cur.bs, p?.bs ?? 0),
      dropRate: rate(cur.dr, p?.dr ?? 0),
      commitMs,
      lagMs: this.#lag ? this.#lag.maxOver(this.intervalMs) : 0,
    };
    this.#prev = cur;
    this.#ring[this.#count % this.capacity] = sample;
    this.#count++;
    return sample;
  }

  /** The samples taken after `since` (ms since the epoch), oldest first. */
  since(since = 0): Sample[] {
    const out: Sample[] = [];
    const first = Math.max(0, this.#count - this.capacity);
    for (let i = first; i < this.#count; i++) {
      const s = this.#ring[i % this.capacity]!;
      if (s.t > since) out.push(s);
    }
    return out;
  }

  /** The latest sample, if any. */
  get latest(): Sample | undefined {
    return this.#count ? this.#ring[(this.#count - 1) % this.capacity] : undefined;
  }

  /** Columns for a chart: `t` in seconds, then each series, for samples after `since`. */
  columns(since = 0): Record<string, number[]> {
    const rows = this.since(since);
    const out: Record<string, number[]> = { t: rows.map((r) => r.t / 1000) };
    for (const k of SERIES) out[k] = rows.map((r) => round(r[k]));
    return out;
  }
}

function round(v: number): number {
  return Math.round(v * 100) / 100;
}
