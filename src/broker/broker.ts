/**
 * The broker: sessions, the router, retained messages, wills, limits, and the listeners that
 * feed connections in. Packet handling itself lives in ./handlers/, one file per packet type.
 */
import { processMemory } from "./memory.ts";
import type { Config, ListenerConfig } from "../config/schema.ts";
import type { Auth } from "../auth/auth.ts";
import type { ControlHandler } from "../auth/chain_types.ts";
import { type QoS, ReasonCode } from "../codec/types.ts";
import { listen, listenerOptions } from "../transport/listen.ts";
import type { Listener, TransportSocket } from "../transport/types.ts";
import { Logger, silentLogger } from "../sys/log.ts";
import { Connection } from "./connection.ts";
import type { BrokerCore, Stats } from "./core.ts";
import { handlePacket } from "./handlers/dispatch.ts";
import { PUBREL } from "../codec/encoder.ts";
import { forwardedProperties, type Message, ownPayload, remainingExpiry } from "./message.ts";
import { MemoryRetained, type RetainedStore } from "./retained.ts";
import { StoredRetained } from "./stored_retained.ts";
import { type Fabric, type FabricSink, LocalFabric } from "./fabric.ts";
import { type ReadCheck, Router, type Target } from "./router.ts";
import { NEVER_EXPIRES, Session, splitSessionKey, type SubscriptionEntry } from "./session.ts";
import { type Outgoing, outgoing } from "./outgoing.ts";
import type { DeliverySink } from "./sink.ts";
import { longTimeout } from "./timers.ts";
import { type Clock, type ClockTimer, systemClock } from "./clock.ts";
import type { Store, StoredClientMessage } from "../store/types.ts";
import {
  recordSession,
  restore,
  restoreSession,
  type SessionRecord,
  storedMessage,
} from "./restore.ts";
import { LocalRegistry, type SessionRegistry } from "./registry.ts";
import { ConnectionList, SessionTable } from "./tables.ts";
import { errorText, safely } from "./guard.ts";
import { sysTopicDenied } from "./topic.ts";

/** How long a stopping broker waits for the writes its acknowledgements promise. */
const SETTLE_MS = 5000;

/** How long a session handed to another node waits here for it to take the rest. */
const MOVE_TIMEOUT_MS = 30_000;

/** A listener as bound, with its configuration index. */
export interface BoundListener {
  protocol: string;
  host: string;
  port: number;
  listener: Listener;
}

/**
 * A part that runs beside the broker's core and is started and stopped with it (the bridges of
 * src/bridge/): started once the listeners are bound, swept with the keep-alive checks, stopped
 * before the connections are closed, and reloaded on SIGHUP.
 */
export interface Attachment {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Periodic housekeeping, every half second. */
  sweep?(now: number): void;
  /** Re-read what it owns (`reload()`, SIGHUP). */
  reload?(): unknown;
}

/**
 * The parts a broker is built from, given by the code that starts it (src/assemble.ts). Left
 * out, each optional one is the single-node part: the local fabric, the in-memory retained store,
 * the local registry, no persistent store.
 */
export interface BrokerParts {
  /** The auth chain of each listener: who may connect, publish, subscribe, read. */
  auth: Auth;
  /**
   * Opens the persistent store when `persistence` is on (at `start`), and says where it is kept
   * for the log; it reports its own commit errors.
   */
  openStore?: () => { store: Store; where: string };
  /** Carries publishes to other nodes and brings theirs in. */
  fabric?: Fabric;
  /** Retained messages; a shared one reports when its writes are durable. */
  retained?: RetainedStore;
  /** Time and timers of keep-alive, session expiry and will delays (tests move it themselves). */
  clock?: Clock;
  /** Who owns which client id (cluster-wide in a cluster). */
  registry?: SessionRegistry;
}

