/**
 * A server-side topic tree with message rates, for the web console: counts the messages published
 * on each topic (through a tap on `#`, started when the console asks and stopped when it has not
 * asked for a while), and answers "what is below this level" with message counts, rates and
 * retained messages. Bounded: at most `maxTopics` topics are tracked; messages on further topics
 * are counted as untracked.
 */
import type { Broker } from "../broker/broker.ts";
import { safely } from "../broker/guard.ts";
import { Tap } from "./tap.ts";

/** Topics tracked at most. */
export const MAX_TOPICS = 10_000;
/** The tap stops after this long without a request, ms. */
export const IDLE_MS = 5 * 60 * 1000;
/** Rates are computed over windows of this length, ms. */
export const RATE_WINDOW_MS = 5000;

interface Counter {
  count: number;
  bytes: number;
  /** `count` at the start of the current window. */
  mark: number;
  /** Messages per second over the last full window. */
  rate: number;
  last: number;
}

/** One level below the asked prefix. */
export interface TopicNode {
  /** The level's name. */
  name: string;
  /** The full topic of this node. */
  topic: string;
  /** Messages counted on this topic and below since tracking started. */
  messages: number;
  /** Messages per second on this topic and below. */
  rate: number;
  /** Retained messages on this topic and below. */
  retained: number;
  /** Topics (with traffic or a retained message) at and below this node. */
  topics: number;
  /** Whether this exact topic has traffic or a retained message (not only levels below). */
  leaf: boolean;
  /** Whether something lies below. */
  children: boolean;
}

/** Message counts per topic and the tree built from them. */
export class TopicStats {
  readonly #broker: Broker;
  readonly maxTopics: number;
  #counters = new Map<string, Counter>();
  #tap: Tap | null = null;
  #timer: ReturnType<typeof setInterval> | null = null;
  #lastAsked = 0;
  /** Messages on topics beyond `maxTopics`. */
  untracked = 0;
  /** When tracking started (ms since the epoch), 0 when it is off. */
  since = 0;

  constructor(broker: Broker, maxTopics = MAX_TOPICS) {
    this.#broker = broker;
    this.maxTopics = maxTopics;
  }

  /** Whether the tap is on. */
  get active(): boolean {
    return this.#tap !== null;
  }

  /** Internal subscriptions held (0 or 1), to leave out of the broker's figures. */
  get subscriptions(): number {
    return this.#tap ? 1 : 0;
  }

  /** Count one message (the tap's receiver; public for tests). */
  count(topic: string, bytes: number, now = Date.now()): void {
    let c = this.#counters.get(topic);
    if (!c) {
      if (this.#counters.size >= this.maxTopics) {
        this.untracked++;
        return;
      }
      c = { count: 0, bytes: 0, mark: 0, rate: 0, last: 0 };
      this.#counters.set(topic, c);
    }
    c.count++;
    c.bytes += bytes;
    c.last = now;
  }

  /** Close the current rate window (every RATE_WINDOW_MS; public for tests). */
  tick(windowMs = RATE_WINDOW_MS): void {
    for (const c of this.#counters.values()) {
      c.rate = ((c.count - c.mark) * 1000) / windowMs;
      c.mark = c.count;
    }
    if (this.#tap && Date.now() - this.#lastAsked > IDLE_MS) this.stop();
  }

  /** Start counting (if not yet) and note that someone is looking. */
  touch(): void {
    this.#lastAsked = Date.now();
    if (this.#tap) return;
    this.since = Date.now();
    this.#tap = new Tap(this.#broker, "#", (m) => this.count(m.topic, m.payload.length));
    this.#timer = setInterval(
      () => safely(this.#broker.log, "the topic statistics", () => this.tick()),
      RATE_WINDOW_MS,
    );
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /** Stop counting and forget the counts. */
  stop(): void {
    this.#tap?.close();
    this.#tap = null;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#counters.clear();
    this.untracked = 0;
    this.since = 0;
  }

  /**
   * The levels directly below `prefix` ("" = the top), each with the totals of everything under
   * it, sorted by name; at most `limit` of them. Retained messages count even when they had no
   * traffic since tracking started.
   */
  children(prefix: string, limit: number): { nodes: TopicNode[]; total: number } {
    const nodes = new Map<string, TopicNode>();
    const base = prefix === "" ? "" : prefix + "/";
    const visit = (topic: string, f: (n: TopicNode, exact: boolean) => void) => {
      if (base && !topic.startsWith(base)) return;
      const rest = topic.slice(base.length);
      if (prefix !== "" && topic === prefix) return;
      const slash = rest.indexOf("/");
      const name = slash < 0 ? rest : rest.slice(0, slash);
      let n = nodes.get(name);
      if (!n) {
        n = {
          name,
          topic: base + name,
          messages: 0,
          rate: 0,
          retained: 0,
          topics: 0,
          leaf: false,
          children: false,
        };
        nodes.set(name, n);
      }
      f(n, slash < 0);
    };
    const seen = new Set<string>();
    for (const [topic, c] of this.#counters) {
      visit(topic, (n, exact) => {
        n.messages += c.count;
        n.rate += c.rate;
        n.topics++;
        if (exact) n.leaf = true;
        else n.children = true;
      });
      seen.add(topic);
    }
    const retained = this.#broker.retained.match(prefix === "" ? "#" : `${prefix}/#`, Date.now());
    for (const m of retained) {
      visit(m.topic, (n, exact) => {
        n.retained++;
        if (!seen.has(m.topic)) n.topics++;
        if (exact) n.leaf = true;
        else n.children = true;
      });
    }
    const all = [...nodes.values()].sort((
      a,
      b,
    ) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const n of all) n.rate = Math.round(n.rate * 100) / 100;
    return { nodes: all.slice(0, limit), total: all.length };
  }
}
