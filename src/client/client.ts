/**
 * A small MQTT 3.1 / 3.1.1 / 5.0 client on Midge's own codec, used by `midge pub`, `sub` and `rr`
 * (and meant for bench and bridges): connect with will, credentials and TLS; subscribe and
 * unsubscribe; publish at QoS 0, 1 and 2 with the full acknowledgement state machines and an
 * inflight window; keep-alive; clean disconnect; and failover across several servers, with the
 * subscriptions made again on the next server.
 *
 * ```ts
 * const c = await MqttClient.connect({ servers: [{ protocol: "mqtt", host: "localhost", port: 1883 }] });
 * c.on("message", (p) => console.log(p.topic, new TextDecoder().decode(p.payload)));
 * await c.subscribe([{ topic: "a/#", qos: 1 }]);
 * await c.publish("a/b", "hello", { qos: 2 });
 * await c.end();
 * ```
 */
import { EventEmitter } from "node:events";
import { encode } from "../codec/encoder.ts";
import { Decoder } from "../codec/decoder.ts";
import type {
  AckPacket,
  ConnackPacket,
  DisconnectPacket,
  Packet,
  Properties,
  ProtocolVersion,
  PublishPacket,
  QoS,
  SubackPacket,
  Subscription,
  UnsubackPacket,
  Will,
} from "../codec/types.ts";
import {
  dial,
  type DialOptions,
  formatAddress,
  type ServerAddress,
  type Stream,
} from "./transport.ts";

export type { ServerAddress, TlsOptions } from "./transport.ts";
export { defaultPort, formatAddress, parseServerUrl } from "./transport.ts";

/** How to connect. Only `servers` is required. */
export interface ClientOptions {
  /** Tried in order; on loss the client moves on to the next one (failover). */
  servers: ServerAddress[];
  /** 3 = MQTT 3.1, 4 = 3.1.1 (default), 5 = 5.0. */
  protocolVersion?: ProtocolVersion;
  /** Default "" (the broker assigns one; MQTT 3.1 needs one, so a random id is made there). */
  clientId?: string;
  /** Clean session / clean start; default true. */
  clean?: boolean;
  /** Seconds; default 60; 0 = no keep-alive. */
  keepalive?: number;
  username?: string;
  password?: string | Uint8Array;
  will?: Will;
  /** MQTT 5 CONNECT properties. */
  properties?: Properties;
  tls?: DialOptions["tls"];
  localAddress?: string;
  /** Connect through a SOCKS5 proxy (the tools' --proxy). */
  proxy?: DialOptions["proxy"];
  /** Per attempt, ms (TCP + TLS + CONNACK); default 30000. */
  connectTimeout?: number;
  /** Reconnect (to the next server) after the connection is lost; default false. */
  reconnect?: boolean;
  /** Pause between rounds over all servers, ms; default 1000. */
  reconnectDelay?: number;
  /** Give up after this many failed rounds over all servers; default: never. */
  reconnectRounds?: number;
  /** Most outgoing QoS 1/2 messages awaiting acknowledgement; default 65535 (and never above the server's Receive Maximum). */
  maxInflight?: number;
  /** Set bit 7 of the protocol level in CONNECT (Mosquitto's try_private): "I am a bridge". */
  bridgeMode?: boolean;
  /**
   * Hold back PUBACK/PUBREC for a received QoS 1/2 message until the `ack` function passed as the
   * second argument of the "message" event is called (a bridge acknowledges only once the
   * message is safe locally).
   */
  manualAck?: boolean;
  /** Called for every packet sent and received (for `-d`). */
  trace?: (direction: "sent" | "received", packet: Packet) => void;
}

/** A failure to connect: `code` is a CONNACK code (>0), or a socket error code like "ECONNREFUSED". */
export class ConnectError extends Error {
  constructor(message: string, readonly code: number | string, readonly connack?: ConnackPacket) {
    super(message);
    this.name = "ConnectError";
  }
}

/** Publish options. */
export interface PublishOptions {
  qos?: QoS;
  retain?: boolean;
  properties?: Properties;
}

