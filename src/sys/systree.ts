/**
 * The `$SYS/broker/...` status topics with Mosquitto's names and value formats (src/sys_tree.c),
 * published retained by the broker itself every `sys_interval` seconds, each only when its value
 * changed since it was last published. `$SYS/broker/version` is published once at start, also
 * with `sys_interval = 0` (as Mosquitto does). Clients cannot publish under `$SYS`, and `#` or
 * `+` at the first level never match it [MQTT-4.7.2-1], so only a `$SYS/...` subscriber sees it.
 */
import process from "node:process";
import type { Broker } from "../broker/broker.ts";
import { VERSION } from "../version.ts";
import { gauges } from "./stats.ts";
import { safely } from "../broker/guard.ts";

const enc = new TextEncoder();

/** The `load/<name>` averages: each the per-minute rate of one counter. */
const LOADS = [
  "messages/received",
  "messages/sent",
  "publish/received",
  "publish/sent",
  "publish/dropped",
  "bytes/received",
  "bytes/sent",
  "sockets",
  "connections",
] as const;
type LoadName = typeof LOADS[number];

/** Averaging windows in seconds: 1, 5 and 15 minutes, as in Mosquitto and Unix load averages. */
const WINDOWS = [[60, "1min"], [300, "5min"], [900, "15min"]] as const;

export class SysTree {
  readonly broker: Broker;
  #timer: ReturnType<typeof setInterval> | null = null;
  #interval = 0;
  /** Last value published per topic, so only changes are sent. */
  readonly #last = new Map<string, string>();
  /** Load state: counter value at the previous tick and the three averages. */
  readonly #load = new Map<LoadName, { prev: number; avg: number[] }>();
  #lastTick = 0;
  #maxClients = 0;
  #heapMax = 0;
  /** More periodic values (a cluster node's `$SYS/broker/cluster/...`). */
  extra: (() => [string, string][]) | null = null;

  constructor(broker: Broker) {
    this.broker = broker;
  }

  /** Publish the version and a first update, then every `sys_interval` seconds (0 = never). */
  start(): void {
    this.publish("$SYS/broker/version", `midge version ${VERSION}`);
    this.#lastTick = Date.now();
    for (const n of LOADS) this.#load.set(n, { prev: this.#counter(n), avg: [0, 0, 0] });
    this.restart();
  }

  /** Apply a changed `sys_interval` (reload): restart the timer, publish at once. */
  restart(): void {
    const sec = this.broker.config.sys_interval;
    if (this.#timer && sec === this.#interval) return;
    this.#stopTimer();
    this.#interval = sec;
    if (sec > 0) {
      this.tick();
      this.#timer = setInterval(
        () => safely(this.broker.log, "$SYS", () => this.tick()),
        sec * 1000,
      );
    }
  }

  stop(): void {
    this.#stopTimer();
  }

  #stopTimer(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** Publish `value` retained on `topic` unless it is what was published there last. */
  publish(topic: string, value: string): void {
    if (this.#last.get(topic) === value) return;
    this.#last.set(topic, value);
    this.broker.publish({
      topic,
      payload: enc.encode(value),
      qos: 0,
      retain: true,
      expiresAt: 0,
      origin: "",
    });
  }

  #counter(n: LoadName): number {
    const st = this.broker.stats;
    switch (n) {
      case "messages/received":
        return st.messagesReceived;
      case "messages/sent":
        return st.messagesSent;
      case "publish/received":
        return st.publishReceived;
      case "publish/sent":
        return st.publishSent;
      case "publish/dropped":
        return st.publishDropped;
      case "bytes/received":
        return st.bytesReceived;
      case "bytes/sent":
        return st.bytesSent;
      case "sockets":
        return st.connectionsTotal;
      case "connections":
        return st.connects;
    }
  }

  /** Compute every periodic value and publish those that changed. */
  tick(now = Date.now()): void {
    for (const [topic, value] of this.values(now)) this.publish(topic, value);
  }

  /**
   * The periodic values as [topic, value] pairs; advances the load averages (Mosquitto's
   * formula: rate per minute over the last interval, folded into exponentially decaying means).
   */
  values(now = Date.now()): [string, string][] {
    const b = this.broker;
    const st = b.stats;
    const g = gauges(b);
    const out: [string, string][] = [];
    const put = (name: string, v: number | string) => out.push([`$SYS/broker/${name}`, String(v)]);

    put("uptime", `${Math.floor((now - b.startedAt) / 1000)} seconds`);

    if (g.sessions > this.#maxClients) this.#maxClients = g.sessions;
    put("clients/total", g.sessions);
    put("clients/maximum", this.#maxClients);
    put("clients/connected", g.connected);
    put("clients/active", g.connected);
    put("clients/disconnected", g.sessions - g.connected);
    put("clients/inactive", g.sessions - g.connected);
    put("clients/expired", st.clientsExpired);

    const stored = g.retained + g.queued + g.inflight;
    put("messages/received", st.messagesReceived);
    put("messages/sent", st.messagesSent);
    put("messages/stored", stored);
    put("store/messages/count", stored);
    put("store/messages/bytes", g.retainedBytes + g.queuedBytes + g.inflightBytes);

    put("subscriptions/count", g.subscriptions);
    put("shared_subscriptions/count", g.sharedSubscriptions);
    put("retained messages/count", g.retained);

    put("publish/messages/received", st.publishReceived);
    put("publish/messages/sent", st.publishSent);
    put("publish/messages/dropped", st.publishDropped);
    put("publish/bytes/received", st.publishBytesReceived);
    put("publish/bytes/sent", st.publishBytesSent);
    put("bytes/received", st.bytesReceived);
    put("bytes/sent", st.bytesSent);

    const heap = process.memoryUsage().heapUsed;
    if (heap > this.#heapMax) this.#heapMax = heap;
    put("heap/current", heap);
    put("heap/maximum", this.#heapMax);

    const seconds = (now - this.#lastTick) / 1000;
    this.#lastTick = now;
    for (const n of LOADS) {
      let l = this.#load.get(n);
      if (!l) this.#load.set(n, l = { prev: this.#counter(n), avg: [0, 0, 0] });
      const cur = this.#counter(n);
      if (seconds > 0) {
        const perMinute = (cur - l.prev) * 60 / seconds;
        WINDOWS.forEach(([w], i) => {
          const e = Math.exp(-seconds / w);
          l.avg[i] = perMinute + e * (l.avg[i] - perMinute);
        });
      }
      l.prev = cur;
      WINDOWS.forEach(([, label], i) => put(`load/${n}/${label}`, l.avg[i].toFixed(2)));
    }
    if (this.extra) out.push(...this.extra());
    return out;
  }
}
