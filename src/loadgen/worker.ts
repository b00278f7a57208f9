/**
 * The load generator's work inside one process: many MQTT connections on one event loop, with
 * PUBLISH packets encoded once and only their packet id, sequence number and timestamp patched per
 * message, many messages per socket write, and a minimal framer for what comes back.
 *
 * Every payload starts with 16 bytes: publisher index (u32), sequence number (u32) and the send
 * time in microseconds since the epoch (two u32). Receivers count each message once per
 * subscriber and notice duplicates, gaps and late (reordered) arrivals, so loss is counted, not
 * assumed. Publishers respect flow control: a bound on messages sent but not yet received by the
 * slowest subscriber (so the broker is measured moving messages, not buffering them), and at
 * QoS 1/2 also an inflight window of unacknowledged PUBLISH packets.
 */
import { type AclRule, benchToken } from "./token.ts";
import process from "node:process";
import { encode, preparePublish } from "../codec/encoder.ts";
import type { DialSocket } from "../transport/dial.ts";
import { dialTcp } from "../transport/dial.ts";
import { Histogram } from "./histogram.ts";
import type { FromWorker, PubPlan, SubPlan, ToWorker, WorkerPlan, WorkerResult } from "./plan.ts";

/** The acl rule of clients other than publishers and subscribers of a flow. */
const ALL: AclRule = { permission: "allow", action: "all", topic: "#" };

/** Microseconds since the epoch, with sub-millisecond resolution. */
export function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/** Largest batch of messages written at once by one publisher. */
const BATCH_BYTES = 64 * 1024;
/** A publisher whose socket holds more than this unsent waits (socket back-pressure). */
const SOCKET_HIGH_WATER = 256 * 1024;

/** Per publisher, per subscriber: what arrived. */
class Track {
  /** Next sequence number expected in order. */
  next = 0;
  unique = 0;
  /** Gaps not (yet) filled, as [from, to) pairs. */
  gaps: number[] = [];
}

type Waiter = { type: number; resolve: () => void; reject: (e: Error) => void };

/** One MQTT connection of the load generator (publisher, subscriber or idle). */
class Client {
  sock!: DialSocket;
  readonly w: Worker;
  readonly id: string;
  carry: Uint8Array | null = null;
  waiter: Waiter | null = null;
  closed = false;
  // Publisher side.
  pub: PubPlan | null = null;
  sent = 0;
  sentInWindow = 0;
  inflight = 0;
  nextId = 1;
  /** Local subscribers of this publisher (QoS 0 credit). */
  localSubs: Client[] = [];
  remoteCredit = Infinity;
  batch: Uint8Array | null = null;
  pktLen = 0;
  idOff = -1;
  payOff = 0;
  perBatch = 1;
  rate = 0;
  // Subscriber side.
  sub: SubPlan | null = null;
  tracks: Track[] = [];
  acks: Uint8Array = new Uint8Array(0);
  ackLen = 0;

  constructor(w: Worker, id: string) {
    this.w = w;
    this.id = id;
  }

  /**
   * Connect; with the plan's `jwtSecret`, as user `id` with a token whose acl claim is `acl`
   * (all topics when not given).
   */
  async open(
    localAddress: string | undefined,
    clean = true,
    acl?: AclRule[],
    port?: number,
  ): Promise<void> {
    const p = this.w.plan;
    this.sock = await dialTcp({ host: p.host, port: port ?? p.port, localAddress }, {
      onData: (d) => this.onData(d),
      onClose: () => {
        this.closed = true;
        if (this.waiter) this.waiter.reject(new Error(`${this.id}: connection closed`));
        this.waiter = null;
        if (!this.w.finishing) this.w.error(`${this.id}: connection closed by the broker`);
      },
      onDrain: () => this.w.schedulePump(),
    });
    const connect = encode({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: p.version,
      bridgeMode: false,
      clean,
      keepalive: 0,
      clientId: this.id,
      ...(p.jwtSecret
        ? {
          username: this.id,
          password: new TextEncoder().encode(
            benchToken(p.jwtSecret, this.id, acl ?? [ALL]),
          ),
        }
        : {}),
      // v5: a persistent session outlives the connection (v3.1.1: clean session 0 is enough).
      ...(!clean && p.version === 5 ? { properties: { sessionExpiryInterval: 3600 } } : {}),
    }, p.version);
    await this.request(connect, 2);
  }

