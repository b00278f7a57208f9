/**
 * CONNECT → CONNACK: protocol version, client id rules, keep-alive, authentication (password
 * file, allow_anonymous), session take-over and resumption, will, and the v5 limits advertised
 * to the client.
 */
import { willLines } from "../packet_log.ts";
import { setTimeout } from "node:timers";
import type { LoginResult } from "../../auth/auth.ts";
import type { LoginAnswer } from "../../auth/chain_types.ts";
import type { ConnectPacket, Properties } from "../../codec/types.ts";
import { ConnackCodeV3, ReasonCode } from "../../codec/types.ts";
import type { Connection } from "../connection.ts";
import { sharedTerms } from "../terms.ts";
import { NEVER_EXPIRES, Session, sessionKey } from "../session.ts";
import { fitsWithPrefix } from "../topic.ts";

/** Send a refusing CONNACK and close [MQTT-3.2.2-5 v3.1.1][MQTT-3.2.2-7 v5]. */
function refuse(conn: Connection, v3code: number, v5code: number, why: string): void {
  conn.send({
    cmd: "connack",
    sessionPresent: false,
    reasonCode: conn.version === 5 ? v5code : v3code,
    properties: conn.reason(why),
  });
  conn.broker.log.notice(`Client ${conn.label} refused: ${why}.`);
  conn.close();
}

/**
 * Refuse a login. Every cause (unknown user, wrong password, anonymous not allowed) gets the
 * same CONNACK, v3 return code 5 / v5 0x87 Not authorized, as in Mosquitto, so a client cannot
 * tell a wrong user name from a wrong password [MQTT-3.2.2-5 v3.1.1][MQTT-3.2.2-7 v5]; the cause goes to the log only.
 * A link may ask for another v5 code (0x86 when a token in the password field is bad: v3 4).
 */
function refuseLogin(conn: Connection, why: string, code?: number): void {
  const bad = code === ReasonCode.BadUserNameOrPassword;
  conn.send({
    cmd: "connack",
    sessionPresent: false,
    reasonCode: conn.version === 5
      ? (code ?? ReasonCode.NotAuthorized)
      : bad
      ? ConnackCodeV3.BadUserNameOrPassword
      : ConnackCodeV3.NotAuthorized,
    properties: conn.reason(bad ? "bad user name or password" : "not authorized"),
  });
  conn.broker.log.notice(`Client ${conn.label} refused: ${why}.`);
  conn.close();
}

/** What `handleConnect` has worked out before the login is settled. */
interface Admission {
  clientId: string;
  assigned: boolean;
  keepalive: number;
  serverKeepAlive: number | undefined;
}

/**
 * Act on a login result: admit, refuse now, or (repeated failures from one address) refuse
 * after a delay, returned as a Promise.
 */
function settle(
  conn: Connection,
  p: ConnectPacket,
  a: Admission,
  r: LoginResult,
): Promise<void> | undefined {
  if (conn.closed) return;
  if (r.ok) return admitOwned(conn, p, a, r.answer);
  if (r.delayMs <= 0) {
    refuseLogin(conn, r.reason, r.code);
    return;
  }
  return new Promise((resolve) => {
    // unref: a pending refusal does not keep a stopping broker alive.
    setTimeout(() => {
      try {
        if (!conn.closed) {
          refuseLogin(conn, `${r.reason} (answered after ${r.delayMs} ms)`, r.code);
        }
      } catch (e) {
        conn.fail(e, "a delayed refusal");
      }
      resolve();
    }, r.delayMs).unref();
  });
}