interface Outgoing {
  packet: PublishPacket;
  /** What we wait for next. */
  state: "puback" | "pubrec" | "pubcomp";
  resolve: (ack: AckPacket | undefined) => void;
  reject: (e: Error) => void;
}

interface Pending<T> {
  resolve: (p: T) => void;
  reject: (e: Error) => void;
}

const encoder = new TextEncoder();

/** The v3 CONNACK refusals, as Mosquitto prints them. */
const CONNACK_V3: Record<number, string> = {
  1: "Connection Refused: unacceptable protocol version",
  2: "Connection Refused: identifier rejected",
  3: "Connection Refused: broker unavailable",
  4: "Connection Refused: bad user name or password",
  5: "Connection Refused: not authorised",
};

/** Text for a v5 reason code (the common ones). */
export function reasonText(code: number): string {
  const t: Record<number, string> = {
    0x00: "Success",
    0x04: "Disconnect with Will Message",
    0x80: "Unspecified error",
    0x81: "Malformed Packet",
    0x82: "Protocol Error",
    0x83: "Implementation specific error",
    0x84: "Unsupported Protocol Version",
    0x85: "Client Identifier not valid",
    0x86: "Bad User Name or Password",
    0x87: "Not authorized",
    0x88: "Server unavailable",
    0x89: "Server busy",
    0x8a: "Banned",
    0x8b: "Server shutting down",
    0x8c: "Bad authentication method",
    0x8d: "Keep Alive timeout",
    0x8e: "Session taken over",
    0x8f: "Topic Filter invalid",
    0x90: "Topic Name invalid",
    0x91: "Packet Identifier in use",
    0x92: "Packet Identifier not found",
    0x93: "Receive Maximum exceeded",
    0x94: "Topic Alias invalid",
    0x95: "Packet too large",
    0x96: "Message rate too high",
    0x97: "Quota exceeded",
    0x98: "Administrative action",
    0x99: "Payload format invalid",
    0x9a: "Retain not supported",
    0x9b: "QoS not supported",
    0x9c: "Use another server",
    0x9d: "Server moved",
    0x9e: "Shared Subscriptions not supported",
    0x9f: "Connection rate exceeded",
    0xa0: "Maximum connect time",
    0xa1: "Subscription Identifiers not supported",
    0xa2: "Wildcard Subscriptions not supported",
  };
  return t[code] ?? `reason code ${code}`;
}

/** The message for a refused CONNACK in either protocol generation. */
export function connackText(code: number, version: ProtocolVersion): string {
  return version === 5 ? reasonText(code) : CONNACK_V3[code] ?? `Connection Refused: code ${code}`;
}

/**
 * An MQTT client. Events: `connect` (connack, server) after every successful CONNACK, `message`
 * (PublishPacket), `offline` (error?) when a connection is lost, `disconnect` (v5 DISCONNECT from
 * the server), `close` when the client is finished (ended, or lost with no reconnect), `error`.
 */
export class MqttClient extends EventEmitter {
  readonly options: ClientOptions;
  readonly protocolVersion: ProtocolVersion;
  clientId: string;
  /** The server of the live connection (or the last one). */
  server: ServerAddress | undefined;
  connack: ConnackPacket | undefined;
  connected = false;
  #stream: Stream | undefined;
  #decoder: Decoder;
  #serverIndex = 0;
  #ending = false;
  #closed = false;
  #nextId = 1;
  #outgoing = new Map<number, Outgoing>();
  /** QoS 1/2 publishes waiting for room in the inflight window (or for a connection). */
  #queue: Outgoing[] = [];
  #incomingQos2 = new Set<number>();
  #subacks = new Map<number, Pending<SubackPacket>>();
  #unsubacks = new Map<number, Pending<UnsubackPacket>>();
  /** Active subscriptions, made again after failover when the session is not present. */
  #subscriptions = new Map<string, Subscription>();
  #subscribeProps: Properties | undefined;
  #maxInflight: number;
  #aliasesIn = new Map<number, string>();
  #pingTimer: ReturnType<typeof setTimeout> | undefined;
  #pingOutstanding = false;
  #lastSent = 0;
  #keepalive: number;
  #connectWaiter: Pending<ConnackPacket> | undefined;
  #reconnecting = false;