  /** Write a packet and wait for a reply of packet type `type`. */
  request(bytes: Uint8Array, type: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiter = { type, resolve, reject };
      this.sock.write(bytes);
    });
  }

  async subscribe(filter: string, qos: number): Promise<void> {
    const bytes = encode({
      cmd: "subscribe",
      messageId: 1,
      subscriptions: [{ topic: filter, qos: qos as 0 | 1 | 2 }],
    }, this.w.plan.version);
    await this.request(bytes, 9);
  }

  /** Pre-encode the PUBLISH batch: `perBatch` copies of the packet, patched per message. */
  prepare(topic: string, qos: number, retain: boolean): void {
    const p = this.w.plan;
    const payload = new Uint8Array(Math.max(16, p.payload));
    const pub = this.pub;
    if (pub) writeU32(payload, 0, pub.idx);
    const prep = preparePublish({
      cmd: "publish",
      topic,
      payload,
      qos: qos as 0 | 1 | 2,
      retain,
      dup: false,
      messageId: qos > 0 ? 1 : undefined,
    }, p.version);
    this.pktLen = prep.bytes.length;
    this.idOff = prep.idOffset;
    this.payOff = prep.bytes.length - payload.length;
    this.perBatch = Math.max(1, Math.floor(BATCH_BYTES / this.pktLen));
    this.batch = new Uint8Array(this.perBatch * this.pktLen);
    for (let i = 0; i < this.perBatch; i++) this.batch.set(prep.bytes, i * this.pktLen);
  }

  /** Write `n` (≤ perBatch) messages with the next sequence numbers. */
  publishBatch(n: number, tsUs: number, inWindow: boolean): void {
    const b = this.batch!;
    const len = this.pktLen;
    const hi = Math.floor(tsUs / 4294967296), lo = tsUs >>> 0;
    let at = 0;
    for (let i = 0; i < n; i++, at += len) {
      if (this.idOff >= 0) {
        const id = this.nextId;
        this.nextId = id === 65535 ? 1 : id + 1;
        b[at + this.idOff] = id >>> 8;
        b[at + this.idOff + 1] = id & 0xff;
      }
      const pp = at + this.payOff;
      writeU32(b, pp + 4, this.sent + i);
      writeU32(b, pp + 8, hi);
      writeU32(b, pp + 12, lo);
    }
    this.sent += n;
    if (inWindow) this.sentInWindow += n;
    if (this.idOff >= 0) this.inflight += n;
    this.sock.write(n === this.perBatch ? b : b.subarray(0, at));
  }

  /** Messages the slowest subscriber has received. */
  credit(): number {
    let least = this.remoteCredit;
    const idx = this.pub!.idx;
    const subs = this.localSubs;
    for (let i = 0; i < subs.length; i++) {
      const s = subs[i];
      const u = s.tracks[idx - s.sub!.pubFrom].unique;
      if (u < least) least = u;
    }
    return least;
  }

  onData(chunk: Uint8Array): void {
    let buf = chunk;
    if (this.carry) {
      buf = new Uint8Array(this.carry.length + chunk.length);
      buf.set(this.carry);
      buf.set(chunk, this.carry.length);
      this.carry = null;
    }
    const end = buf.length;
    let p = 0;
    const now = this.sub ? nowUs() : 0;
    while (p < end) {
      // Fixed header: type/flags, remaining length (1-4 bytes).
      if (p + 2 > end) break;
      let rem = 0, mul = 1, q = p + 1, ok = false;
      for (let k = 0; k < 4 && q < end; k++) {
        const c = buf[q++];
        rem += (c & 0x7f) * mul;
        mul *= 128;
        if (c < 0x80) {
          ok = true;
          break;
        }
      }
      if (!ok) break;
      if (q + rem > end) break;
      this.packet(buf[p], buf, q, q + rem, now);
      p = q + rem;
    }
    if (p < end) this.carry = buf.slice(p);
    if (this.ackLen) {
      this.sock.write(this.acks.subarray(0, this.ackLen));
      this.ackLen = 0;
    }
    this.w.afterRead();
  }

  packet(first: number, b: Uint8Array, s: number, e: number, now: number): void {
    const type = first >> 4;
    if (type === 3) {
      this.onPublish(first, b, s, e, now);
      return;
    }
    const id = e - s >= 2 ? (b[s] << 8) | b[s + 1] : 0;
    switch (type) {
      case 4: // PUBACK
      case 7: // PUBCOMP
        this.inflight--;
        return;
      case 5: // PUBREC → PUBREL
        this.ack(0x62, id);
        return;
      case 6: // PUBREL → PUBCOMP
        this.ack(0x70, id);
        return;
      case 2: // CONNACK
        if (b[s + 1] !== 0) return this.fail(`CONNACK refused with code ${b[s + 1]}`);
        return this.wake(2);
      case 9: { // SUBACK: the granted QoS after the id (and v5 properties)
        let r = s + 2;
        if (this.w.plan.version === 5) r = skipVarint(b, r);
        if (b[r] >= 0x80) return this.fail(`SUBACK refused with code ${b[r]}`);
        return this.wake(9);
      }
      case 14:
        return this.fail(`DISCONNECT from the broker, reason ${e > s ? b[s] : 0}`);
      default:
        return;
    }
  }

  wake(type: number): void {
    const w = this.waiter;
    if (w && w.type === type) {
      this.waiter = null;
      w.resolve();
    }
  }

  fail(why: string): void {
    const w = this.waiter;
    this.waiter = null;
    if (w) w.reject(new Error(`${this.id}: ${why}`));
    else this.w.error(`${this.id}: ${why}`);
  }

  ack(first: number, id: number): void {
    if (this.ackLen + 4 > this.acks.length) {
      const n = new Uint8Array(Math.max(4096, this.acks.length * 2));
      n.set(this.acks.subarray(0, this.ackLen));
      this.acks = n;
    }
    const a = this.acks, at = this.ackLen;
    a[at] = first;
    a[at + 1] = 2;
    a[at + 2] = id >>> 8;
    a[at + 3] = id & 0xff;
    this.ackLen = at + 4;
  }

  onPublish(first: number, b: Uint8Array, s: number, e: number, now: number): void {
    const qos = (first >> 1) & 3;
    let p = s + 2 + ((b[s] << 8) | b[s + 1]);
    let id = 0;
    if (qos) {
      id = (b[p] << 8) | b[p + 1];
      p += 2;
      this.ack(qos === 1 ? 0x40 : 0x50, id);
    }
    if (this.w.plan.version === 5) {
      let len = 0, mul = 1;
      for (;;) {
        const c = b[p++];
        len += (c & 0x7f) * mul;
        mul *= 128;
        if (c < 0x80) break;
      }
      p += len;
    }
    if (e - p < 16) {
      this.w.foreign++;
      return;
    }
    const w = this.w;
    const pubIdx = readU32(b, p), seq = readU32(b, p + 4);
    const sub = this.sub!;
    const tr = this.tracks[pubIdx - sub.pubFrom];
    if (tr === undefined || pubIdx < sub.pubFrom) {
      w.foreign++;
      return;
    }
    if (seq === tr.next) {
      tr.next = seq + 1;
      tr.unique++;
    } else if (!slowTrack(tr, seq, w)) {
      return; // a duplicate
    }
    w.received++;
    if (now >= w.winStartUs && now < w.winEndUs) {
      w.receivedInWindow++;
      const ts = readU32(b, p + 8) * 4294967296 + readU32(b, p + 12);
      w.hist.record(now - ts);
    }
  }
}

