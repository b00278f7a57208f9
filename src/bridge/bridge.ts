/**
 * Bridges: connections from this broker to other brokers, configured as Mosquitto configures
 * them (`[[bridge]]` tables with the same option names).
 *
 * Outgoing messages ride on an ordinary persistent session on this broker (`local_clientid`):
 * the bridge's `out` topics are its subscriptions, and while the remote is away the broker queues
 * for it (on disk when persistence is on), exactly as for a client that is offline. When the link
 * is up, a `BridgeLink` is that session's delivery sink (src/broker/sink.ts) instead of a network
 * connection: what the broker delivers is published to the remote, and the remote's
 * acknowledgement completes the local QoS 1/2 delivery (`Broker.completeOutgoing`). Incoming messages (`in` topics) are published locally with the local
 * session as origin, and acknowledged to the remote only once they are safe here.
 *
 * Loops are prevented both ways: the local subscriptions are No Local (what came in from the
 * remote does not go back out), and the remote subscriptions are No Local too (v5), or the
 * remote learns that we are a bridge from the CONNECT flag (try_private, v3).
 */
import { hostname } from "node:os";
import type { BridgeConfig } from "../config/schema.ts";
import { splitBridgeTopic } from "../config/schema.ts";
import type { Properties, ProtocolVersion, PublishPacket, QoS } from "../codec/types.ts";
import type { Attachment, Broker } from "../broker/broker.ts";
import type { DeliverySink } from "../broker/sink.ts";
import { DEFAULT_TERMS } from "../broker/terms.ts";
import { PUBREL } from "../codec/encoder.ts";
import { NEVER_EXPIRES, Session } from "../broker/session.ts";
import type { Outgoing } from "../broker/outgoing.ts";
import { forwardedProperties } from "../broker/message.ts";
import { fitsWithPrefix, topicMatches } from "../broker/topic.ts";
import { errorText, safely } from "../broker/guard.ts";
import { MqttClient, parseServerUrl, type ServerAddress } from "../client/client.ts";
import { readFileSync } from "node:fs";

/** One topic line of a bridge. */
export interface BridgeTopic {
  pattern: string;
  direction: "in" | "out" | "both";
  qos: QoS;
  localPrefix: string;
  remotePrefix: string;
}

/** Parses Mosquitto's `pattern [in|out|both [qos [local-prefix remote-prefix]]]`. */
export function parseBridgeTopic(line: string): BridgeTopic {
  const [pattern, direction = "out", qos = "0", localPrefix = "", remotePrefix = ""] =
    splitBridgeTopic(line);
  return {
    pattern,
    direction: direction as BridgeTopic["direction"],
    qos: Number(qos) as QoS,
    localPrefix,
    remotePrefix,
  };
}

/** Reconnect delays: "base cap" grows with jitter, a single number is constant. */
export function backoff(spec: string, attempt: number): number {
  const [base, cap] = spec.trim().split(/\s+/).map(Number);
  if (!Number.isFinite(base) || base <= 0) return 5000;
  if (cap === undefined || !Number.isFinite(cap)) return base * 1000;
  const ceil = Math.min(cap, base * 2 ** attempt);
  // Full jitter between base and the current ceiling.
  return (base + Math.random() * Math.max(0, ceil - base)) * 1000;
}

const VERSIONS: Record<string, ProtocolVersion> = { mqttv31: 3, mqttv311: 4, mqttv50: 5 };

/**
 * The delivery sink of a bridge's local session while the link is up: what the broker delivers
 * to it is published to the remote. The remote exchange is the bridge client's own; locally a
 * message is done when the remote has acknowledged it (PUBACK, or PUBCOMP for QoS 2).
 */
class BridgeLink implements DeliverySink {
  readonly bridge: Bridge;
  state: "open" | "closed" = "open";
  readonly congested = false;
  readonly quiet = false;
  readonly terms = DEFAULT_TERMS;
  readonly listener = undefined;