export function handleConnect(conn: Connection, p: ConnectPacket): void {
  const broker = conn.broker;
  const cfg = broker.config;
  // use_identity_as_username / use_subject_as_username (TLS): the client certificate's name
  // replaces the CONNECT user name, and the verified certificate stands for the password.
  const certUser = conn.socket.certUsername;
  if (certUser !== undefined) p = { ...p, username: certUser, password: undefined };
  conn.version = p.protocolVersion;
  const v5 = p.protocolVersion === 5;
  const props = p.properties ?? {};
  // A v3 CONNECT has no properties: only v5 clients and bridges can ask for other terms.
  if (v5 || p.bridgeMode) {
    conn.terms = sharedTerms({
      receiveMax: props.receiveMaximum ?? 65535,
      maxPacket: props.maximumPacketSize ?? 0,
      problemInfo: props.requestProblemInformation !== 0,
      aliasMaxOut: Math.min(props.topicAliasMaximum ?? 0, cfg.max_topic_alias_broker),
      bridgeMode: p.bridgeMode,
    });
  }

  if (v5) {
    const method = props.authenticationMethod;
    if (method !== undefined && !broker.auth.supportsMethod(conn.listener, method)) {
      // Only methods a link of this listener's chain takes (OAUTH2-JWT with jwt) [MQTT-4.12.0-1 v5].
      refuse(conn, 0, ReasonCode.BadAuthenticationMethod, "unsupported authentication method");
      return;
    }
  }

  // Client identifier [MQTT-3.1.3-5..9].
  let clientId = p.clientId;
  let assigned = false;
  if (clientId === "") {
    if (p.protocolVersion === 3) {
      // MQTT 3.1 requires a client id of 1 to 23 characters.
      refuse(
        conn,
        ConnackCodeV3.IdentifierRejected,
        ReasonCode.ClientIdentifierNotValid,
        "empty client id (MQTT 3.1)",
      );
      return;
    }
    if (!p.clean && !v5) {
      // [MQTT-3.1.3-8 v3.1.1] a zero-byte id with CleanSession=0 is rejected with 0x02.
      refuse(
        conn,
        ConnackCodeV3.IdentifierRejected,
        ReasonCode.ClientIdentifierNotValid,
        "empty client id with clean session 0 [MQTT-3.1.3-8 v3.1.1]",
      );
      return;
    }
    if (!cfg.allow_zero_length_clientid) {
      refuse(
        conn,
        ConnackCodeV3.IdentifierRejected,
        ReasonCode.ClientIdentifierNotValid,
        "empty client id not allowed",
      );
      return;
    }
    clientId = broker.assignClientId();
    assigned = true;
  }
  // Mosquitto's clientid_prefixes: other client ids are refused as not authorized.
  if (cfg.clientid_prefixes !== "" && !clientId.startsWith(cfg.clientid_prefixes)) {
    refuse(
      conn,
      ConnackCodeV3.NotAuthorized,
      ReasonCode.NotAuthorized,
      `client id does not start with ${JSON.stringify(cfg.clientid_prefixes)}`,
    );
    return;
  }
  // use_username_as_clientid: the user name replaces the client id; none given is refused.
  if (conn.listener?.use_username_as_clientid) {
    if (p.username === undefined) {
      refuse(
        conn,
        ConnackCodeV3.NotAuthorized,
        ReasonCode.NotAuthorized,
        "no user name to use as client id (use_username_as_clientid)",
      );
      return;
    }
    clientId = p.username;
    assigned = false;
  }
  conn.clientId = clientId;
  conn.username = p.username;

  // Keep-alive: v5 Server Keep Alive when the client asks for more than max_keepalive (or 0).
  let keepalive = p.keepalive;
  let serverKeepAlive: number | undefined;
  if (cfg.max_keepalive > 0 && (keepalive === 0 || keepalive > cfg.max_keepalive)) {
    if (v5) {
      keepalive = cfg.max_keepalive;
      serverKeepAlive = keepalive;
    } else if (keepalive > cfg.max_keepalive) {
      refuse(
        conn,
        ConnackCodeV3.IdentifierRejected,
        ReasonCode.ClientIdentifierNotValid,
        `keep-alive ${keepalive} over max_keepalive`,
      );
      return;
    }
  }
  conn.keepalive = keepalive;

  // Will checks [MQTT-3.2.2-12 v5][MQTT-3.2.2-13 v5]. The decoder has refused a will topic that
  // is empty, holds a wildcard or is not valid UTF-8.
  const will = p.will;
  if (will) {
    if (conn.mountPoint && !fitsWithPrefix(conn.mountPoint, will.topic)) {
      // The listener's mount_point would push the will topic past 65,535 bytes [MQTT-4.7.3-3]:
      // v5 0x90 Topic Name invalid; 3.1.1 has no return code for it, so the connection is closed
      // without a CONNACK [MQTT-3.2.2-6 v3.1.1].
      const why = "will topic too long with the listener's mount_point [MQTT-4.7.3-3]";
      if (v5) refuse(conn, 0, ReasonCode.TopicNameInvalid, why);
      else conn.close(undefined, why);
      return;
    }
    if (will.qos > cfg.max_qos) {
      refuse(
        conn,
        ConnackCodeV3.NotAuthorized,
        ReasonCode.QoSNotSupported,
        "will QoS over max_qos",
      );
      return;
    }
    if (will.retain && !cfg.retain_available) {
      refuse(
        conn,
        ConnackCodeV3.NotAuthorized,
        ReasonCode.RetainNotSupported,
        "retained will not available",
      );
      return;
    }
  }

  // Authentication: the listener's auth chain (password_file and allow_anonymous, jwt, http).
  // A slow hash, a token check, a remote service or a delayed refusal holds the packets that
  // follow CONNECT until the answer is known.
  const a: Admission = { clientId, assigned, keepalive, serverKeepAlive };
  const login = certUser !== undefined ? { ok: true as const } : broker.auth.checkLogin(
    conn.listener,
    conn.socket.remoteAddress,
    p.username,
    p.password,
    {
      clientId,
      protocolVersion: p.protocolVersion,
      authMethod: props.authenticationMethod,
      authData: props.authenticationData,
    },
  );
  if (login instanceof Promise) {
    conn.hold(login.then((r) => settle(conn, p, a, r)));
  } else {
    const later = settle(conn, p, a, login);
    // A refusal delayed drops what follows; an admission waiting for its client id keeps it.
    if (later) conn.hold(later, login.ok);
  }
}