/** A message out of order: fills a gap (reordered), opens one (missing so far), or repeats. */
function slowTrack(tr: Track, seq: number, w: Worker): boolean {
  if (seq > tr.next) {
    tr.gaps.push(tr.next, seq);
    tr.next = seq + 1;
    tr.unique++;
    return true;
  }
  const g = tr.gaps;
  for (let i = 0; i < g.length; i += 2) {
    if (seq >= g[i] && seq < g[i + 1]) {
      if (g[i + 1] - g[i] === 1) g.splice(i, 2);
      else if (seq === g[i]) g[i]++;
      else if (seq === g[i + 1] - 1) g[i + 1]--;
      else g.splice(i, 2, g[i], seq, seq + 1, g[i + 1]);
      tr.unique++;
      w.reordered++;
      return true;
    }
  }
  w.duplicates++;
  return false;
}

function writeU32(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 24;
  b[at + 1] = (v >>> 16) & 0xff;
  b[at + 2] = (v >>> 8) & 0xff;
  b[at + 3] = v & 0xff;
}

function readU32(b: Uint8Array, at: number): number {
  return ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
}

function skipVarint(b: Uint8Array, p: number): number {
  let len = 0, mul = 1;
  for (;;) {
    const c = b[p++];
    len += (c & 0x7f) * mul;
    mul *= 128;
    if (c < 0x80) break;
  }
  return p + len;
}