  constructor(bridge: Bridge) {
    this.bridge = bridge;
  }

  sendPublish(o: Outgoing, id: number): boolean {
    if (this.state === "open") this.bridge.forward(o, id);
    return true;
  }

  /**
   * Only a resumed session sends acknowledgements: a PUBREL for a QoS 2 message whose PUBREC came
   * before a restart. The remote had the message then, so it is done here.
   */
  sendAck(first: number, id: number): void {
    if (first !== PUBREL || this.state !== "open") return;
    // After the caller's walk over the session's in-flight messages.
    queueMicrotask(() => this.bridge.completed(2, id));
  }

  awaitRoom(): void {}

  /** A client taking the bridge's local client id over, or an admin's kick: the link detaches. */
  close(): void {
    this.bridge.detach(this);
  }
}

export class Bridge {
  readonly broker: Broker;
  cfg: BridgeConfig;
  readonly remoteId: string;
  readonly localId: string;
  readonly topics: BridgeTopic[];
  readonly notificationTopic: string;
  client: MqttClient | null = null;
  #link: BridgeLink | null = null;
  #stopped = false;
  #attempt = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #addressIndex = 0;
  /** Connected at least once (start_type "once" stops after the first link ends). */
  #everConnected = false;
  /** Last traffic over the link (lazy bridges disconnect when idle). */
  #lastActivity = 0;

  constructor(broker: Broker, cfg: BridgeConfig) {
    this.broker = broker;
    this.cfg = cfg;
    this.remoteId = cfg.remote_clientid || `${cfg.name}.${hostname()}`;
    this.localId = cfg.local_clientid || `local.${this.remoteId}`;
    this.topics = cfg.topic.map(parseBridgeTopic);
    this.notificationTopic = cfg.notification_topic ||
      `$SYS/broker/connection/${this.remoteId}/state`;
  }

  /** The local session that holds outgoing messages while the remote is away. */
  get session(): Session {
    let s = this.broker.sessions.get(this.localId);
    if (!s) {
      s = new Session(this.localId);
      s.protocolVersion = 5;
      this.broker.sessions.set(this.localId, s);
    }
    s.expiryInterval = NEVER_EXPIRES;
    return s;
  }

  /** Set up the local subscriptions and start connecting (unless start_type is lazy). */
  start(): void {
    this.#stopped = false;
    this.#subscribeLocal();
    this.#notifyLocal("0");
    if (this.cfg.start_type !== "lazy") this.#connect();
  }