export class Broker implements FabricSink, BrokerCore<Connection> {
  readonly config: Config;
  readonly log: Logger;
  /** The time keep-alive, expiry and will delays read, and their timers. */
  readonly clock: Clock;
  readonly sessions = new SessionTable<Session>();
  readonly router: Router;
  readonly retained: RetainedStore;
  /** Other nodes (a cluster), or nothing beyond this process. */
  readonly fabric: Fabric;
  /** Ownership of client ids. */
  readonly registry: SessionRegistry;
  /** The client id being handed to another node: its session ends here without releasing it. */
  #handingOver: string | null = null;
  /** Set by `stop`: no new connections. */
  #stopping = false;
  /** A cluster keeps sessions' QoS 2 state with the registry (see `keepSession`). */
  readonly #keepsQos2: boolean;
  /** Sessions with messages waiting to be sent until their QoS 2 state is kept (`#sendKept`). */
  readonly #keeping = new Map<Session, Promise<void>>();
  /** Sessions recorded for another node and kept until it has taken them (see `handOver`). */
  readonly #moving = new Map<
    string,
    { session: Session; mark: number; timer: ReturnType<typeof setTimeout> }
  >();
  readonly connections = new ConnectionList<Connection>();
  /** Connections open through each listener, for its max_connections. */
  readonly #open = new Map<ListenerConfig, number>();
  readonly stats: Stats = {
    bytesReceived: 0,
    bytesSent: 0,
    messagesReceived: 0,
    messagesSent: 0,
    publishReceived: 0,
    publishSent: 0,
    publishDropped: 0,
    publishBytesReceived: 0,
    publishBytesSent: 0,
    protocolErrors: 0,
    connectionsTotal: 0,
    connects: 0,
    clientsExpired: 0,
  };
  readonly startedAt: number;
  readonly listeners: BoundListener[] = [];
  /** Parts started and stopped with the broker (bridges): see `attach`. */
  readonly #attached: Attachment[] = [];
  readonly #openStore: BrokerParts["openStore"];
  /** The persistent store, or null when `persistence = false`. */
  store: Store | null = null;
  /**
   * The auth chain of each listener (password file, ACL, allow_anonymous, dynamic security, JWT,
   * HTTP; a listener's own files with per_listener_settings): who may connect, publish,
   * subscribe, read.
   */
  readonly auth: Auth;
  /**
   * Control topics (`$CONTROL/…`, e.g. dynamic security's) → their handlers. A PUBLISH to one
   * that passes the sender's ACL check goes to the handler instead of subscribers, and the
   * handler's answer is published on `<topic>/response`. Empty unless a plugin is configured.
   */
  readonly controls = new Map<string, ControlHandler>();
  /** Handles each packet a connection takes: the packet handlers (./handlers/dispatch.ts). */
  readonly handlePacket = handlePacket;
  /** Run by `reload()` (SIGHUP): each re-reads what it owns and keeps the old state on error. */
  readonly reloadHooks: (() => unknown)[] = [];
  #sweepTimer: ClockTimer | null = null;
  #autoId = 0;
  /**
   * The router's view of the auth chain when it picks a shared-group member: a member whose
   * read check is still pending counts as one that may read (the delivery waits for it).
   */
  readonly #readCheck: ReadCheck = {
    canRead: (s, topic) => this.auth.canRead(s, topic) !== false,
  };

  constructor(config: Config, log: Logger = silentLogger, parts: BrokerParts) {
    this.config = config;
    this.log = log;
    this.fabric = parts.fabric ?? new LocalFabric();
    const retained: RetainedStore = parts.retained ?? new MemoryRetained();
    // One that does not keep its messages durably itself writes through to the persistent store.
    this.retained = retained.durable ? retained : new StoredRetained(retained, () => this.store);
    this.registry = parts.registry ?? new LocalRegistry();
    this.#keepsQos2 = this.registry.keep !== undefined;
    this.router = new Router(this.fabric.distributed ? this.fabric : null);
    this.clock = parts.clock ?? systemClock;
    this.startedAt = this.clock.now();
    this.auth = parts.auth;
    this.#openStore = parts.openStore;
    this.reloadHooks.push(() => this.auth.reload());
    const ds = this.auth.dynsec;
    if (ds) {
      this.controls.set(ds.topic, ds);
      ds.kick = (username) => this.kick(username);
    }
  }

  /** Run `a` beside the broker: started by `start`, swept, reloaded and stopped with it. */
  attach(a: Attachment): void {
    this.#attached.push(a);
    if (a.reload) this.reloadHooks.push(() => a.reload!());
  }

  /** Re-read what can change without a restart (password_file, acl_file, …), as on SIGHUP. */
  async reload(): Promise<void> {
    for (const hook of this.reloadHooks) await hook();
  }

  /** Open the store (when persistence is on) and restore what it holds. Throws StoreError. */
  openStore(): void {
    if (!this.config.persistence || this.store || !this.#openStore) return;
    const { store, where } = this.#openStore();
    this.store = store;
    const n = restore(this, store.load());
    this.log.notice(
      `Persistence: ${where}: restored ${n.sessions} sessions, ${n.retained} retained messages, ${n.messages} queued messages.`,
    );
  }

  /** Bind every configured listener; resolves once all are listening. */
  async start(): Promise<BoundListener[]> {
    this.#stopping = false;
    await this.auth.load();
    this.openStore();
    await this.retained.start?.();
    await this.fabric.start(this);
    await this.registry.start?.();
    for (const l of this.config.listeners) {
      this.#open.set(l, 0);
      const max = l.max_connections;
      const opts = listenerOptions(l, this.config);
      if (this.log.on("notice")) {
        opts.onRefused = (from, why) => this.log.notice(`Connection from ${from} refused: ${why}.`);
      }
      const listener = await listen(opts, (sock) => {
        const open = this.#open.get(l)!;
        if (max >= 0 && open >= max) return null;
        const conn = this.accept(sock, l);
        if (conn) this.#open.set(l, open + 1);
        if (conn && this.config.connection_messages && this.log.on("notice")) {
          // Mosquitto's line for every accepted connection, before its CONNECT.
          this.log.notice(
            `New connection from ${sock.remoteAddress}:${sock.remotePort} on port ${
              l.unix_socket ? 0 : listener.port
            }.`,
          );
        }
        return conn;
      });
      this.listeners.push({
        protocol: l.protocol,
        host: listener.host,
        port: listener.port,
        listener,
      });
      // SIGHUP: new certificates for new connections; a bad file keeps the old ones.
      if (opts.tls) {
        this.reloadHooks.push(() =>
          listener.reload().catch((e) =>
            this.log.error(`Listener ${listener.host}:${listener.port}: TLS reload failed: ${e}`)
          )
        );
      }
    }
    this.#sweepTimer = this.clock.setInterval(() => this.sweep(), 500);
    for (const a of this.#attached) await a.start();
    return this.listeners;
  }

  /**
   * Stop: take no more connections or messages, send the acknowledgements owed once what they
   * promise is stored, tell each client to go (v5 DISCONNECT 0x8B, with `server_reference`), and
   * in a cluster hand the sessions to the other nodes; then close everything. Sessions are kept
   * in memory (and in the store).
   */
  async stop(): Promise<void> {
    if (this.#sweepTimer) this.clock.clearInterval(this.#sweepTimer);
    this.#sweepTimer = null;
    this.#stopping = true;
    for (const a of this.#attached) await a.stop();
    const open = [...this.connections];
    if (open.length) {
      for (const c of open) c.quiesce();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, SETTLE_MS);
        this.afterDurable(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      // What is in flight to the clients is acknowledged before they are told to go (bounded),
      // so nothing they received comes to them again where they go.
      const until = Date.now() + this.config.shutdown_grace;
      const busy = () =>
        open.some((c) => c.state === "open" && (c.session?.inflight.size ?? 0) > 0);
      while (busy() && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      const ref = this.config.server_reference;
      const props = ref ? { serverReference: ref } : undefined;
      const grace = this.config.shutdown_grace;
      await Promise.all(open.map((c) => c.leave(0x8b, "server shutting down", props, grace)));
    }
    await this.registry.evacuate?.();
    await this.fabric.stop();
    await this.registry.stop?.();
    this.retained.stop?.();
    for (const s of this.sessions.values()) s.clearTimers(this.clock);
    await Promise.all(this.listeners.map((l) => l.listener.close()));
    this.listeners.length = 0;
    this.store?.close();
    this.store = null;
    this.auth.close();
  }

  /**
   * Close the connections of `username` (null: of every client without a user name) with v5
   * reason 0x98 Administrative action and without their wills, as Mosquitto's
   * kick_client_by_username does when dynamic security changes a client's rights.
   */
  kick(username: string | null): number {
    let n = 0;
    for (const c of [...this.connections]) {
      if (c.state !== "open") continue;
      if (username === null ? c.username !== undefined : c.username !== username) continue;
      const s = c.session;
      if (s && s.connection === c) s.will = null;
      c.close(0x98, "administrative action (dynamic security)");
      n++;
    }
    return n;
  }

  /**
   * Hand a PUBLISH to a control topic's handler (the sender's ACL check has passed) and publish
   * its answer on `<topic>/response` at QoS 0, as Mosquitto does.
   */
  control(handler: ControlHandler, payload: Uint8Array, conn: Connection): void {
    const from = { clientId: conn.clientId, username: conn.username, listener: conn.listener };
    // A failure in the handler or in publishing its answer is logged, never left unhandled.
    handler.control(payload.slice(), from).then((answer) => {
      this.publish({
        topic: `${handler.topic}/response`,
        payload: answer,
        qos: 0,
        retain: false,
        expiresAt: 0,
        origin: "",
      });
    }).catch((e) =>
      this.log.error(
        `Control ${handler.topic}: request from ${conn.clientId} failed: ${errorText(e)}`,
      )
    );
  }

  /** Accept a socket from any transport; null refuses it (global max_connections, stopping). */
  accept(sock: TransportSocket, listener?: ListenerConfig): Connection | null {
    if (this.#stopping) return null;
    const max = this.config.max_connections;
    if (max >= 0 && this.connections.size >= max) return null;
    const conn = new Connection(this, sock, listener);
    this.connections.add(conn);
    this.stats.connectionsTotal++;

    // The connection is its socket's handler: no closures per connection.
    return conn;
  }

  /** A client id for a client that sent none [MQTT-3.1.3-6]. */
  assignClientId(): string {
    const rand = Math.random().toString(36).slice(2, 10);
    return `${this.config.auto_id_prefix}${this.clock.now().toString(36)}${rand}${
      (++this.#autoId).toString(36)
    }`;
  }

  /**
   * Publish a message from a client (or the broker): retain it if flagged, deliver it here and
   * hand it to the fabric for the other nodes. Returns the local receivers (at least 1 when it
   * also went to other nodes, whose receivers are not counted).
   */
  publish(msg: Message): number {
    if (msg.retain) this.retained.set(msg);
    const fabric = this.fabric;
    if (!fabric.distributed) return this.#deliverAll(msg, true);
    // $SYS is per node: the broker's own status does not travel.
    if (msg.origin === "" && msg.topic.startsWith("$SYS/")) return this.#deliverAll(msg, false);
    fabric.stamp(msg);
    const n = this.#deliverAll(msg, false);
    fabric.forward(msg);
    return Math.max(n, 1);
  }

  /** FabricSink: a message from another node, for the subscribers on this one. */
  fromRemote(msg: Message): void {
    this.#deliverAll(msg, false);
  }

  /** FabricSink: a message the cluster gave to this node's members of a shared group. */
  fromRemoteShared(group: string, topicFilter: string, msg: Message): void {
    const t = this.router.pickShared(
      group,
      topicFilter,
      msg.topic,
      this.#readCheck,
    );
    if (!t) return;
    this.deliver(t.session, delivery(t, msg, this.config.upgrade_outgoing_qos));
  }

  /** Delivers `msg` to every local subscriber (shared groups too when `shared`). */
  #deliverAll(msg: Message, shared: boolean): number {
    const auth = this.auth;
    const targets = this.router.route(msg.topic, msg.origin, this.#readCheck, shared);
    const upgrade = this.config.upgrade_outgoing_qos;
    let n = targets.length;
    for (let i = 0; i < targets.length; i++) {
      const t = targets[i];
      // The auth chain: only sessions that may read the topic receive it.
      const may = auth.canRead(t.session, msg.topic);
      if (may !== true) {
        if (may === false) n--;
        // An authorizer that asks a remote service: delivered once it has answered.
        else this.#deliverIf(may, t, msg, upgrade);
        continue;
      }
      // An internal subscription (the web console's) is no subscriber to the publisher: with
      // only those matching, a v5 PUBACK still says No matching subscribers (MQTT 5.0 §3.4.2.1).
      if (t.session.internal) n--;
      this.deliver(t.session, delivery(t, msg, upgrade));
    }
    return n;
  }

  /**
   * The deliveries the subscriptions of the sessions `keys` give `msg`, as for a message routed
   * now (shared groups left out), and only those at QoS 1/2, which a session owes its client:
   * for the messages a cluster reads back from its stream for sessions of a dead node.
   */
  owed(keys: ReadonlySet<string>, msg: Message): [string, StoredClientMessage][] {
    const out: [string, StoredClientMessage][] = [];
    const upgrade = this.config.upgrade_outgoing_qos;
    for (const t of this.router.route(msg.topic, msg.origin, null, false)) {
      if (!keys.has(t.session.key)) continue;
      const o = delivery(t, msg, upgrade);
      if (o.qos > 0) out.push([t.session.key, storedMessage(o, 0)]);
    }
    return out;
  }

  /** Delivers `msg` to one routed target once an asynchronous read check allows it. */
  #deliverIf(may: Promise<boolean>, t: Target, msg: Message, upgrade: boolean): void {
    ownPayload(msg);
    // .catch, not a second handler: an error in the delivery itself must not go unhandled.
    may.then((ok) => {
      if (ok) this.deliver(t.session, delivery(t, msg, upgrade));
    }).catch((e) =>
      this.log.error(`Delivery to ${t.session.clientId} after its read check: ${errorText(e)}`)
    );
  }

  /** Send or queue one message for one session. */
  deliver(s: Session, o: Outgoing): void {
    if (o.msg.expiresAt && o.msg.expiresAt <= this.clock.now()) return;
    const conn = s.connection;
    if (conn && conn.state === "open") {
      if (o.qos === 0) {
        if (conn.congested) {
          this.stats.publishDropped++;
          return;
        }
        conn.sendPublish(o, 0);
        return;
      }
      if (s.queue.length === 0 && this.#roomInFlight(s, this.sendQuota(conn))) {
        this.#sendInflight(s, conn, o);
        return;
      }
    } else if (o.qos === 0 && !this.config.queue_qos0_messages) {
      return;
    }
    if (!s.enqueue(o, this.config.max_queued_messages, this.config.max_queued_bytes)) {
      this.stats.publishDropped++;
      return;
    }
    if (this.store && s.persistent) {
      o.seq = this.store.addClientMessage(s.key, { ...o, state: 0, packetId: 0 });
    }
  }

  /**
   * Send or queue a retained message replayed for a new subscription [MQTT-3.3.1-6 v3.1.1][MQTT-3.3.1-9 v5]. It obeys the
   * limits of every other delivery, so no SUBSCRIBE can make the broker hold more for a client
   * that does not read: QoS 1/2 the inflight window and the session queue (`deliver`); QoS 0 the
   * slow-reader bound, past which it waits in the session queue (max_queued_messages,
   * max_queued_bytes) until the socket has taken what it holds, instead of being dropped at once
   * as live QoS 0 is (the subscriber asked for these).
   */
  replayRetained(s: Session, o: Outgoing): void {
    if (o.qos !== 0) {
      this.deliver(s, o);
      return;
    }
    const conn = s.connection;
    if (!conn || conn.state !== "open") return;
    if (s.queue.length === 0 && !conn.congested) {
      conn.sendPublish(o, 0);
      return;
    }
    if (!s.enqueue(o, this.config.max_queued_messages, this.config.max_queued_bytes)) {
      this.stats.publishDropped++;
      return;
    }
    this.pump(s);
  }

  /**
   * Whether one more QoS 1/2 message may go in flight: fewer than `quota` in flight and, with
   * max_inflight_bytes, less than that many payload bytes (summed only when it is set).
   */
  #roomInFlight(s: Session, quota: number): boolean {
    if (s.inflight.size >= quota) return false;
    const max = this.config.max_inflight_bytes;
    if (max === 0) return true;
    let bytes = 0;
    for (const f of s.inflight.values()) bytes += f.msg.payload.length;
    return bytes < max;
  }

  /**
   * memory_limit: true while the process holds more than the limit (sampled by `sweep`); new
   * connections are refused and incoming messages dropped meanwhile.
   */
  memoryOver = false;

  #checkMemory(limit: number): void {
    const rss = limit > 0 ? processMemory() : 0;
    const over = limit > 0 && rss > limit;
    if (over === this.memoryOver) return;
    this.memoryOver = over;
    if (over) {
      this.log.warning(
        `Memory use ${rss} bytes is over memory_limit ${limit}: refusing new connections and incoming messages.`,
      );
    } else this.log.notice("Memory use is below memory_limit again.");
  }

  /** Outgoing QoS 1/2 window: max_inflight_messages and the client's Receive Maximum [MQTT-3.3.4-9 v5]. */
  sendQuota(conn: DeliverySink): number {
    // A connection being shut down gets nothing new in flight: what it has is acknowledged
    // before it is told to go, the rest waits for wherever its client goes.
    if (conn.quiet) return 0;
    const m = this.config.max_inflight_messages;
    return Math.min(m > 0 ? m : 65535, conn.terms.receiveMax);
  }

  #sendInflight(s: Session, conn: DeliverySink, o: Outgoing): void {
    const id = s.allocateId();
    if (id === 0) {
      s.enqueue(o, 0, 0);
      return;
    }
    if (this.#keepsQos2 && s.persistent && (o.qos === 2 || this.#keeping.has(s))) {
      this.#sendKept(s, conn, o, id);
      return;
    }
    if (!conn.sendPublish(o, id, o.msg.replayed)) {
      // Over the client's maximum packet size: discarded [MQTT-3.1.2-25 v5].
      this.forget(s, o);
      return;
    }
    this.#inFlight(s, o, id);
  }

  /**
   * In a cluster: a QoS 2 message goes in flight, is kept with its session (`keepSession`), and
   * only then leaves. A node that takes the session over after this one died sends it again
   * under the same packet id, or its PUBREL, never as a new message [MQTT-4.3.3-10 v5]. QoS 1
   * messages after it wait for it, so the client gets them in order [MQTT-4.6.0-6 v3.1.1][MQTT-4.6.0-5 v5].
   */
  #sendKept(s: Session, conn: DeliverySink, o: Outgoing, id: number): void {
    this.#inFlight(s, o, id);
    const send = () => {
      if (s.inflight.get(id) !== o || s.connection !== conn || o.state !== "publish") return;
      if (!conn.sendPublish(o, id, o.msg.replayed)) {
        // Over the client's maximum packet size: discarded [MQTT-3.1.2-25 v5].
        s.inflight.delete(id);
        this.forget(s, o);
        this.pump(s);
      }
    };
    const kept = o.qos === 2 ? this.keepSession(s) : this.#keeping.get(s);
    if (!kept) return send();
    this.#keeping.set(s, kept);
    kept.then(() => {
      if (this.#keeping.get(s) === kept) this.#keeping.delete(s);
      send();
    });
  }

  /** `o` is in flight to `s` as packet `id`. */
  #inFlight(s: Session, o: Outgoing, id: number): void {
    ownPayload(o.msg);
    // The delivery itself becomes the inflight record: no copy per QoS 1/2 message sent.
    o.state = "publish";
    s.setInflight(id, o);
    if (this.store && s.persistent) {
      if (o.seq === undefined) {
        o.seq = this.store.addClientMessage(s.key, { ...o, state: 1, packetId: id });
      } else {
        this.store.updateClientMessage(s.key, o.seq, 1, id);
      }
    }
  }

  /**
   * The QoS `qos` message sent to `s` as packet `id` is done: acknowledged by the client (PUBACK,
   * PUBCOMP, or a PUBREC with an error code), or by a bridge's remote. Its slot opens for the
   * queue. The one place where an outgoing QoS 1/2 exchange ends; false when no such message was
   * in flight.
   */
  completeOutgoing(s: Session, id: number, qos: 1 | 2): boolean {
    const f = s.inflight.get(id);
    if (!f || f.qos !== qos) return false;
    s.settle(id, f);
    s.inflight.delete(id);
    if (qos === 2 && this.#keepsQos2 && f.msg.fid !== undefined) {
      this.registry.completed?.(s.key, f.msg.fid);
    }
    this.forget(s, f);
    this.pump(s);
    return true;
  }

  /** A message is done with (acknowledged, expired or discarded): drop its stored copy. */
  forget(s: Session, o: Outgoing): void {
    if (o.seq !== undefined && this.store) this.store.deleteClientMessage(s.key, o.seq, o.msg);
    o.seq = undefined;
  }

  /**
   * Send what waits, in order: first the in-flight messages a resumed session still has to
   * resend, then the queue, QoS 1/2 as the inflight window opens, QoS 0 while the socket is not
   * congested (else the connection calls this again once it has room).
   */
  pump(s: Session): void {
    const conn = s.connection;
    if (!conn || conn.state !== "open") return;
    const quota = this.sendQuota(conn);
    const now = this.clock.now();
    if (s.unsent !== null) this.#resendUnsent(s, conn, quota, now);
    while (s.queue.length) {
      if (s.queue[0].qos === 0) {
        if (conn.congested) {
          conn.awaitRoom();
          return;
        }
      } else if (!this.#roomInFlight(s, quota)) return;
      const o = s.dequeue()!;
      if (o.msg.expiresAt && o.msg.expiresAt <= now) {
        this.forget(s, o);
        continue;
      }
      if (o.qos === 0) {
        conn.sendPublish(o, 0);
        this.forget(s, o);
      } else {
        this.#sendInflight(s, conn, o);
      }
    }
  }

  /**
   * After a reconnect to an existing session: resend unacknowledged PUBLISH with DUP and PUBREL
   * with their original packet ids [MQTT-4.4.0-1], in their original order, then the queue. No
   * more PUBLISH than the client's Receive Maximum are outstanding at once [MQTT-3.3.4-9 v5]
   * (a PUBREL's message counts until its PUBCOMP): the rest are resent as slots free.
   */
  resume(s: Session, conn: DeliverySink): void {
    const now = this.clock.now();
    const quota = this.sendQuota(conn);
    let outstanding = 0;
    let unsent: number[] | null = null;
    for (const [id, f] of s.inflight) {
      if (f.state === "pubrel") {
        conn.sendAck(PUBREL, id, 0);
        outstanding++;
      } else if (remainingExpiry(f.msg, now) === -1) {
        s.inflight.delete(id);
        this.forget(s, f);
      } else if (outstanding < quota) {
        f.state = "publish";
        if (conn.sendPublish(f, id, true)) outstanding++;
        else {
          // Over the client's Maximum Packet Size: discarded [MQTT-3.1.2-25 v5].
          s.inflight.delete(id);
          this.forget(s, f);
        }
      } else {
        f.state = "unsent";
        (unsent ??= []).push(id);
      }
    }
    s.unsent = unsent;
    this.pump(s);
  }

  /** Resend held-back in-flight messages (see `resume`) while the window has room. */
  #resendUnsent(s: Session, conn: DeliverySink, quota: number, now: number): void {
    const ids = s.unsent!;
    while (ids.length && s.inflight.size - ids.length < quota) {
      const id = ids.shift()!;
      const f = s.inflight.get(id);
      if (!f || f.state !== "unsent") continue;
      f.state = "publish";
      if (remainingExpiry(f.msg, now) === -1 || !conn.sendPublish(f, id, true)) {
        s.inflight.delete(id);
        this.forget(s, f);
      }
    }
    if (ids.length === 0) s.unsent = null;
  }

  /**
   * Add or replace a subscription of `s`: the router, the session's map and, for a persistent
   * session, the store [MQTT-3.8.4-3]. Returns the subscription it replaced, if any.
   */
  subscribe(s: Session, entry: SubscriptionEntry): SubscriptionEntry | undefined {
    const old = s.subscriptions.get(entry.filter);
    if (old) this.router.remove(old);
    s.addSubscription(entry.filter, entry);
    this.router.add(entry);
    if (this.store && s.persistent) this.store.saveSubscription(s.key, entry);
    return old;
  }

  /** Remove the subscription of `s` to `filter`; false when there was none. */
  unsubscribe(s: Session, filter: string): boolean {
    const e = s.removeSubscription(filter);
    if (!e) return false;
    this.router.remove(e);
    if (this.store && s.persistent) this.store.deleteSubscription(s.key, filter);
    return true;
  }

  /** Record a session's state in the store (when it is persistent), or remove it. */
  saveSession(s: Session): void {
    if (!this.store) return;
    if (!s.persistent) {
      this.store.deleteSession(s.key);
      return;
    }
    this.store.saveSession({
      clientId: s.key,
      version: s.protocolVersion,
      expiryInterval: s.expiryInterval,
      disconnectedAt: s.connection ? 0 : s.disconnectedAt,
      will: s.will,
      willDelay: s.willDelay,
      username: s.username,
    });
  }

  /**
   * Acknowledge an incoming QoS 1/2 message once what it changed is on disk. When the store
   * cannot commit, the broker does not lie: v5 clients get reason 0x80, v3 clients are
   * disconnected without an acknowledgement (they resend on reconnect).
   */
  ackAfterCommit(ack: () => void, fail: () => void): void {
    if (!this.store && !this.fabric.distributed) {
      ack();
      return;
    }
    this.afterDurable((ok) => (ok ? ack() : fail()));
  }

  /**
   * `ackAfterCommit` for a PUBACK/PUBREC/PUBREL/PUBCOMP (`first`: PUBACK … PUBCOMP). Without a
   * store it is sent at once and nothing is allocated for it; `fail` (a function made once, not
   * per message) runs when the commit fails.
   */
  ackAfter(
    conn: Connection,
    first: number,
    id: number,
    rc: number,
    fail: ((conn: Connection, first: number, id: number) => void) | null,
  ): void {
    if (!this.store && !this.fabric.distributed) {
      conn.sendAck(first, id, rc);
      return;
    }
    this.afterDurable((ok) => {
      if (ok) conn.sendAck(first, id, rc);
      else fail?.(conn, first, id);
    });
  }

  /**
   * Runs `cb(true)` once everything written so far is durable: committed to the store, and (in a
   * cluster) stored in JetStream with its replicas, retained messages included; `cb(false)` when
   * one of them cannot be.
   */
  afterDurable(cb: (ok: boolean) => void): void {
    const retained = (ok: boolean) => {
      if (!ok) cb(false);
      else if (!this.retained.afterDurable?.(cb)) cb(true);
    };
    const fabric = (ok: boolean) => {
      if (!ok) cb(false);
      else if (!this.fabric.afterDurable(retained)) retained(true);
    };
    if (this.store) this.store.afterCommit(fabric);
    else fabric(true);
  }

  /** Called once when a connection is gone, whatever the cause. */
  connectionClosed(conn: Connection): void {
    this.connections.delete(conn);
    if (conn.listener) this.#open.set(conn.listener, (this.#open.get(conn.listener) ?? 1) - 1);
    const s = conn.session;
    if (!s || s.connection !== conn) return;
    s.connection = null;
    s.disconnectedAt = this.clock.now();
    if (this.config.connection_messages && this.log.on("notice") && conn.clientId) {
      this.log.notice(`Client ${conn.clientId} closed its connection.`);
    }
    this.goOffline(s);
    if (this.sessions.get(s.key) === s) this.saveSession(s);
    // In a cluster: the session, offline now, is kept (with a will whose delay runs); a session
    // moving to another node is not.
    // A stopping node hands its sessions over instead (`registry.evacuate`).
    if (this.#handingOver !== s.key && !this.#moving.has(s.key) && !this.#stopping) {
      void this.keepSession(s);
    }
  }

  /**
   * In a cluster: stores what should outlive this node of the session `s` (its record without
   * messages: see `SessionRegistry.keep`). Resolves once stored; null on a single node.
   */
  keepSession(s: Session): Promise<void> | null {
    const registry = this.registry;
    if (!registry.keep) return null;
    if (this.sessions.get(s.key) !== s) return null;
    const online = s.connection !== null;
    if (!s.persistent && !(online && s.will)) return registry.keep(s.key, null);
    // With its QoS 2 state, both ways: the packet ids received and not yet released, and the
    // QoS 2 messages in flight to the client with their ids, so that a node taking the session
    // over neither delivers a message twice nor sends one again under a new id [MQTT-4.3.3-10 v5].
    const rec = recordSession(s, "qos2");
    // The will of a connection that is gone is kept while its delay runs, so that another node
    // sends it should this one die [MQTT-3.1.3-9 v5]; otherwise it is sent or dropped here.
    if (!online && !s.willTimer) rec.session.will = null;
    return registry.keep(s.key, rec);
  }

  /**
   * `ackAfter`, and in a cluster only once the QoS 2 state of the persistent session `s` is kept
   * too (see `keepSession`): a PUBREC, PUBREL or PUBCOMP promises it across the death of this
   * node.
   */
  ackAfterKept(
    conn: Connection,
    s: Session,
    first: number,
    id: number,
    rc: number,
    fail: ((conn: Connection, first: number, id: number) => void) | null,
  ): void {
    const kept = this.#keepsQos2 && s.persistent ? this.keepSession(s) : null;
    if (!kept) this.ackAfter(conn, first, id, rc, fail);
    else kept.then(() => this.ackAfter(conn, first, id, rc, fail));
  }

  /**
   * When the oldest QoS 1/2 message that the session of `key` still owes its client reached this
   * node (`Message.at`; 0 when unknown), or null when it owes none: the session's cursor in the
   * cluster's message stream.
   */
  pendingSince(key: string): number | null {
    const s = this.sessions.get(key);
    if (!s || this.#moving.has(key)) return null;
    let min = Infinity;
    for (const f of s.inflight.values()) if (f.qos > 0) min = Math.min(min, f.msg.at ?? 0);
    for (const o of s.queue) if (o.qos > 0) min = Math.min(min, o.msg.at ?? 0);
    return min === Infinity ? null : min;
  }

  /**
   * A session without a connection: publish its will now or after its delay, and end the session
   * now or when it expires [MQTT-3.1.3-9 v5][MQTT-3.1.2-23 v5]. Also used for sessions restored at
   * start-up, whose clock started at `s.disconnectedAt`.
   */
  goOffline(s: Session): void {
    const since = this.clock.now() - s.disconnectedAt;
    if (s.expiryInterval === 0) {
      if (s.will) this.publishWill(s);
      this.endSession(s);
      return;
    }
    if (s.will) {
      const delay = Math.min(s.willDelay, s.expiryInterval) * 1000 - since;
      if (delay > 0) {
        // Delayed; cancelled if the client reconnects first.
        s.willTimer = longTimeout(
          () =>
            safely(this.log, `the will timer of ${s.clientId}`, () => {
              s.willTimer = null;
              const will = s.will;
              const send = () => {
                // Not if its client came back meanwhile (with a will of its own, or none).
                if (s.will !== will || s.connection) return;
                this.publishWill(s);
                this.saveSession(s);
              };
              // In a cluster the will leaves the kept session first (see `keepSession`), so a
              // node taking the session over should this one die does not send it again.
              const kept = this.keepSession(s);
              if (kept) kept.then(() => safely(this.log, `the will of ${s.clientId}`, send));
              else send();
            }),
          delay,
          (t) => (s.willTimer = t),
          this.clock,
        );
      } else {
        this.publishWill(s);
      }
    }
    if (s.expiryInterval !== NEVER_EXPIRES) {
      // longTimeout: v5 allows expiries beyond setTimeout's 24.8 days [MQTT-3.1.2-23 v5].
      s.expiryTimer = longTimeout(
        () =>
          safely(this.log, `the expiry timer of ${s.clientId}`, () => {
            s.expiryTimer = null;
            if (!s.connection) {
              if (s.will) this.publishWill(s);
              this.stats.clientsExpired++;
              this.endSession(s);
            }
          }),
        Math.max(0, s.expiryInterval * 1000 - since),
        (t) => (s.expiryTimer = t),
        this.clock,
      );
    }
  }

  /**
   * Publish and forget the session's will. A will that cannot be sent is logged and dropped;
   * nothing in it can stop the caller (a timer, a disconnect) from going on.
   */
  publishWill(s: Session): void {
    const w = s.will;
    s.will = null;
    if (s.willTimer) this.clock.clearTimeout(s.willTimer);
    s.willTimer = null;
    if (!w) return;
    // Checked when the will is sent, with the rules in force then (as Mosquitto does); like a
    // PUBLISH, a will may not write into $SYS but for a bridge's connection state.
    const may = sysTopicDenied(w.topic) ? false : this.auth.canPublish(s, w.topic, w.qos, w.retain);
    if (may instanceof Promise) {
      may.then((ok) => this.#sendWill(s, w, ok)).catch((e) => {
        this.log.error(`Will of ${s.clientId}: ${errorText(e)}`);
      });
    } else this.#sendWill(s, w, may);
  }

  #sendWill(s: Session, w: NonNullable<Session["will"]>, allowed: boolean): void {
    if (!allowed) {
      this.log.notice(`Will of ${s.clientId} on ${w.topic} not sent: not authorized.`);
      return;
    }
    const expiry = w.properties?.messageExpiryInterval;
    try {
      this.publish({
        topic: w.topic,
        payload: w.payload,
        qos: w.qos,
        retain: w.retain,
        properties: forwardedProperties(w.properties),
        expiresAt: expiry ? this.clock.now() + expiry * 1000 : 0,
        origin: s.key,
      });
    } catch (e) {
      this.log.error(`Will of ${s.clientId} not sent: ${errorText(e)}`);
    }
  }

  /** Drop a session and its subscriptions. */
  endSession(s: Session): void {
    if (this.sessions.get(s.key) === s && this.#handingOver !== s.key) {
      this.registry.release(s.key);
    }
    s.clearTimers(this.clock);
    if (this.store && this.sessions.get(s.key) === s) this.store.deleteSession(s.key);
    for (const e of s.subscriptions.values()) this.router.remove(e);
    s.clearSubscriptions();
    s.clearQueue();
    s.inflight.clear();
    if (this.sessions.get(s.key) === s) this.sessions.delete(s.key);
  }

  /**
   * Whether this node holds the session of `key` (see `sessionKey`) as its own, not one it is
   * handing to another node (for the cluster's registry).
   */
  owns(key: string): boolean {
    return this.sessions.get(key) !== undefined && !this.#moving.has(key);
  }

  /**
   * Another node takes the session of `key` (see `sessionKey`) over: its client here is
   * disconnected (v5 0x8E Session taken over [MQTT-3.1.4-3 v5]). Returns the session's record when it
   * outlives its connection (to be resumed there), else null (and the session ends here). A
   * recorded session stays here, queueing what arrives for it, until `releaseMoved` (the new
   * owner has its subscriptions everywhere), so nothing published meanwhile is lost.
   */
  handOver(key: string): SessionRecord | null {
    const s = this.sessions.get(key);
    if (!s || this.#moving.has(key)) return null;
    this.#handingOver = key;
    try {
      s.connection?.close(0x8e, "session taken over by another node");
      const now = this.sessions.get(key);
      if (!now) return null;
      // The new connection brings its own will; a delayed one of this connection is dropped
      // with it, as when a client resumes its session [MQTT-3.1.3-9 v5].
      now.will = null;
      if (now.willTimer) this.clock.clearTimeout(now.willTimer);
      now.willTimer = null;
      if (!now.persistent) {
        this.endSession(now);
        return null;
      }
      const rec = recordSession(now);
      // Should the new owner never come back for the rest, the session ends here anyway.
      const timer = setTimeout(() => this.releaseMoved(key), MOVE_TIMEOUT_MS);
      (timer as { unref?: () => void }).unref?.();
      this.#moving.set(key, { session: now, mark: now.queue.length, timer });
      return rec;
    } finally {
      this.#handingOver = null;
    }
  }

  /**
   * The second half of `handOver`: the session leaves this node. Returns the messages queued for
   * it since its record was taken.
   */
  releaseMoved(key: string): StoredClientMessage[] {
    const m = this.#moving.get(key);
    if (!m) return [];
    this.#moving.delete(key);
    clearTimeout(m.timer);
    const delta = m.session.queue.slice(m.mark).map((o) => storedMessage(o, 0));
    if (this.sessions.get(key) === m.session) this.#endKeepingId(m.session);
    return delta;
  }

  /**
   * A session handed over by another node, rebuilt here before its client is admitted; kept in
   * the store when persistence is on, like any session of this node.
   */
  adoptSession(rec: SessionRecord): Session {
    const old = this.sessions.get(rec.session.clientId);
    if (old) this.endSession(old);
    const s = restoreSession(this, rec, this.clock.now());
    if (this.store && s.persistent) {
      this.saveSession(s);
      for (const e of s.subscriptions.values()) this.store.saveSubscription(s.key, e);
      for (const [id, f] of s.inflight) {
        f.seq = this.store.addClientMessage(s.key, {
          ...f,
          state: f.state === "pubrel" ? 2 : 1,
          packetId: id,
        });
      }
      for (const o of s.queue) {
        o.seq = this.store.addClientMessage(s.key, { ...o, state: 0, packetId: 0 });
      }
      for (const id of s.incomingQos2 ?? []) this.store.addIncomingQos2(s.key, id);
    }
    return s;
  }

  /** Keys of the sessions this node holds (for the cluster's registry). */
  sessionKeys(): string[] {
    return [...this.sessions.values()].filter((s) => !this.#moving.has(s.key)).map((s) => s.key);
  }

  /** A session handed over by a stopping node: rebuilt here, offline until its client comes. */
  adoptOffline(rec: SessionRecord): { queued: number } {
    const s = this.adoptSession(rec);
    this.goOffline(s);
    return { queued: s.queue.length };
  }

  /**
   * The will a client left on a node that died, found when the client comes back here: sent now
   * [MQTT-3.1.2-8], unless the new connection resumes the session before the will delay has run
   * [MQTT-3.1.3-9 v5]. Checked like any will (ACL, $SYS).
   */
  orphanWill(rec: SessionRecord, clean: boolean): void {
    const st = rec.session;
    if (!st.will) return;
    const since = this.clock.now() - (st.disconnectedAt || this.clock.now());
    if (!clean && st.willDelay > 0 && since < st.willDelay * 1000) return;
    const { mountPoint, clientId } = splitSessionKey(st.clientId);
    const s = new Session(clientId, mountPoint);
    s.username = st.username;
    s.will = st.will;
    this.auth.bind(s);
    this.publishWill(s);
  }

  /** Ends a session adopted here that the cluster gave to another node after all. */
  drop(key: string): void {
    const s = this.sessions.get(key);
    if (!s || s.connection) return;
    this.#endKeepingId(s);
  }

  /** Ends a session here without giving up its client id (another node has it). */
  #endKeepingId(s: Session): void {
    this.#handingOver = s.key;
    try {
      this.endSession(s);
    } finally {
      this.#handingOver = null;
    }
  }

  /** Resolves once every node knows this node's subscriptions (the fabric's barrier). */
  interestEverywhere(): Promise<void> {
    return this.fabric.barrier() ?? Promise.resolve();
  }

  /**
   * The messages the previous owner queued for an adopted session after recording it: those not
   * here already (by `Message.fid`) go after the recorded queue, before what arrived here since.
   */
  mergeMoved(session: Session | string, at: number, delta: StoredClientMessage[]): void {
    const s = typeof session === "string" ? this.sessions.get(session) : session;
    if (!s || delta.length === 0) return;
    const have = new Set<number>();
    for (const f of s.inflight.values()) if (f.msg.fid !== undefined) have.add(f.msg.fid);
    for (const o of s.queue) if (o.msg.fid !== undefined) have.add(o.msg.fid);
    let i = Math.min(at, s.queue.length);
    for (const m of delta) {
      if (m.msg.fid !== undefined && have.has(m.msg.fid)) continue;
      const o = outgoing(m.msg, m.qos, m.retain, m.subIds);
      s.enqueueAt(i++, o);
      if (this.store && s.persistent) {
        o.seq = this.store.addClientMessage(s.key, { ...o, state: 0, packetId: 0 });
      }
    }
    // Its client may be here already (a session of a dead node, filled from the stream late).
    if (s.connection) this.pump(s);
  }

  /** Keep-alive [MQTT-3.1.2-24 v3.1.1][MQTT-3.1.2-22 v5] and CONNECT time-out checks. */
  sweep(): void {
    const now = this.clock.now();
    const limit = this.config.memory_limit;
    if (limit > 0 || this.memoryOver) this.#checkMemory(limit);
    const connectMs = this.config.connect_timeout * 1000;
    for (const c of this.connections) {
      try {
        if (c.state === "new") {
          if (now - c.openedAt > connectMs) c.close(undefined, "no CONNECT in time");
        } else if (c.state === "open" && c.keepalive > 0 && now - c.lastRx > c.keepalive * 1500) {
          c.close(0x8d, "keep-alive timeout");
        } else if (c.login !== null && c.login.expiresAt > 0 && now >= c.login.expiresAt) {
          // The credential (a token's exp) ran out: v5 DISCONNECT 0xA0 Maximum connect time,
          // v3 clients are closed.
          c.close(ReasonCode.MaximumConnectTime, "credentials expired");
        }
      } catch (e) {
        c.fail(e, "the keep-alive check");
      }
    }
    for (const a of this.#attached) {
      if (a.sweep) safely(this.log, "the bridges' housekeeping", () => a.sweep!(now));
    }
  }
}

/**
 * The delivery of `msg` to a routed target: at the granted QoS, or the message's if lower
 * (unless `upgrade_outgoing_qos`), with the retain flag only under Retain As Published
 * [MQTT-3.3.1-12 v5][MQTT-3.3.1-9 v3.1.1], and the target's subscription identifiers.
 */
function delivery(t: Target, msg: Message, upgrade: boolean): Outgoing {
  const qos = (upgrade ? t.qos : Math.min(t.qos, msg.qos)) as QoS;
  return outgoing(msg, qos, t.rap ? msg.retain : false, t.subIds);
}
