/**
 * The embedded store: SQLite through `node:sqlite` (WAL), which works the same in Deno, Bun and
 * the compiled executable. Writes are queued and committed in one transaction per event-loop
 * turn; with `persistence_sync = "full"` each commit is fsynced before the callbacks waiting on it
 * (the broker's PUBACK/PUBREC) run.
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { setImmediate } from "node:timers";
import { Buffer } from "node:buffer";
import type { Properties, ProtocolVersion, QoS, Will } from "../codec/types.ts";
import type { Message } from "../broker/message.ts";
import type {
  Snapshot,
  Store,
  StoredClientMessage,
  StoredSession,
  StoredSubscription,
} from "./types.ts";

const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS retained(
  topic TEXT PRIMARY KEY, payload BLOB NOT NULL, qos INTEGER NOT NULL, props TEXT,
  expires_at INTEGER NOT NULL, origin TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions(
  client_id TEXT PRIMARY KEY, version INTEGER NOT NULL, expiry INTEGER NOT NULL,
  disconnected_at INTEGER NOT NULL, will TEXT, will_delay INTEGER NOT NULL, username TEXT);
CREATE TABLE IF NOT EXISTS subscriptions(
  client_id TEXT NOT NULL, filter TEXT NOT NULL, qos INTEGER NOT NULL, nl INTEGER NOT NULL,
  rap INTEGER NOT NULL, rh INTEGER NOT NULL, sub_id INTEGER NOT NULL, topic_filter TEXT,
  PRIMARY KEY(client_id, filter));
CREATE TABLE IF NOT EXISTS messages(
  id INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL,
  retain INTEGER NOT NULL, props TEXT, expires_at INTEGER NOT NULL, origin TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS client_msgs(
  client_id TEXT NOT NULL, seq INTEGER NOT NULL, msg_id INTEGER NOT NULL, qos INTEGER NOT NULL,
  retain INTEGER NOT NULL, sub_ids TEXT, state INTEGER NOT NULL, packet_id INTEGER NOT NULL,
  PRIMARY KEY(client_id, seq));
CREATE TABLE IF NOT EXISTS incoming_qos2(
  client_id TEXT NOT NULL, packet_id INTEGER NOT NULL, PRIMARY KEY(client_id, packet_id));
`;

/** A store that cannot be opened: the message names the file and the cause. */
export class StoreError extends Error {}

export type SyncMode = "full" | "normal" | "off";

/** The store id and reference count of a message body shared by several client queues. */
const bodyIds = new WeakMap<Message, number>();

export class SqliteStore implements Store {
  readonly file: string;
  readonly #db: DatabaseSync;
  #ops: (() => void)[] = [];
  #waiting: ((ok: boolean) => void)[] = [];
  #scheduled = false;
  #nextSeq = 1;
  #nextMsgId = 1;
  /** message id → number of client_msgs rows using it. */
  readonly #refs = new Map<number, number>();
  /** message id → the message, while some queue refers to it. */
  readonly #bodies = new Map<number, Message>();
  readonly stats = { commits: 0, errors: 0, lastCommitMs: 0, totalCommitMs: 0 };
  readonly #s: Record<string, StatementSync>;
  /** Called with the error of a failed commit (logging). */
  onError: (e: unknown) => void = () => {};
  /** Called with an error thrown by an `afterCommit` callback (logging); the others still run. */
  onCallbackError: (e: unknown) => void = () => {};

  /** Opened with `readOnly`: only `load()` (a check), no writes, and tables may be missing. */
  readonly #readOnly: boolean;
  /** The tables an existing database has (read-only mode), or null. */
  readonly #tables: Set<string> | null = null;

