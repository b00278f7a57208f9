/**
 * What a load-generator worker is asked to do (the plan, sent once) and the messages that pass
 * between the coordinator and its workers (one JSON object per line over a child's stdio, or
 * direct calls when the coordinator runs the work in its own process).
 */

/** A publishing client. Its messages carry `idx` and a sequence number from 0. */
export interface PubPlan {
  idx: number;
  clientId: string;
  topic: string;
  /** Some of its subscribers live in other workers (QoS 0 credit then comes from the coordinator). */
  remote: boolean;
}

/** A subscribing client; it expects every message of the publishers idx in [pubFrom, pubTo). */
export interface SubPlan {
  idx: number;
  clientId: string;
  filter: string;
  pubFrom: number;
  pubTo: number;
}

export type Kind = "flow" | "storm" | "retained";

export interface WorkerPlan {
  kind: Kind;
  host: string;
  port: number;
  /**
   * Ports of other brokers (nodes of one cluster): publisher i connects to pubPorts[i % length],
   * subscriber i to subPorts[i % length]; empty: `port`.
   */
  pubPorts: number[];
  subPorts: number[];
  /** MQTT protocol level: 4 (3.1.1) or 5. */
  version: 4 | 5;
  qos: 0 | 1 | 2;
  /** Payload bytes (at least 16: publisher, sequence, timestamp). */
  payload: number;
  /** QoS 1/2: PUBLISH packets a publisher may have unacknowledged. */
  inflight: number;
  /** Messages a publisher may have sent that its slowest subscriber has not received. */
  outstanding: number;
  /** Messages per second for this worker's publishers together; 0 = as fast as flow control allows. */
  rate: number;
  pubs: PubPlan[];
  subs: SubPlan[];
  /** Subscribers keep a persistent session (clean session 0, or a v5 session expiry). */
  persistent: boolean;
  /**
   * Non-empty: every client connects with user name = client id and an HS256 token signed with
   * this secret as password, its `acl` claim granting its own topic or filter.
   */
  jwtSecret: string;
  /** Source addresses to spread connections over (empty: let the OS choose). */
  localAddresses: string[];
  /** Milliseconds between credit/progress reports to the coordinator. */
  reportMs: number;
  /** conn-storm: idle connections to open, and how many CONNECTs may wait for CONNACK at once. */
  storm?: { count: number; concurrency: number; clientPrefix: string };
  /** retained: topics to load under `prefix`, then subscribe with `filter`. */
  retained?: { topics: number; prefix: string; filter: string; clientPrefix: string };
}

/** Coordinator → worker. */
export type ToWorker =
  | { t: "plan"; plan: WorkerPlan }
  /** Begin at wall-clock `at` (ms); the measured window is [at + warmupMs, at + warmupMs + durationMs). */
  | { t: "start"; at: number; warmupMs: number; durationMs: number }
  /** Credit: the least number of messages any subscriber of publisher idx has received. */
  | { t: "credit"; c: number[] }
  /** Send the result and close every connection. */
  | { t: "finish" };

/** Worker → coordinator. */
export type FromWorker =
  | { t: "ready"; error?: string }
  /** Flat [pubIdx, leastUniqueReceived, ...] over this worker's subscribers, when it changed. */
  | { t: "rx"; c: number[] }
  /** Publishing ended; flat [pubIdx, sent, ...]. */
  | { t: "sent"; c: number[] }
  /** conn-storm: all connections are open (or failed). */
  | { t: "connected"; ok: number; failed: number; firstAt: number; lastAt: number; error?: string }
  /** retained: the phases' timings. */
  | {
    t: "retained";
    loadMs: number;
    receiveMs: number;
    received: number;
    dup: number;
    error?: string;
  }
  | { t: "result"; r: WorkerResult };

/** What a worker measured. */
export interface WorkerResult {
  /** PUBLISH packets sent, in total and inside the window. */
  sent: number;
  sentInWindow: number;
  /** Messages received, each counted once per subscriber (duplicates not counted). */
  received: number;
  receivedInWindow: number;
  /** Per publisher: [pubIdx, sum of unique receipts over this worker's subscribers, subscribers]. */
  uniq: number[];
  /** Flat [pubIdx, sent] for this worker's publishers. */
  sentBy: number[];
  duplicates: number;
  /** Messages that arrived after a later message of the same publisher. */
  reordered: number;
  /** Messages whose publisher this worker did not expect. */
  foreign: number;
  /** Latency histogram of the messages received inside the window (sparse) and its maximum. */
  hist: number[];
  histMax: number;
  /** CPU microseconds of this process inside the window. */
  cpuUser: number;
  cpuSystem: number;
  /** The load generator's own resident memory at the end of the window (KB). */
  rssKb: number;
  /**
   * Fixed rate: the longest time (µs) inside the window between two runs of the publishing
   * timer, which is due every millisecond; 0 otherwise.
   */
  maxPauseUs: number;
  errors: string[];
}