  /** Local subscriptions = the out/both topic lines (No Local: never echo what came in). */
  #subscribeLocal(): void {
    const s = this.session;
    const wanted = new Map<string, BridgeTopic>();
    for (const t of this.topics) {
      if (t.direction !== "in") wanted.set(t.localPrefix + t.pattern, t);
    }
    for (const filter of [...s.subscriptions.keys()]) {
      if (!wanted.has(filter)) this.broker.unsubscribe(s, filter);
    }
    for (const [filter, t] of wanted) {
      this.broker.subscribe(s, {
        session: s,
        filter,
        topicFilter: filter,
        qos: t.qos,
        nl: true,
        rap: true,
        rh: 2,
        subId: 0,
        group: "",
      });
    }
    this.broker.saveSession(s);
  }

  /** v5 CONNECT properties: a remote session that outlives the link, our packet size limit. */
  #connectProperties(): Properties {
    const p: Properties = {};
    if (!this.cfg.cleansession) p.sessionExpiryInterval = NEVER_EXPIRES;
    if (this.cfg.bridge_max_packet_size) p.maximumPacketSize = this.cfg.bridge_max_packet_size;
    return p;
  }

  #servers(): ServerAddress[] {
    const tls = this.cfg.bridge_cafile !== "";
    const list = this.cfg.addresses.map((a) =>
      parseServerUrl(a.includes("://") ? a : `${tls ? "mqtts" : "mqtt"}://${a}`)
    );
    // round_robin: start where the last attempt left off; otherwise always from the first.
    if (!this.cfg.round_robin) return list;
    const i = this.#addressIndex % list.length;
    return [...list.slice(i), ...list.slice(0, i)];
  }

  async #connect(): Promise<void> {
    if (this.#stopped || this.client) return;
    const cfg = this.cfg;
    const version = VERSIONS[cfg.bridge_protocol_version] ?? 4;
    const notify = cfg.notifications;
    try {
      const client = await MqttClient.connect({
        servers: this.#servers(),
        protocolVersion: version,
        clientId: this.remoteId,
        clean: cfg.cleansession,
        keepalive: cfg.keepalive_interval,
        username: cfg.remote_username || undefined,
        password: cfg.remote_password || undefined,
        bridgeMode: cfg.try_private,
        manualAck: true,
        connectTimeout: 10000,
        ...(version === 5 ? { properties: this.#connectProperties() } : {}),
        ...(notify
          ? {
            will: {
              topic: this.notificationTopic,
              payload: new TextEncoder().encode("0"),
              qos: 1,
              retain: true,
            },
          }
          : {}),
        ...(cfg.bridge_cafile
          ? {
            tls: {
              ca: readFileSync(cfg.bridge_cafile, "utf8"),
              ...(cfg.bridge_certfile ? { cert: readFileSync(cfg.bridge_certfile, "utf8") } : {}),
              ...(cfg.bridge_keyfile ? { key: readFileSync(cfg.bridge_keyfile, "utf8") } : {}),
              rejectUnauthorized: true,
              ...(cfg.bridge_insecure ? { checkServerIdentity: () => undefined } : {}),
            },
          }
          : {}),
      });
      if (this.#stopped) {
        await client.end();
        return;
      }
      this.client = client;
      this.#lastActivity = Date.now();
      this.#attempt = 0;
      this.#everConnected = true;
      this.broker.log.notice(
        `Bridge ${cfg.name}: connected to ${client.server?.host}:${client.server?.port}.`,
      );
      client.on("message", (p: PublishPacket, ack: () => void) => this.#incoming(p, ack));
      client.on("close", () => this.#safely("link down", () => this.#down()));
      client.on("offline", () => this.#safely("link down", () => this.#down()));
      // Remote subscriptions: the in/both lines.
      const subs = this.topics.filter((t) => t.direction !== "out").map((t) => ({
        topic: t.remotePrefix + t.pattern,
        qos: t.qos,
        nl: version === 5,
        rap: true,
      }));
      if (subs.length) await client.subscribe(subs);
      if (notify) {
        await client.publish(this.notificationTopic, "1", { qos: 1, retain: true });
        this.#notifyLocal("1");
      }
      // Attach the link to the local session and send what waited.
      const s = this.session;
      const link = new BridgeLink(this);
      this.#link = link;
      s.connection = link;
      s.clearTimers(this.broker.clock);
      this.broker.resume(s, link);
    } catch (e) {
      this.broker.log.warning(
        `Bridge ${cfg.name}: connection failed: ${e instanceof Error ? e.message : String(e)}.`,
      );
      this.#addressIndex++;
      this.#retry();
    }
  }

  #retry(): void {
    if (this.#stopped) return;
    if (this.cfg.start_type === "once" && this.#everConnected) return;
    const delay = backoff(this.cfg.restart_timeout, this.#attempt++);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#connect();
    }, delay);
  }

  /** Run a callback of the link (timer, promise, client event): an error is logged, not thrown. */
  #safely(what: string, fn: () => void): void {
    safely(this.broker.log, `bridge ${this.cfg.name}: ${what}`, fn);
  }

  /** The link went down: the local session goes offline (it keeps queueing), then reconnect. */
  #down(): void {
    const client = this.client;
    if (!client) return;
    this.client = null;
    client.removeAllListeners();
    client.destroy();
    this.detach();
    this.broker.log.notice(`Bridge ${this.cfg.name}: connection lost.`);
    if (this.cfg.notifications) this.#notifyLocal("0");
    this.#retry();
  }

  /** The local session stops delivering to the link (`link`: only if it is still that one). */
  detach(link: BridgeLink | null = this.#link): void {
    if (!link) return;
    if (this.#link === link) this.#link = null;
    link.state = "closed";
    const s = this.broker.sessions.get(this.localId);
    if (s && s.connection === link) {
      s.connection = null;
      s.disconnectedAt = Date.now();
      this.broker.saveSession(s);
    }
  }

  /** A message from the local session to the remote (QoS 1/2 complete on the remote's ack). */
  forward(o: Outgoing, id: number): void {
    const client = this.client;
    if (!client) return;
    this.#lastActivity = Date.now();
    const t = this.#mapOut(o.msg.topic);
    if (t === null) {
      // Not sent: completed as if acknowledged, once the broker has recorded it in flight (it
      // does so after this call returns).
      queueMicrotask(() => this.completed(o.qos, id));
      return;
    }
    client.publish(t, o.msg.payload, {
      qos: o.qos,
      retain: this.cfg.bridge_outgoing_retain ? o.msg.retain : false,
      properties: o.msg.properties,
    }).then(
      () => this.completed(o.qos, id),
      () => {/* resent after reconnect */},
    );
  }

  /** The remote has the message sent as `id` (or it was not for the remote): done here too. */
  completed(qos: QoS, id: number): void {
    if (!this.#link || qos === 0) return;
    this.#safely("acknowledgement", () => {
      const s = this.broker.sessions.get(this.localId);
      if (s && s.connection === this.#link) this.broker.completeOutgoing(s, id, qos);
    });
  }

  /**
   * local topic → remote topic for the first out/both line whose local form matches; null when
   * none does, or when the remote prefix would make it longer than a topic can be (logged).
   */
  #mapOut(topic: string): string | null {
    for (const t of this.topics) {
      if (t.direction === "in" || !topic.startsWith(t.localPrefix)) continue;
      const rest = topic.slice(t.localPrefix.length);
      if (!topicMatches(t.pattern, rest)) continue;
      if (!t.remotePrefix) return rest;
      return this.#prefixed(t.remotePrefix, rest, "remote");
    }
    return null;
  }

  /**
   * remote topic → local topic for the first in/both line whose remote form matches; null when
   * none does, or when the local prefix would make it longer than a topic can be (logged).
   */
  #mapIn(topic: string): BridgeTopic & { local: string } | null {
    for (const t of this.topics) {
      if (t.direction === "out" || !topic.startsWith(t.remotePrefix)) continue;
      const rest = topic.slice(t.remotePrefix.length);
      if (!topicMatches(t.pattern, rest)) continue;
      const local = t.localPrefix ? this.#prefixed(t.localPrefix, rest, "local") : rest;
      return local === null ? null : { ...t, local };
    }
    return null;
  }

  /** `prefix + topic`, or null (logged: the message is dropped) past 65,535 bytes [MQTT-4.7.3-3]. */
  #prefixed(prefix: string, topic: string, side: string): string | null {
    if (fitsWithPrefix(prefix, topic)) return prefix + topic;
    this.broker.log.warning(
      `Bridge ${this.cfg.name}: message dropped: with the ${side} prefix its topic (${
        topic.slice(0, 40)
      }…) would be longer than 65535 bytes.`,
    );
    return null;
  }

  /** A message from the remote: publish it here, acknowledge once it is on disk. */
  #incoming(p: PublishPacket, ack: () => void): void {
    try {
      this.#receive(p, ack);
    } catch (e) {
      // Logged and dropped: acknowledged, so the remote does not send it again and again.
      this.broker.log.error(`Bridge ${this.cfg.name}: message dropped: ${errorText(e)}`);
      this.#safely("acknowledgement", ack);
    }
  }

  #receive(p: PublishPacket, ack: () => void): void {
    this.#lastActivity = Date.now();
    const m = this.#mapIn(p.topic);
    if (!m) {
      ack();
      return;
    }
    const expiry = p.properties?.messageExpiryInterval;
    this.broker.publish({
      topic: m.local,
      payload: p.payload,
      qos: Math.min(p.qos, m.qos) as QoS,
      retain: p.retain,
      properties: forwardedProperties(p.properties),
      expiresAt: expiry ? Date.now() + expiry * 1000 : 0,
      origin: this.localId,
    });
    if (p.qos > 0) this.broker.ackAfterCommit(ack, () => {});
  }

  #notifyLocal(state: "0" | "1"): void {
    if (!this.cfg.notifications) return;
    this.broker.publish({
      topic: this.notificationTopic,
      payload: new TextEncoder().encode(state),
      qos: 1,
      retain: true,
      expiresAt: 0,
      origin: "",
    });
  }

  /** Stop the bridge: close the link (the remote publishes our will "0"). */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const client = this.client;
    this.client = null;
    this.detach();
    if (client) {
      client.removeAllListeners();
      if (this.cfg.notifications) {
        await client.publish(this.notificationTopic, "0", { qos: 1, retain: true }).catch(() => {});
      }
      await client.end().catch(() => {});
    }
    this.#notifyLocal("0");
  }

  /**
   * Lazy bridges (called from the broker's periodic sweep): connect once `threshold` messages
   * wait, disconnect after `idle_timeout` seconds without traffic.
   */
  checkLazy(now: number): void {
    if (this.cfg.start_type !== "lazy" || this.#stopped) return;
    const client = this.client;
    if (!client) {
      const s = this.broker.sessions.get(this.localId);
      if (s && s.queue.length >= this.cfg.threshold && !this.#timer) void this.#connect();
    } else if (now - this.#lastActivity > this.cfg.idle_timeout * 1000 && client.inflight === 0) {
      this.client = null;
      client.removeAllListeners();
      this.detach();
      client.end().catch(() => {});
      this.#notifyLocal("0");
    }
  }
}

/** All bridges of the broker; `apply` adds, changes and removes them (start-up and SIGHUP). */
export class BridgeManager implements Attachment {
  readonly broker: Broker;
  readonly bridges = new Map<string, Bridge>();

  constructor(broker: Broker) {
    this.broker = broker;
  }

  /** Start the bridges of the broker's configuration. */
  start(): Promise<void> {
    return this.apply(this.broker.config.bridges ?? []);
  }

  /** SIGHUP: new [[bridge]] tables start, removed ones stop, changed ones restart. */
  reload(): Promise<void> {
    return this.apply(this.broker.config.bridges ?? []);
  }

  /** Make the running bridges match `configs`: new ones start, removed ones stop, changed ones restart. */
  async apply(configs: BridgeConfig[]): Promise<void> {
    const wanted = new Map(configs.map((c) => [c.name, c]));
    for (const [name, b] of this.bridges) {
      const c = wanted.get(name);
      if (!c || JSON.stringify(c) !== JSON.stringify(b.cfg)) {
        await b.stop();
        this.bridges.delete(name);
        if (!c) this.#dropSession(b);
      }
    }
    for (const [name, c] of wanted) {
      if (this.bridges.has(name)) continue;
      const b = new Bridge(this.broker, c);
      this.bridges.set(name, b);
      b.start();
    }
  }

  /** A removed bridge's local session and its queue go too. */
  #dropSession(b: Bridge): void {
    const s = this.broker.sessions.get(b.localId);
    if (s && !s.connection) this.broker.endSession(s);
  }

  /** Stop every bridge. */
  async stop(): Promise<void> {
    await Promise.all([...this.bridges.values()].map((b) => b.stop()));
    this.bridges.clear();
  }

  /** Periodic housekeeping (lazy bridges). */
  sweep(now: number): void {
    for (const b of this.bridges.values()) b.checkLazy(now);
  }
}