  /**
   * Opens (creating it when missing) the database `file`. With `readOnly` an existing database
   * is only read, as a configuration check does: nothing is created, migrated or cleaned up.
   * Throws StoreError.
   */
  constructor(file: string, sync: SyncMode = "full", opts: { readOnly?: boolean } = {}) {
    this.file = file;
    this.#readOnly = opts.readOnly === true;
    try {
      if (this.#readOnly) {
        this.#db = new DatabaseSync(file, { readOnly: true });
        const names = this.#db.prepare("SELECT name FROM sqlite_master WHERE type='table'").all();
        this.#tables = new Set(names.map((r) => String((r as Row).name)));
      } else {
        mkdirSync(dirname(file), { recursive: true });
        this.#db = new DatabaseSync(file);
        this.#db.exec(`PRAGMA journal_mode=WAL; PRAGMA synchronous=${sync.toUpperCase()};`);
        this.#db.exec(SCHEMA);
        this.#addMissingColumns();
      }
      const hasMeta = this.#tables === null || this.#tables.has("meta");
      const v = hasMeta
        ? this.#db.prepare("SELECT value FROM meta WHERE key='schema'").get() as
          | { value: string }
          | undefined
        : undefined;
      if (v && Number(v.value) !== SCHEMA_VERSION) {
        throw new Error(`schema version ${v.value}, expected ${SCHEMA_VERSION}`);
      }
      if (!v && !this.#readOnly) {
        this.#db.prepare("INSERT INTO meta(key, value) VALUES ('schema', ?)").run(
          String(SCHEMA_VERSION),
        );
      }
      const check = this.#db.prepare("PRAGMA quick_check").get() as Record<string, string>;
      const verdict = Object.values(check)[0];
      if (verdict !== "ok") throw new Error(`integrity check failed: ${verdict}`);
    } catch (e) {
      throw new StoreError(`${file}: cannot open the persistence database: ${errText(e)}`);
    }
    if (this.#readOnly) {
      this.#s = {};
      return;
    }
    const p = (sql: string) => this.#db.prepare(sql);
    this.#s = {
      setRetained: p(
        "INSERT OR REPLACE INTO retained(topic,payload,qos,props,expires_at,origin) VALUES (?,?,?,?,?,?)",
      ),
      deleteRetained: p("DELETE FROM retained WHERE topic=?"),
      saveSession: p(
        "INSERT OR REPLACE INTO sessions(client_id,version,expiry,disconnected_at,will,will_delay,username) VALUES (?,?,?,?,?,?,?)",
      ),
      delSession: p("DELETE FROM sessions WHERE client_id=?"),
      delSubs: p("DELETE FROM subscriptions WHERE client_id=?"),
      delMsgs: p("DELETE FROM client_msgs WHERE client_id=?"),
      delQos2: p("DELETE FROM incoming_qos2 WHERE client_id=?"),
      saveSub: p(
        "INSERT OR REPLACE INTO subscriptions(client_id,filter,qos,nl,rap,rh,sub_id,topic_filter) VALUES (?,?,?,?,?,?,?,?)",
      ),
      delSub: p("DELETE FROM subscriptions WHERE client_id=? AND filter=?"),
      addBody: p(
        "INSERT OR REPLACE INTO messages(id,topic,payload,qos,retain,props,expires_at,origin) VALUES (?,?,?,?,?,?,?,?)",
      ),
      delBody: p("DELETE FROM messages WHERE id=?"),
      addMsg: p(
        "INSERT INTO client_msgs(client_id,seq,msg_id,qos,retain,sub_ids,state,packet_id) VALUES (?,?,?,?,?,?,?,?)",
      ),
      updMsg: p("UPDATE client_msgs SET state=?, packet_id=? WHERE client_id=? AND seq=?"),
      delMsg: p("DELETE FROM client_msgs WHERE client_id=? AND seq=?"),
      addQos2: p("INSERT OR IGNORE INTO incoming_qos2(client_id,packet_id) VALUES (?,?)"),
      delQos2One: p("DELETE FROM incoming_qos2 WHERE client_id=? AND packet_id=?"),
    };
  }

  /**
   * Cap the database at `pages` pages (SQLite's max_page_count; 4 KiB pages by default): writes
   * beyond it fail as on a full disk. For tests of the failure path, and for operators who want a
   * hard size limit.
   */
  limitPages(pages: number): void {
    this.#db.exec(`PRAGMA max_page_count = ${Math.max(1, Math.floor(pages))}`);
  }

  /** Columns added after a table was first created (a database from an earlier 0.x). */
  #addMissingColumns(): void {
    const add: [string, string, string][] = [
      ["sessions", "username", "TEXT"],
      ["subscriptions", "topic_filter", "TEXT"],
    ];
    for (const [table, column, type] of add) {
      const cols = this.#db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[];
      if (!cols.some((c) => c.name === column)) {
        this.#db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
      }
    }
  }

  /**
   * Everything the database holds, for start-up. A row that cannot be read (malformed JSON, a
   * value out of range) throws a StoreError naming the file, the table and the row.
   */
  load(): Snapshot {
    const retained: Message[] = [];
    this.#each("retained", (r) => `topic ${quote(r.topic)}`, (r) => {
      retained.push(rowMessage(r, true));
    });
    const bodies = new Map<number, Message>();
    this.#each("messages", (r) => `id ${r.id}`, (r) => {
      const m = rowMessage(r, !!r.retain);
      bodies.set(Number(r.id), m);
      bodyIds.set(m, Number(r.id));
      this.#bodies.set(Number(r.id), m);
      this.#nextMsgId = Math.max(this.#nextMsgId, Number(r.id) + 1);
    });
    const sessions: Snapshot["sessions"] = [];
    const byId = new Map<string, Snapshot["sessions"][number]>();
    this.#each("sessions", (r) => `client_id ${quote(r.client_id)}`, (r) => {
      const s: StoredSession = {
        clientId: clientKey(r),
        version: Number(r.version) as ProtocolVersion,
        expiryInterval: Number(r.expiry),
        disconnectedAt: Number(r.disconnected_at),
        will: r.will ? decodeWill(String(r.will)) : null,
        willDelay: Number(r.will_delay),
        username: r.username === null || r.username === undefined ? undefined : String(r.username),
      };
      const entry = { session: s, subscriptions: [], messages: [], incomingQos2: [] };
      sessions.push(entry);
      byId.set(s.clientId, entry);
    });
    const subKey = (r: Row) => `client_id ${quote(r.client_id)}, filter ${quote(r.filter)}`;
    this.#each("subscriptions", subKey, (r) => {
      byId.get(clientKey(r))?.subscriptions.push({
        filter: String(r.filter),
        qos: qosOf(r.qos),
        nl: !!r.nl,
        rap: !!r.rap,
        rh: Number(r.rh),
        subId: Number(r.sub_id),
        topicFilter: r.topic_filter ? String(r.topic_filter) : undefined,
      });
    });
    const msgKey = (r: Row) => `client_id ${quote(r.client_id)}, seq ${r.seq}`;
    this.#each("client_msgs", msgKey, (r) => {
      const seq = Number(r.seq);
      this.#nextSeq = Math.max(this.#nextSeq, seq + 1);
      const msgId = Number(r.msg_id);
      const msg = bodies.get(msgId);
      const owner = byId.get(clientKey(r));
      if (!msg || !owner) return;
      const m = {
        seq,
        msg,
        qos: qosOf(r.qos),
        retain: !!r.retain,
        subIds: r.sub_ids ? decodeSubIds(String(r.sub_ids)) : undefined,
        state: Number(r.state) as 0 | 1 | 2,
        packetId: Number(r.packet_id),
      };
      this.#refs.set(msgId, (this.#refs.get(msgId) ?? 0) + 1);
      owner.messages.push(m);
    }, " ORDER BY seq");
    const q2Key = (r: Row) => `client_id ${quote(r.client_id)}, packet_id ${r.packet_id}`;
    this.#each("incoming_qos2", q2Key, (r) => {
      byId.get(clientKey(r))?.incomingQos2.push(Number(r.packet_id));
    });
    // Bodies no queue refers to any more (a crash between the two deletes).
    for (const [id, m] of bodies) {
      if (this.#readOnly) break;
      if (this.#refs.has(id)) continue;
      this.#s.delBody.run(id);
      this.#bodies.delete(id);
      bodyIds.delete(m);
    }
    return { retained, sessions };
  }

  /**
   * Calls `fn` on every row of `table`. An error, in the query or in a row, becomes one line
   * naming the file, the table and (with `key`) the row.
   */
  #each(table: string, key: (r: Row) => string, fn: (r: Row) => void, order = ""): void {
    if (this.#tables && !this.#tables.has(table)) return;
    let rows: Row[];
    // client_id is also read as bytes: a session key may hold a NUL (see `sessionKey`), where
    // Deno's node:sqlite cuts a text value short.
    const cols = table === "retained" || table === "messages"
      ? "*"
      : "*, CAST(client_id AS BLOB) AS client_key";
    try {
      rows = this.#db.prepare(`SELECT ${cols} FROM ${table}${order}`).all() as Row[];
    } catch (e) {
      throw new StoreError(`${this.file}: cannot read table ${table}: ${oneLine(e)}`);
    }
    for (const r of rows) {
      try {
        fn(r);
      } catch (e) {
        throw new StoreError(
          `${this.file}: malformed row in table ${table} (${key(r)}): ${oneLine(e)}`,
        );
      }
    }
  }

  #op(fn: () => void): void {
    this.#ops.push(fn);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => this.flush());
  }

  setRetained(m: Message): void {
    const props = encodeProps(m.properties);
    this.#op(() =>
      this.#s.setRetained.run(m.topic, m.payload, m.qos, props, m.expiresAt, m.origin)
    );
  }
  deleteRetained(topic: string): void {
    this.#op(() => this.#s.deleteRetained.run(topic));
  }

  saveSession(s: StoredSession): void {
    const will = s.will ? encodeWill(s.will) : null;
    const row = [
      s.clientId,
      s.version,
      s.expiryInterval,
      s.disconnectedAt,
      will,
      s.willDelay,
      s.username ?? null,
    ];
    this.#op(() => this.#s.saveSession.run(...row));
  }
  deleteSession(clientId: string): void {
    this.#op(() => {
      this.#s.delSession.run(clientId);
      this.#s.delSubs.run(clientId);
      this.#s.delQos2.run(clientId);
    });
    this.#dropMessagesOf(clientId);
  }

  #dropMessagesOf(clientId: string): void {
    this.#op(() => {
      const rows = this.#db.prepare("SELECT msg_id FROM client_msgs WHERE client_id=?").all(
        clientId,
      ) as Row[];
      this.#s.delMsgs.run(clientId);
      for (const r of rows) this.#unref(Number(r.msg_id));
    });
  }

  saveSubscription(clientId: string, sub: StoredSubscription): void {
    this.#op(() =>
      this.#s.saveSub.run(
        clientId,
        sub.filter,
        sub.qos,
        sub.nl ? 1 : 0,
        sub.rap ? 1 : 0,
        sub.rh,
        sub.subId,
        sub.topicFilter ?? null,
      )
    );
  }
  deleteSubscription(clientId: string, filter: string): void {
    this.#op(() => this.#s.delSub.run(clientId, filter));
  }

  addClientMessage(clientId: string, m: Omit<StoredClientMessage, "seq">): number {
    const seq = this.#nextSeq++;
    let id = bodyIds.get(m.msg);
    if (id === undefined) {
      id = this.#nextMsgId++;
      bodyIds.set(m.msg, id);
      this.#bodies.set(id, m.msg);
      const msg = m.msg;
      const props = encodeProps(msg.properties);
      const bid = id;
      this.#op(() =>
        this.#s.addBody.run(
          bid,
          msg.topic,
          msg.payload,
          msg.qos,
          msg.retain ? 1 : 0,
          props,
          msg.expiresAt,
          msg.origin,
        )
      );
    }
    const msgId = id;
    this.#refs.set(msgId, (this.#refs.get(msgId) ?? 0) + 1);
    const subIds = m.subIds?.length ? JSON.stringify(m.subIds) : null;
    this.#op(() =>
      this.#s.addMsg.run(
        clientId,
        seq,
        msgId,
        m.qos,
        m.retain ? 1 : 0,
        subIds,
        m.state,
        m.packetId,
      )
    );
    return seq;
  }

  updateClientMessage(clientId: string, seq: number, state: 0 | 1 | 2, packetId: number): void {
    this.#op(() => this.#s.updMsg.run(state, packetId, clientId, seq));
  }

  deleteClientMessage(clientId: string, seq: number, msg: Message): void {
    const id = bodyIds.get(msg);
    this.#op(() => {
      this.#s.delMsg.run(clientId, seq);
      if (id !== undefined) this.#unref(id);
    });
  }

  /** Drop one reference to a message body; delete the body with the last one. */
  #unref(id: number): void {
    const n = (this.#refs.get(id) ?? 1) - 1;
    if (n > 0) {
      this.#refs.set(id, n);
      return;
    }
    this.#refs.delete(id);
    this.#s.delBody.run(id);
    const m = this.#bodies.get(id);
    this.#bodies.delete(id);
    if (m) bodyIds.delete(m);
  }

  addIncomingQos2(clientId: string, packetId: number): void {
    this.#op(() => this.#s.addQos2.run(clientId, packetId));
  }
  deleteIncomingQos2(clientId: string, packetId: number): void {
    this.#op(() => this.#s.delQos2One.run(clientId, packetId));
  }

  afterCommit(cb: (ok: boolean) => void): void {
    this.#waiting.push(cb);
    this.#schedule();
  }

  flush(): boolean {
    this.#scheduled = false;
    const ops = this.#ops;
    const waiting = this.#waiting;
    this.#ops = [];
    this.#waiting = [];
    let ok = true;
    if (ops.length) {
      const t0 = performance.now();
      try {
        this.#db.exec("BEGIN");
        for (const op of ops) op();
        this.#db.exec("COMMIT");
      } catch (e) {
        ok = false;
        this.stats.errors++;
        try {
          this.#db.exec("ROLLBACK");
        } catch { /* the transaction may already be gone */ }
        this.onError(e);
      }
      const ms = performance.now() - t0;
      this.stats.commits++;
      this.stats.lastCommitMs = ms;
      this.stats.totalCommitMs += ms;
    }
    for (const cb of waiting) {
      // One waiter's error must not cost the others their acknowledgements, nor the process.
      try {
        cb(ok);
      } catch (e) {
        this.onCallbackError(e);
      }
    }
    return ok;
  }

  close(): void {
    this.flush();
    this.#db.close();
  }
}