/** Run `fn` over `items` with at most `limit` at once. */
async function pool<T>(items: T[], limit: number, fn: (t: T, i: number) => Promise<void>) {
  let next = 0;
  const run = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, run));
}

/** The work of one load-generator process, driven by coordinator messages. */
export class Worker {
  readonly plan: WorkerPlan;
  readonly post: (m: FromWorker) => void;
  readonly hist = new Histogram();
  pubs: Client[] = [];
  subs: Client[] = [];
  idle: Client[] = [];
  received = 0;
  receivedInWindow = 0;
  duplicates = 0;
  reordered = 0;
  foreign = 0;
  winStartUs = Infinity;
  winEndUs = Infinity;
  startUs = Infinity;
  finishing = false;
  errors: string[] = [];
  #pumpScheduled = false;
  #publishing = false;
  #cpuStart = { user: 0, system: 0 };
  #cpu = { user: 0, system: 0 };
  #rssKb = 0;
  /** The window's CPU and memory are taken (by its timer or by the pump that saw it end). */
  #windowClosed = false;
  /** Fixed rate: when the pump last ran (µs), and the longest gap between two runs in the window. */
  #lastPumpUs = 0;
  #maxPumpGapUs = 0;
  #timers: ReturnType<typeof setInterval>[] = [];
  #lastRx = new Map<number, number>();
  #addr = 0;
  /** Resolves when the worker is done (its result sent). */
  done: Promise<void>;
  #resolveDone!: () => void;