/**
 * The login is accepted: admit once this node owns the client id. On a single node that is now;
 * in a cluster it may take the client id from another node, which hands over its session
 * [MQTT-3.1.4-2 v3.1.1][MQTT-3.1.4-3 v5], and the client's later packets wait meanwhile.
 */
function admitOwned(
  conn: Connection,
  p: ConnectPacket,
  a: Admission,
  answer?: LoginAnswer,
): Promise<void> | undefined {
  const broker = conn.broker;
  if (!broker.registry.distributed) {
    admit(conn, p, a, answer);
    return;
  }
  // The registry knows sessions by key: a client id under a listener's mount point.
  const key = sessionKey(conn.mountPoint, a.clientId);
  return broker.registry.acquire(key, p.clean).then(
    async (h) => {
      if (h) {
        const s = broker.adoptSession(h.record);
        const recorded = s.queue.length;
        // Its subscriptions reach every node before the previous owner stops queueing for it.
        await broker.fabric.barrier();
        broker.mergeMoved(s, recorded, await h.finish());
      }
      if (conn.closed) {
        // Gone while its id was being taken: an adopted session stays, offline; otherwise
        // nothing of it stays here.
        const s = broker.sessions.get(key);
        if (!s) broker.registry.release(key);
        else if (!s.connection) broker.goOffline(s);
        return;
      }
      admit(conn, p, a, answer);
    },
    (e) => {
      if (conn.closed) return;
      refuse(
        conn,
        ConnackCodeV3.ServerUnavailable,
        ReasonCode.ServerUnavailable,
        `cluster: ${e instanceof Error ? e.message : e}`,
      );
    },
  );
}