type Row = Record<string, unknown>;

const utf8 = new TextDecoder();

/** A row's client_id, whole (read as bytes: it may hold a NUL, see `#each`). */
function clientKey(r: Row): string {
  const b = r.client_key;
  return b instanceof Uint8Array ? utf8.decode(b) : String(r.client_id);
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** An error's message on one line, at most 200 characters. */
function oneLine(e: unknown): string {
  const t = errText(e).replace(/\s+/g, " ").trim();
  return t.length > 200 ? t.slice(0, 200) + "…" : t;
}

/** A value from a row, quoted for an error message (and cut short). */
function quote(v: unknown): string {
  const t = JSON.stringify(String(v));
  return t.length > 80 ? t.slice(0, 80) + '…"' : t;
}

/** A stored QoS: 0, 1 or 2. */
function qosOf(v: unknown): QoS {
  const q = Number(v);
  if (q !== 0 && q !== 1 && q !== 2) {
    throw new Error(`qos ${String(v).slice(0, 20)} is not 0, 1 or 2`);
  }
  return q;
}

function rowMessage(r: Row, retain: boolean): Message {
  return {
    topic: String(r.topic),
    payload: toBytes(r.payload),
    qos: qosOf(r.qos),
    retain,
    properties: r.props ? decodeProps(String(r.props)) : undefined,
    expiresAt: Number(r.expires_at),
    origin: String(r.origin),
  };
}

function toBytes(v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return new Uint8Array(v);
  return new Uint8Array(0);
}

/** Properties as JSON; binary values as {"b64": "..."}. */
function encodeProps(p: Properties | undefined): string | null {
  if (!p) return null;
  return JSON.stringify(
    p,
    (_k, v) => v instanceof Uint8Array ? { b64: Buffer.from(v).toString("base64") } : v,
  );
}

/**
 * Properties stored by `encodeProps`; anything but a JSON object is an error naming `column`.
 */
function decodeProps(s: string, column = "props"): Properties {
  let p: Properties;
  try {
    p = parseProps(s);
  } catch (e) {
    throw new Error(`${column}: ${errText(e)}`);
  }
  if (p === null || typeof p !== "object" || Array.isArray(p)) {
    throw new Error(`${column} is not a JSON object: ${s.slice(0, 40)}`);
  }
  return p;
}

function parseProps(s: string): Properties {
  return JSON.parse(
    s,
    (_k, v) =>
      v && typeof v === "object" && !Array.isArray(v) && typeof v.b64 === "string" &&
        Object.keys(v).length === 1
        ? new Uint8Array(Buffer.from(v.b64, "base64"))
        : v,
  );
}

function encodeWill(w: Will): string {
  return encodeProps({ ...w } as unknown as Properties)!;
}

function decodeWill(s: string): Will {
  const w = decodeProps(s, "will") as unknown as Will;
  if (
    typeof w.topic !== "string" || !(w.payload instanceof Uint8Array) ||
    ![0, 1, 2].includes(w.qos) ||
    (w.properties !== undefined && (typeof w.properties !== "object" || w.properties === null))
  ) {
    throw new Error("will has no topic, payload or qos 0-2");
  }
  return w;
}

/** Subscription identifiers stored as a JSON array of positive integers. */
function decodeSubIds(s: string): number[] {
  let ids: unknown;
  try {
    ids = JSON.parse(s);
  } catch (e) {
    throw new Error(`sub_ids: ${errText(e)}`);
  }
  if (!Array.isArray(ids) || !ids.every((i) => Number.isInteger(i) && i > 0)) {
    throw new Error(`sub_ids is not a list of subscription identifiers: ${s.slice(0, 40)}`);
  }
  return ids;
}