  constructor(plan: WorkerPlan, post: (m: FromWorker) => void) {
    this.plan = plan;
    this.post = post;
    this.done = new Promise((r) => (this.#resolveDone = r));
  }

  error(why: string): void {
    if (this.errors.length < 20) this.errors.push(why);
  }

  #localAddress(): string | undefined {
    const a = this.plan.localAddresses;
    return a.length ? a[this.#addr++ % a.length] : undefined;
  }

  /** Open every connection and subscription, then report ready. */
  async setup(): Promise<void> {
    const p = this.plan;
    try {
      if (p.kind === "flow") await this.#setupFlow();
      this.post({ t: "ready" });
    } catch (e) {
      this.post({ t: "ready", error: String((e as Error).message ?? e) });
    }
  }

  async #setupFlow(): Promise<void> {
    const p = this.plan;
    this.subs = p.subs.map((s) => {
      const c = new Client(this, s.clientId);
      c.sub = s;
      c.tracks = Array.from({ length: s.pubTo - s.pubFrom }, () => new Track());
      return c;
    });
    this.pubs = p.pubs.map((pp) => {
      const c = new Client(this, pp.clientId);
      c.pub = pp;
      c.remoteCredit = pp.remote ? 0 : Infinity;
      c.localSubs = this.subs.filter((s) => pp.idx >= s.sub!.pubFrom && pp.idx < s.sub!.pubTo);
      return c;
    });
    await pool(this.subs, 64, async (c) => {
      const grant: AclRule = { permission: "allow", action: "subscribe", topic: c.sub!.filter };
      await c.open(this.#localAddress(), !p.persistent, [grant], pick(p.subPorts, c.sub!.idx));
      await c.subscribe(c.sub!.filter, p.qos);
    });
    await pool(this.pubs, 64, async (c) => {
      const grant: AclRule = { permission: "allow", action: "publish", topic: c.pub!.topic };
      await c.open(this.#localAddress(), true, [grant], pick(p.pubPorts, c.pub!.idx));
      c.prepare(c.pub!.topic, p.qos, false);
    });
    const perPub = p.pubs.length ? p.rate / p.pubs.length : 0;
    for (const c of this.pubs) c.rate = perPub;
  }

  handle(m: ToWorker): void {
    switch (m.t) {
      case "plan":
        return;
      case "start":
        void this.#start(m.at, m.warmupMs, m.durationMs);
        return;
      case "credit":
        for (let i = 0; i < m.c.length; i += 2) {
          const c = this.pubs.find((x) => x.pub!.idx === m.c[i]);
          if (c && m.c[i + 1] > c.remoteCredit) c.remoteCredit = m.c[i + 1];
        }
        this.schedulePump();
        return;
      case "finish":
        void this.#finish();
        return;
    }
  }

  async #start(at: number, warmupMs: number, durationMs: number): Promise<void> {
    const atUs = at * 1000;
    this.startUs = atUs;
    this.winStartUs = atUs + warmupMs * 1000;
    this.winEndUs = this.winStartUs + durationMs * 1000;
    const p = this.plan;
    this.#timers.push(setInterval(() => this.#report(), p.reportMs));
    await sleepUntil(at);
    if (p.kind === "storm") return this.#storm();
    if (p.kind === "retained") return this.#retained();
    this.#publishing = true;
    setTimeout(() => {
      this.#cpuStart = process.cpuUsage();
    }, Math.max(0, warmupMs));
    setTimeout(() => this.#closeWindow(), warmupMs + durationMs);
    if (p.rate > 0) this.#timers.push(setInterval(() => this.#pump(), 1));
    this.#pump();
  }

  /** Publish what flow control allows, once per event-loop turn. */
  schedulePump(): void {
    if (this.#pumpScheduled || !this.#publishing) return;
    this.#pumpScheduled = true;
    setImmediate(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  /**
   * The window's CPU and memory, once: by its timer, or by the pump that sees the window end
   * first (then the coordinator may ask for the result before the timer has run).
   */
  #closeWindow(): void {
    if (this.#windowClosed) return;
    this.#windowClosed = true;
    this.#cpu = process.cpuUsage(this.#cpuStart);
    this.#rssKb = Math.round(process.memoryUsage().rss / 1024);
  }

  #pump(): void {
    if (!this.#publishing) return;
    const now = nowUs();
    if (this.plan.rate > 0) {
      // At a fixed rate the pump runs every millisecond: a longer gap is time this process
      // could not run (its own GC, the OS, the hypervisor), and it shows in the latencies.
      if (this.#lastPumpUs && now > this.winStartUs && now <= this.winEndUs) {
        this.#maxPumpGapUs = Math.max(this.#maxPumpGapUs, now - this.#lastPumpUs);
      }
      this.#lastPumpUs = now;
    }
    if (now >= this.winEndUs) {
      this.#closeWindow();
      this.#publishing = false;
      const c: number[] = [];
      for (const pc of this.pubs) c.push(pc.pub!.idx, pc.sent);
      this.post({ t: "sent", c });
      return;
    }
    const p = this.plan;
    const inWindow = now >= this.winStartUs;
    for (let i = 0; i < this.pubs.length; i++) {
      const c = this.pubs[i];
      if (c.closed) continue;
      // Messages in transit to the slowest subscriber stay bounded at every QoS (at QoS 1/2 the
      // broker would otherwise queue, and past its queue limit drop, what it has acknowledged).
      let room = p.outstanding - (c.sent - c.credit());
      if (p.qos > 0) room = Math.min(room, p.inflight - c.inflight);
      if (c.rate > 0) {
        const due = Math.floor((c.rate * (now - this.startUs)) / 1e6);
        room = Math.min(room, due - c.sent);
      }
      while (room > 0 && c.sock.bufferedAmount < SOCKET_HIGH_WATER) {
        const n = Math.min(room, c.perBatch);
        c.publishBatch(n, now, inWindow);
        room -= n;
      }
    }
  }

  /** Report the least unique count per publisher over this worker's subscribers, when it moved. */
  #report(): void {
    const least = new Map<number, number>();
    for (const s of this.subs) {
      const sp = s.sub!;
      for (let k = 0; k < s.tracks.length; k++) {
        const idx = sp.pubFrom + k;
        const u = s.tracks[k].unique;
        const cur = least.get(idx);
        if (cur === undefined || u < cur) least.set(idx, u);
      }
    }
    const c: number[] = [];
    for (const [idx, u] of least) {
      if (this.#lastRx.get(idx) !== u) {
        this.#lastRx.set(idx, u);
        c.push(idx, u);
      }
    }
    if (c.length) this.post({ t: "rx", c });
  }

  // --- conn-storm -------------------------------------------------------------------------------

  async #storm(): Promise<void> {
    const st = this.plan.storm!;
    const ids = Array.from({ length: st.count }, (_, i) => `${st.clientPrefix}${i}`);
    let ok = 0, failed = 0, firstAt = 0, lastAt = 0;
    let firstErr: string | undefined;
    this.#cpuStart = process.cpuUsage();
    const t0 = Date.now();
    firstAt = t0;
    await pool(ids, st.concurrency, async (id) => {
      const c = new Client(this, id);
      try {
        await c.open(this.#localAddress());
        this.idle.push(c);
        ok++;
        lastAt = Date.now();
      } catch (e) {
        failed++;
        firstErr ??= String((e as Error).message ?? e);
        c.sock?.destroy();
      }
    });
    this.#cpu = process.cpuUsage(this.#cpuStart);
    this.#rssKb = Math.round(process.memoryUsage().rss / 1024);
    this.post({ t: "connected", ok, failed, firstAt, lastAt, error: firstErr });
  }

  // --- retained ---------------------------------------------------------------------------------

  async #retained(): Promise<void> {
    const r = this.plan.retained!;
    const p = this.plan;
    let loadMs = 0, receiveMs = 0;
    let error: string | undefined;
    const seen = new Uint8Array(r.topics);
    let received = 0, dup = 0;
    this.#cpuStart = process.cpuUsage();
    try {
      // Load: QoS 1 with an inflight window, so every message is known to be stored.
      const loader = new Client(this, `${r.clientPrefix}load`);
      await loader.open(this.#localAddress());
      this.idle.push(loader);
      const t0 = performance.now();
      const payload = new Uint8Array(Math.max(16, p.payload));
      let sent = 0;
      await new Promise<void>((resolve, reject) => {
        const pumpLoad = () => {
          if (loader.closed) return reject(new Error("loader connection closed"));
          const room = p.inflight - loader.inflight;
          if (sent >= r.topics && loader.inflight === 0) return resolve();
          if (room <= 0 || sent >= r.topics) return;
          const n = Math.min(room, r.topics - sent, 256);
          const parts: Uint8Array[] = [];
          let total = 0;
          for (let i = 0; i < n; i++, sent++) {
            writeU32(payload, 4, sent);
            const id = loader.nextId;
            loader.nextId = id === 65535 ? 1 : id + 1;
            const b = encode({
              cmd: "publish",
              topic: `${r.prefix}${sent % 100}/${sent}`,
              payload,
              qos: 1,
              retain: true,
              dup: false,
              messageId: id,
            }, p.version).slice();
            parts.push(b);
            total += b.length;
          }
          const out = new Uint8Array(total);
          let at = 0;
          for (const b of parts) {
            out.set(b, at);
            at += b.length;
          }
          loader.inflight += n;
          loader.sock.write(out);
        };
        this.#onLoadAck = pumpLoad;
        pumpLoad();
      });
      this.#onLoadAck = null;
      loadMs = performance.now() - t0;
      // Receive: one subscriber takes them all.
      const reader = new Client(this, `${r.clientPrefix}read`);
      const prefixBytes = new TextEncoder().encode(r.prefix);
      let t1 = 0;
      const all = new Promise<void>((resolve) => {
        reader.onPublish = (first, b, s, _e, _now) => {
          const qos = (first >> 1) & 3;
          const tlen = (b[s] << 8) | b[s + 1];
          let q = s + 2 + tlen;
          if (qos) {
            reader.ack(qos === 1 ? 0x40 : 0x50, (b[q] << 8) | b[q + 1]);
            q += 2;
          }
          if (p.version === 5) q = skipVarint(b, q);
          for (let k = 0; k < prefixBytes.length; k++) {
            if (b[s + 2 + k] !== prefixBytes[k]) return;
          }
          const seq = readU32(b, q + 4);
          if (seq < r.topics) {
            if (seen[seq]) dup++;
            else {
              seen[seq] = 1;
              received++;
              if (received === r.topics) resolve();
            }
          }
        };
      });
      await reader.open(this.#localAddress());
      this.idle.push(reader);
      t1 = performance.now();
      await reader.subscribe(r.filter, p.qos);
      // All of them, or give up once nothing has arrived for 3 s.
      let done = false;
      void all.then(() => (done = true));
      let last = -1, lastAt = Date.now();
      while (!done && Date.now() - lastAt < 3000) {
        if (received !== last) [last, lastAt] = [received, Date.now()];
        await Promise.race([all, sleep(50)]);
      }
      receiveMs = performance.now() - t1;
      if (received < r.topics) error = `received ${received} of ${r.topics} retained messages`;
    } catch (e) {
      error = String((e as Error).message ?? e);
    }
    this.#cpu = process.cpuUsage(this.#cpuStart);
    this.post({ t: "retained", loadMs, receiveMs, received, dup, error });
  }

  #onLoadAck: (() => void) | null = null;

  /** Called by clients after each read: publishers' windows may have opened. */
  afterRead(): void {
    if (this.#onLoadAck) this.#onLoadAck();
    else this.schedulePump();
  }

  async #finish(): Promise<void> {
    this.finishing = true;
    this.#publishing = false;
    for (const t of this.#timers) clearInterval(t);
    this.#report();
    const uniq: number[] = [];
    const byPub = new Map<number, [number, number]>();
    for (const s of this.subs) {
      const sp = s.sub!;
      for (let k = 0; k < s.tracks.length; k++) {
        const e = byPub.get(sp.pubFrom + k) ?? [0, 0];
        e[0] += s.tracks[k].unique;
        e[1]++;
        byPub.set(sp.pubFrom + k, e);
      }
    }
    for (const [idx, [u, n]] of byPub) uniq.push(idx, u, n);
    const sentBy: number[] = [];
    let sent = 0, sentInWindow = 0;
    for (const c of this.pubs) {
      sentBy.push(c.pub!.idx, c.sent);
      sent += c.sent;
      sentInWindow += c.sentInWindow;
    }
    if (!this.#rssKb) this.#rssKb = Math.round(process.memoryUsage().rss / 1024);
    const r: WorkerResult = {
      sent,
      sentInWindow,
      received: this.received,
      receivedInWindow: this.receivedInWindow,
      uniq,
      sentBy,
      duplicates: this.duplicates,
      reordered: this.reordered,
      foreign: this.foreign,
      hist: this.hist.toSparse(),
      histMax: this.hist.max,
      cpuUser: this.#cpu.user,
      cpuSystem: this.#cpu.system,
      rssKb: this.#rssKb,
      maxPauseUs: this.#maxPumpGapUs,
      errors: this.errors,
    };
    this.post({ t: "result", r });
    const disconnect = new Uint8Array([0xe0, 0x00]);
    const all = [...this.pubs, ...this.subs, ...this.idle];
    for (const c of all) {
      if (c.closed || !c.sock) continue;
      c.sock.write(disconnect);
      c.sock.end();
    }
    // Give the sockets a moment to close cleanly, but never wait long for them.
    const deadline = Date.now() + 2000;
    while (Date.now() < deadline && all.some((c) => c.sock && !c.closed)) await sleep(20);
    for (const c of all) if (c.sock && !c.closed) c.sock.destroy();
    this.#resolveDone();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function sleepUntil(epochMs: number): Promise<void> {
  const d = epochMs - Date.now();
  if (d > 0) await sleep(d);
}

/** The port of client `idx` from a round-robin list (undefined when the list is empty). */
function pick(ports: number[] | undefined, idx: number): number | undefined {
  return ports && ports.length ? ports[idx % ports.length] : undefined;
}