/** The client id is this node's: take over or resume the session, send CONNACK. */
function admit(conn: Connection, p: ConnectPacket, a: Admission, answer?: LoginAnswer): void {
  const broker = conn.broker;
  const cfg = broker.config;
  const v5 = p.protocolVersion === 5;
  const props = p.properties ?? {};
  const will = p.will;
  const { clientId, assigned, keepalive, serverKeepAlive } = a;
  if (broker.memoryOver) {
    // memory_limit: the broker holds more than allowed; v5 0x89 Server busy, v3 has no code.
    const why = "memory_limit reached";
    if (v5) refuse(conn, 0, ReasonCode.ServerBusy, why);
    else conn.close(undefined, why);
    return;
  }

  // Session expiry: v5 property; v3 clean session = 0, persistent = never (or the configured cap).
  let expiry: number;
  if (v5) expiry = props.sessionExpiryInterval ?? 0;
  else expiry = p.clean ? 0 : NEVER_EXPIRES;
  if (cfg.persistent_client_expiration > 0 && expiry > cfg.persistent_client_expiration) {
    expiry = cfg.persistent_client_expiration;
  }

  // Take-over [MQTT-3.1.4-2 v3.1.1][MQTT-3.1.4-3 v5]: the existing connection of this client id is closed. Sessions are
  // per mount point: a listener's clients never reach another mount point's sessions.
  const key = sessionKey(conn.mountPoint, clientId);
  let session = broker.sessions.get(key);
  if (session?.connection) {
    const old = session.connection;
    // v5 §3.1.3.2.2: the old will is sent unless the new connection resumes the session and has a will delay.
    old.close(ReasonCode.SessionTakenOver, "session taken over");
    session = broker.sessions.get(key);
  }
  let sessionPresent = false;
  if (session && (p.clean || session.expiryInterval === 0)) {
    // Clean start discards the old session [MQTT-3.1.2-6 v3.1.1][MQTT-3.1.2-4 v5]; a pending will goes out now.
    if (session.will) broker.publishWill(session);
    broker.endSession(session);
    session = undefined;
  }
  if (session) {
    sessionPresent = true; // [MQTT-3.2.2-2 v3.1.1][MQTT-3.2.2-3 v5]
    session.clearTimers(broker.clock);
    // A reconnect before the will delay ends cancels the will [MQTT-3.1.3-9 v5].
    session.will = null;
  } else {
    const max = cfg.global_max_clients;
    if (max > 0 && broker.sessions.size >= max) {
      // global_max_clients: sessions, offline ones included, are bounded (as in Mosquitto 2.1):
      // v5 0x89 Server busy; 3.1.1 has no code for it [MQTT-3.2.2-6 v3.1.1].
      const why = `global_max_clients (${max}) sessions held`;
      if (v5) refuse(conn, 0, ReasonCode.ServerBusy, why);
      else conn.close(undefined, why);
      return;
    }
    session = new Session(clientId, conn.mountPoint);
    broker.sessions.set(key, session);
  }
  session.protocolVersion = p.protocolVersion;
  session.expiryInterval = expiry;
  // The will is kept for the whole connection: its own payload, not a view into a read.
  session.will = will
    ? { ...will, topic: conn.mountPoint + will.topic, payload: will.payload.slice() }
    : null;
  session.willDelay = v5 ? (will?.properties?.willDelayInterval ?? 0) : 0;
  session.connection = conn;
  conn.session = session;
  conn.state = "open";
  broker.stats.connects++;
  session.username = p.username;
  broker.auth.bind(session, conn.listener, answer);
  const method = v5 ? props.authenticationMethod : undefined;
  if (answer?.expiresAt || method !== undefined) {
    conn.login = { expiresAt: answer?.expiresAt ?? 0, method };
  }
  // The auth chain: messages queued for this session that this client may not read are dropped.
  let unreadable = sessionPresent ? broker.auth.dropUnreadable(session) : [];
  if (Array.isArray(unreadable)) {
    for (const o of unreadable) broker.forget(session, o);
    unreadable = [];
  }
  broker.saveSession(session);
  // In a cluster the session and the will are kept where a surviving node finds them, should
  // this one die.
  void broker.keepSession(session);

  const ack: Properties = {};
  if (method !== undefined) ack.authenticationMethod = method;
  if (v5) {
    if (assigned) ack.assignedClientIdentifier = clientId; // [MQTT-3.2.2-16 v5]
    if (serverKeepAlive !== undefined) ack.serverKeepAlive = serverKeepAlive;
    const m = cfg.max_inflight_messages;
    if (m > 0 && m < 65535) ack.receiveMaximum = m;
    if (cfg.max_qos < 2) ack.maximumQoS = cfg.max_qos;
    if (!cfg.retain_available) ack.retainAvailable = 0;
    if (cfg.max_packet_size > 0 && cfg.max_packet_size < 268435460) {
      ack.maximumPacketSize = cfg.max_packet_size;
    }
    ack.topicAliasMaximum = cfg.max_topic_alias;
  }
  if (cfg.connection_messages && broker.log.on("notice")) {
    broker.log.notice(
      `New client connected from ${conn.socket.remoteAddress}:${conn.socket.remotePort} as ${clientId} (p${p.protocolVersion}, c${
        p.clean ? 1 : 0
      }, k${keepalive}${p.username !== undefined ? ", u'" + p.username + "'" : ""}).`,
    );
  }
  // Mosquitto's order: the client's line, its will, then CONNACK.
  if (broker.log.debugging) { for (const line of willLines(p)) broker.log.debug(line); }
  conn.send({
    cmd: "connack",
    sessionPresent,
    reasonCode: 0,
    properties: v5 && Object.keys(ack).length ? ack : undefined,
  });
  if (!sessionPresent) return;
  if (unreadable instanceof Promise) {
    // A remote authorizer is asked about the queued messages: they are resent once it answered.
    const s = session;
    conn.hold(unreadable.then((dropped) => {
      for (const o of dropped) broker.forget(s, o);
      if (!conn.closed) broker.resume(s, conn);
    }));
  } else broker.resume(session, conn);
}