  private constructor(options: ClientOptions) {
    super();
    if (!options.servers.length) throw new Error("no server given");
    this.options = options;
    this.protocolVersion = options.protocolVersion ?? 4;
    this.clientId = options.clientId ??
      (this.protocolVersion === 3 ? `midge-${Math.random().toString(36).slice(2, 12)}` : "");
    this.#keepalive = options.keepalive ?? 60;
    this.#maxInflight = options.maxInflight ?? 65535;
    this.#decoder = new Decoder({ protocolVersion: this.protocolVersion });
  }

  /**
   * Connects to the first server that accepts; rejects with a `ConnectError` for the last
   * failure once every server has been tried (a CONNACK refusal stops at once: it is an answer).
   */
  static async connect(options: ClientOptions): Promise<MqttClient> {
    const c = new MqttClient(options);
    await c.#connectAny(false);
    return c;
  }

  /** Tries servers from the current index, once round. */
  async #connectAny(afterLoss: boolean): Promise<void> {
    const n = this.options.servers.length;
    let last: Error | undefined;
    for (let i = 0; i < n; i++) {
      if (this.#ending) throw new ConnectError("client ended", "ENDED");
      const index = (this.#serverIndex + (afterLoss ? 1 : 0) + i) % n;
      try {
        await this.#connectTo(index);
        return;
      } catch (e) {
        last = e as Error;
        if (e instanceof ConnectError && typeof e.code === "number") throw e;
      }
    }
    throw last instanceof ConnectError
      ? last
      : new ConnectError(last?.message ?? "connection failed", errCode(last));
  }

  #connectTo(index: number): Promise<ConnackPacket> {
    const server = this.options.servers[index];
    this.#serverIndex = index;
    this.server = server;
    const timeout = this.options.connectTimeout ?? 30000;
    return new Promise<ConnackPacket>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        this.#connectWaiter = undefined;
        this.#stream?.destroy();
        reject(new ConnectError(`${formatAddress(server)}: connection timed out`, "ETIMEDOUT"));
      }, timeout);
      const done = (e: Error | undefined, p?: ConnackPacket) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#connectWaiter = undefined;
        if (e) reject(e);
        else resolve(p!);
      };
      dial(server, {
        tls: this.options.tls,
        localAddress: this.options.localAddress,
        proxy: this.options.proxy,
        timeout,
      })
        .then((stream) => {
          if (settled) return stream.destroy();
          this.#attach(stream);
          this.#connectWaiter = { resolve: (p) => done(undefined, p), reject: (e) => done(e) };
          this.#send(this.#connectPacket());
        }, (e: Error) => {
          done(new ConnectError(`${formatAddress(server)}: ${describe(e)}`, errCode(e)));
        });
    });
  }

  #connectPacket(): Packet {
    const o = this.options;
    const v = this.protocolVersion;
    return {
      cmd: "connect",
      protocolId: v === 3 ? "MQIsdp" : "MQTT",
      protocolVersion: v,
      bridgeMode: o.bridgeMode === true && v !== 5,
      clean: o.clean ?? true,
      keepalive: this.#keepalive,
      clientId: this.clientId,
      ...(o.will ? { will: o.will } : {}),
      ...(o.username !== undefined ? { username: o.username } : {}),
      ...(o.password !== undefined
        ? { password: typeof o.password === "string" ? encoder.encode(o.password) : o.password }
        : {}),
      ...(v === 5 && o.properties ? { properties: o.properties } : {}),
    };
  }

  #attach(stream: Stream): void {
    this.#stream = stream;
    this.#decoder = new Decoder({ protocolVersion: this.protocolVersion });
    this.#aliasesIn.clear();
    stream.onData = (chunk) => {
      if (this.#stream !== stream) return;
      const { packets, error } = this.#decoder.push(chunk);
      for (const p of packets) {
        if (this.#stream !== stream) return;
        this.#handle(p);
      }
      if (error && this.#stream === stream) {
        this.#lost(new Error(`bad packet from server: ${error.message}`));
      }
    };
    stream.onClose = (e) => {
      if (this.#stream !== stream) return;
      this.#lost(e ?? new Error("connection closed by the server"));
    };
  }

  #send(p: Packet): void {
    if (!this.#stream) return;
    this.options.trace?.("sent", p);
    this.#stream.write(encode(p, this.protocolVersion).slice());
    this.#lastSent = Date.now();
  }

  #handle(p: Packet): void {
    this.options.trace?.("received", p);
    switch (p.cmd) {
      case "connack":
        return this.#onConnack(p);
      case "publish":
        return this.#onPublish(p);
      case "puback":
      case "pubcomp": {
        const o = this.#outgoing.get(p.messageId);
        if (o && o.state === p.cmd) {
          this.#outgoing.delete(p.messageId);
          o.resolve(p);
          this.#drainQueue();
        }
        return;
      }
      case "pubrec": {
        const o = this.#outgoing.get(p.messageId);
        if (!o || o.state !== "pubrec") {
          // [MQTT-4.3.3-?] unknown id: answer so the server can finish (v5: id not found).
          this.#send({
            cmd: "pubrel",
            messageId: p.messageId,
            ...(this.#v5 ? { reasonCode: 0x92 } : {}),
          });
          return;
        }
        if ((p.reasonCode ?? 0) >= 0x80) {
          // v5: a PUBREC with a failure reason ends the exchange [MQTT-4.3.3-4 v5].
          this.#outgoing.delete(p.messageId);
          o.resolve(p);
          this.#drainQueue();
          return;
        }
        o.state = "pubcomp";
        this.#send({ cmd: "pubrel", messageId: p.messageId }); // [MQTT-4.3.3-4 v5]
        return;
      }
      case "pubrel":
        // [MQTT-4.3.3-11 v5] answer PUBREL with PUBCOMP; the message was delivered at PUBLISH.
        this.#incomingQos2.delete(p.messageId);
        this.#send({ cmd: "pubcomp", messageId: p.messageId });
        return;
      case "suback": {
        const w = this.#subacks.get(p.messageId);
        if (w) {
          this.#subacks.delete(p.messageId);
          w.resolve(p);
        }
        return;
      }
      case "unsuback": {
        const w = this.#unsubacks.get(p.messageId);
        if (w) {
          this.#unsubacks.delete(p.messageId);
          w.resolve(p);
        }
        return;
      }
      case "pingresp":
        this.#pingOutstanding = false;
        return;
      case "disconnect":
        this.emit("disconnect", p as DisconnectPacket);
        this.#lost(
          new Error(`disconnected by the server: ${reasonText(p.reasonCode ?? 0)}`),
          p.reasonCode,
        );
        return;
      case "auth":
        this.emit("auth", p);
        return;
      default:
        this.#lost(new Error(`unexpected ${p.cmd} packet from the server`));
    }
  }

  get #v5(): boolean {
    return this.protocolVersion === 5;
  }

  #onConnack(p: ConnackPacket): void {
    const w = this.#connectWaiter;
    if (!w) return this.#lost(new Error("unexpected CONNACK"));
    if (p.reasonCode !== 0) {
      const stream = this.#stream;
      this.#stream = undefined;
      stream?.destroy();
      w.reject(
        new ConnectError(connackText(p.reasonCode, this.protocolVersion), p.reasonCode, p),
      );
      return;
    }
    this.connack = p;
    this.connected = true;
    const props = p.properties ?? {};
    if (props.assignedClientIdentifier) this.clientId = props.assignedClientIdentifier;
    if (props.serverKeepAlive !== undefined) this.#keepalive = props.serverKeepAlive;
    this.#maxInflight = Math.min(this.options.maxInflight ?? 65535, props.receiveMaximum ?? 65535);
    this.#startKeepalive();
    w.resolve(p);
    this.#resume(p.sessionPresent);
    this.emit("connect", p, this.server);
  }

  /** After (re)connecting: subscribe again when the session is new, resend what is unacknowledged. */
  #resume(sessionPresent: boolean): void {
    if (!sessionPresent && this.#subscriptions.size) {
      const subs = [...this.#subscriptions.values()];
      this.#subscribeRaw(subs, this.#subscribeProps).then((ack) => this.emit("resubscribed", ack))
        .catch(() => {});
    }
    const inflight = [...this.#outgoing.entries()];
    for (const [id, o] of inflight) {
      if (o.state === "pubcomp") {
        if (sessionPresent) this.#send({ cmd: "pubrel", messageId: id }); // [MQTT-4.4.0-1]
        else {
          // The old server took ownership (PUBREC); a new session knows nothing of it.
          this.#outgoing.delete(id);
          o.resolve(undefined);
        }
      } else {
        o.packet = { ...o.packet, dup: true }; // [MQTT-3.3.1-1] a re-delivery sets DUP
        this.#send(o.packet);
      }
    }
    this.#drainQueue();
  }

  #onPublish(p: PublishPacket): void {
    if (p.properties?.topicAlias !== undefined && this.#v5) {
      const alias = p.properties.topicAlias;
      if (p.topic) this.#aliasesIn.set(alias, p.topic);
      else {
        const t = this.#aliasesIn.get(alias);
        if (t === undefined) {
          this.#send({ cmd: "disconnect", reasonCode: 0x94 });
          return this.#lost(new Error(`unknown topic alias ${alias}`));
        }
        p = { ...p, topic: t };
      }
    }
    const stream = this.#stream;
    const ackNow = (cmd: "puback" | "pubrec") => {
      // Only on the connection the message came in on.
      if (this.#stream === stream && this.connected) this.#send({ cmd, messageId: p.messageId! });
    };
    const manual = this.options.manualAck === true;
    if (p.qos === 0) {
      this.emit("message", p, () => {});
    } else if (p.qos === 1) {
      // [MQTT-4.3.2-4 v5]
      if (manual) this.emit("message", p, () => ackNow("puback"));
      else {
        this.emit("message", p, () => {});
        ackNow("puback");
      }
    } else {
      // [MQTT-4.3.3-10 v5] deliver once; a DUP re-send before PUBREL is not delivered again.
      if (!this.#incomingQos2.has(p.messageId!)) {
        this.#incomingQos2.add(p.messageId!);
        if (manual) this.emit("message", p, () => ackNow("pubrec"));
        else {
          this.emit("message", p, () => {});
          ackNow("pubrec");
        }
      } else ackNow("pubrec");
    }
  }

  #startKeepalive(): void {
    this.#stopKeepalive();
    this.#pingOutstanding = false;
    if (!this.#keepalive) return;
    const ms = this.#keepalive * 1000;
    const tick = () => {
      if (!this.connected) return;
      const idle = Date.now() - this.#lastSent;
      if (this.#pingOutstanding) {
        return this.#lost(new Error("keep-alive timeout: no PINGRESP from the server"));
      }
      if (idle >= ms - 50) {
        this.#pingOutstanding = true;
        this.#send({ cmd: "pingreq" });
        this.#pingTimer = setTimeout(tick, Math.max(ms / 2, 500));
      } else this.#pingTimer = setTimeout(tick, ms - idle);
    };
    this.#pingTimer = setTimeout(tick, ms);
  }

  #stopKeepalive(): void {
    if (this.#pingTimer) clearTimeout(this.#pingTimer);
    this.#pingTimer = undefined;
  }

  /** The connection went away: fail waiters, then reconnect (failover) or close. */
  #lost(e: Error, reasonCode?: number): void {
    const stream = this.#stream;
    this.#stream = undefined;
    stream?.destroy();
    const wasConnected = this.connected;
    this.connected = false;
    this.#stopKeepalive();
    if (this.#connectWaiter) {
      const w = this.#connectWaiter;
      this.#connectWaiter = undefined;
      w.reject(new ConnectError(`${formatAddress(this.server!)}: ${describe(e)}`, errCode(e)));
      return; // #connectAny decides what happens next
    }
    if (!wasConnected) return;
    for (const [, w] of this.#subacks) w.reject(e);
    for (const [, w] of this.#unsubacks) w.reject(e);
    this.#subacks.clear();
    this.#unsubacks.clear();
    this.emit("offline", e, reasonCode);
    if (this.options.reconnect && !this.#ending) void this.#reconnect();
    else this.#finish(e);
  }

  async #reconnect(): Promise<void> {
    if (this.#reconnecting) return;
    this.#reconnecting = true;
    let first = true;
    let rounds = 0;
    while (!this.#ending) {
      try {
        await this.#connectAny(first);
        this.#reconnecting = false;
        return;
      } catch (e) {
        if (this.#ending) break;
        this.emit("reconnect-failed", e);
        if (++rounds >= (this.options.reconnectRounds ?? Infinity)) {
          this.#reconnecting = false;
          return this.#finish(e as Error);
        }
      }
      first = false;
      await new Promise((r) => setTimeout(r, this.options.reconnectDelay ?? 1000));
    }
    this.#reconnecting = false;
    this.#finish(new Error("client ended"));
  }

  #finish(e?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    const err = e ?? new Error("client ended");
    for (const [, o] of this.#outgoing) o.reject(err);
    for (const o of this.#queue) o.reject(err);
    this.#outgoing.clear();
    this.#queue = [];
    this.emit("close", e);
  }

  #allocId(): number {
    for (let i = 0; i < 65535; i++) {
      const id = this.#nextId;
      this.#nextId = id === 65535 ? 1 : id + 1;
      if (!this.#outgoing.has(id) && !this.#subacks.has(id) && !this.#unsubacks.has(id)) {
        return id;
      }
    }
    throw new Error("no free packet identifier");
  }

  /**
   * Publishes. QoS 0 resolves once written; QoS 1 on PUBACK, QoS 2 on PUBCOMP (with the ack;
   * v5 reason codes ≥ 0x80 are in `reasonCode`, not a rejection). While not connected, QoS 1/2
   * messages wait for the next connection; QoS 0 ones are dropped.
   */
  publish(
    topic: string,
    payload: string | Uint8Array,
    opts: PublishOptions = {},
  ): Promise<AckPacket | undefined> {
    if (this.#closed) return Promise.reject(new Error("client is closed"));
    const qos = opts.qos ?? 0;
    const packet: PublishPacket = {
      cmd: "publish",
      topic,
      payload: typeof payload === "string" ? encoder.encode(payload) : payload,
      qos,
      retain: opts.retain ?? false,
      dup: false,
      ...(this.#v5 && opts.properties ? { properties: opts.properties } : {}),
    };
    if (qos === 0) {
      try {
        this.#send(packet);
      } catch (e) {
        return Promise.reject(e);
      }
      return Promise.resolve(undefined);
    }
    return new Promise((resolve, reject) => {
      const o: Outgoing = { packet, state: qos === 1 ? "puback" : "pubrec", resolve, reject };
      this.#queue.push(o);
      try {
        this.#drainQueue();
      } catch (e) {
        this.#queue = this.#queue.filter((x) => x !== o);
        reject(e);
      }
    });
  }

  #drainQueue(): void {
    while (this.connected && this.#queue.length && this.#outgoing.size < this.#maxInflight) {
      const o = this.#queue.shift()!;
      const id = this.#allocId();
      o.packet = { ...o.packet, messageId: id };
      try {
        this.#send(o.packet); // encode errors (bad topic, too long) throw before we track it
      } catch (e) {
        o.reject(e as Error);
        continue;
      }
      this.#outgoing.set(id, o);
    }
  }

  /** Number of QoS 1/2 messages sent and not yet fully acknowledged, plus those queued. */
  get inflight(): number {
    return this.#outgoing.size + this.#queue.length;
  }

  /**
   * Subscribes; resolves with the SUBACK. The subscriptions are remembered and made again on the
   * next server after a failover. Topic strings get QoS `qos` (default 0).
   */
  subscribe(
    subs: (Subscription | string)[] | string,
    opts: { qos?: QoS; properties?: Properties } = {},
  ): Promise<SubackPacket> {
    const list = (Array.isArray(subs) ? subs : [subs]).map((s) =>
      typeof s === "string" ? { topic: s, qos: opts.qos ?? 0 } : s
    );
    for (const s of list) this.#subscriptions.set(s.topic, s);
    if (opts.properties) this.#subscribeProps = opts.properties;
    return this.#subscribeRaw(list, opts.properties);
  }

  #subscribeRaw(list: Subscription[], properties?: Properties): Promise<SubackPacket> {
    if (!this.connected) return Promise.reject(new Error("not connected"));
    const messageId = this.#allocId();
    return new Promise((resolve, reject) => {
      this.#subacks.set(messageId, { resolve, reject });
      try {
        this.#send({
          cmd: "subscribe",
          messageId,
          subscriptions: list,
          ...(this.#v5 && properties ? { properties } : {}),
        });
      } catch (e) {
        this.#subacks.delete(messageId);
        reject(e);
      }
    });
  }

  /** Unsubscribes; resolves with the UNSUBACK. */
  unsubscribe(topics: string[] | string, properties?: Properties): Promise<UnsubackPacket> {
    const list = Array.isArray(topics) ? topics : [topics];
    for (const t of list) this.#subscriptions.delete(t);
    if (!this.connected) return Promise.reject(new Error("not connected"));
    const messageId = this.#allocId();
    return new Promise((resolve, reject) => {
      this.#unsubacks.set(messageId, { resolve, reject });
      try {
        this.#send({
          cmd: "unsubscribe",
          messageId,
          unsubscriptions: list,
          ...(this.#v5 && properties ? { properties } : {}),
        });
      } catch (e) {
        this.#unsubacks.delete(messageId);
        reject(e);
      }
    });
  }

  /**
   * Sends DISCONNECT (v5: with `reasonCode`, e.g. 0x04 to have the will sent) and closes once
   * the bytes are out. Messages still unacknowledged are failed.
   */
  async end(opts: { reasonCode?: number; properties?: Properties } = {}): Promise<void> {
    if (this.#ending) return;
    this.#ending = true;
    this.#stopKeepalive();
    const stream = this.#stream;
    if (stream && this.connected) {
      this.#send({
        cmd: "disconnect",
        ...(this.#v5 && opts.reasonCode ? { reasonCode: opts.reasonCode } : {}),
        ...(this.#v5 && opts.properties ? { properties: opts.properties } : {}),
      });
      this.connected = false;
      this.#stream = undefined;
      await Promise.race([stream.end(), new Promise((r) => setTimeout(r, 2000))]);
      stream.destroy();
    } else {
      this.#stream?.destroy();
      this.#stream = undefined;
      this.connected = false;
    }
    this.#finish();
  }

  /** Closes the connection at once, without DISCONNECT (the will is published). */
  destroy(): void {
    this.#ending = true;
    this.#stopKeepalive();
    this.#stream?.destroy();
    this.#stream = undefined;
    this.connected = false;
    this.#finish();
  }
}

function errCode(e: unknown): string {
  const code = (e as { code?: unknown })?.code;
  return typeof code === "string" ? code : "ECONNECTION";
}

/** One line for a socket error, like Mosquitto's ("Connection refused", "Lookup error."). */
function describe(e: Error): string {
  switch (errCode(e)) {
    case "ECONNREFUSED":
      return "Connection refused";
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return "Lookup error.";
    case "ECONNRESET":
      return "Connection reset by peer";
    case "ETIMEDOUT":
      return "Connection timed out";
    default:
      return e.message;
  }
}
