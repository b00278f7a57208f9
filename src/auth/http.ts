/**
 * The `http` link: asks an HTTP service who may connect and what they may do, as
 * mosquitto-go-auth's HTTP backend does: POST `getuser_uri` (username, password, clientid),
 * `superuser_uri` (username) and `aclcheck_uri` (username, clientid, topic, acc: 1 read, 2 write,
 * 3 readwrite, 4 subscribe), as JSON or form parameters; the answer read from the status, a JSON
 * `{"ok": …}` or a text "ok", and EMQX's `{"result": "allow|deny|ignore", "is_superuser": …}`.
 * Connections are pooled (keep-alive, at most `max_sockets`), each request has a time-out, and
 * answers are remembered for a while in a bounded cache. While the service cannot answer the
 * configured choice applies, and one line is logged per outage. Passwords never reach the log.
 */
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { createHmac, randomBytes } from "node:crypto";
import { Buffer } from "node:buffer";
import { setTimeout } from "node:timers";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../sys/log.ts";
import {
  ACCESS_READ,
  ACCESS_SUBSCRIBE,
  ACCESS_WRITE,
  type AccessRequest,
  type Authenticator,
  type Authorizer,
  type ChainLink,
  type LoginAnswer,
  type LoginRequest,
  type Verdict,
} from "./chain_types.ts";
import { readAuthFile } from "./auth_file.ts";

/** Largest answer body read, in bytes. */
const MAX_BODY = 64 * 1024;
/** Requests waiting for an answer at most; beyond this the failure choice applies at once. */
const MAX_PENDING = 10_000;

/** What the service said: a verdict (and for a login whether it is a superuser). */
interface Said {
  verdict: Verdict;
  superuser: boolean;
}

/** The service did not answer (refused, timed out, 5xx): the failure choice applies. */
class Unavailable extends Error {}

/** A bounded map of answers with an expiry, oldest dropped first. */
class AnswerCache {
  readonly #max: number;
  readonly #ttl: number;
  readonly #map = new Map<string, { said: Said; until: number }>();

  constructor(max: number, ttlMs: number) {
    this.#max = max;
    this.#ttl = ttlMs;
  }

  get(key: string, now: number): Said | undefined {
    const e = this.#map.get(key);
    if (e === undefined) return undefined;
    if (e.until <= now) {
      this.#map.delete(key);
      return undefined;
    }
    return e.said;
  }

  set(key: string, said: Said, now: number): void {
    if (this.#ttl <= 0 || this.#max <= 0) return;
    this.#map.delete(key);
    if (this.#map.size >= this.#max) this.#map.delete(this.#map.keys().next().value!);
    this.#map.set(key, { said, until: now + this.#ttl });
  }

  get size(): number {
    return this.#map.size;
  }
}

/** Authenticates and authorizes through an HTTP service (mosquitto-go-auth's HTTP backend). */
export class HttpLink implements Authenticator, Authorizer, ChainLink {
  readonly name = "http";
  /** Its answers are remembered by the link itself, with their TTL. */
  readonly cacheable = false;
  readonly #config: Config;
  readonly #log: Logger;
  readonly #base: string;
  #agent: HttpAgent | HttpsAgent;
  readonly #cache: AnswerCache;
  /** Requests under way by cache key: a second identical question waits for the first. */
  readonly #pending = new Map<string, Promise<Said>>();
  /** Keys the passwords in cache keys (never kept or logged in clear). */
  readonly #macKey = randomBytes(32);
  /** Whether the service is failing (so an outage is logged once). */
  #down = false;
  /** Requests sent (for tests and stats). */
  requests = 0;

  constructor(config: Config, log: Logger) {
    this.#config = config;
    this.#log = log;
    const c = config;
    const tls = c.auth_opt_http_with_tls;
    const host = c.auth_opt_http_host.includes(":")
      ? `[${c.auth_opt_http_host}]`
      : c.auth_opt_http_host;
    this.#base = `${tls ? "https" : "http"}://${host}:${c.auth_opt_http_port}`;
    this.#agent = this.#makeAgent("");
    this.#cache = new AnswerCache(c.auth_opt_http_cache_size, c.auth_opt_http_cache_seconds * 1000);
  }

  #makeAgent(ca: string): HttpAgent | HttpsAgent {
    const opts = { keepAlive: true, maxSockets: this.#config.auth_opt_http_max_sockets };
    return this.#config.auth_opt_http_with_tls
      ? new HttpsAgent({ ...opts, ...(ca ? { ca } : {}) })
      : new HttpAgent(opts);
  }

  /** Whether the link authorizes (an aclcheck_uri is set): otherwise the chain skips it. */
  get active(): boolean {
    return this.#config.auth_opt_http_aclcheck_uri !== "";
  }

  /** Reads auth_opt_http_cafile. */
  async load(): Promise<void> {
    const ca = this.#config.auth_opt_http_cafile;
    if (ca && this.#config.auth_opt_http_with_tls) {
      const pem = await readAuthFile(ca);
      this.#agent.destroy();
      this.#agent = this.#makeAgent(pem);
    }
  }

  /** Closes the pooled connections. */
  close(): void {
    this.#agent.destroy();
  }

  authenticate(req: LoginRequest): LoginAnswer | Promise<LoginAnswer> {
    const uri = this.#config.auth_opt_http_getuser_uri;
    if (uri === "" || req.username === undefined) {
      return { verdict: "next", reason: "no user name for the HTTP service" };
    }
    const username = req.username;
    const password = req.password ?? new Uint8Array();
    const key = `l\0${username}\0${req.clientId}\0${this.#mac(password)}`;
    const params = {
      username,
      password: new TextDecoder().decode(password),
      clientid: req.clientId,
    };
    return this.#ask(key, uri, params).then(async (said): Promise<LoginAnswer> => {
      if (said.verdict !== "allow") {
        return said.verdict === "deny"
          ? { verdict: "deny", reason: `the HTTP service refused user "${username}"` }
          : { verdict: "next", reason: `the HTTP service passed on user "${username}"` };
      }
      if (said.superuser || (await this.#superuser(username))) {
        return { verdict: "allow", superuser: true };
      }
      return { verdict: "allow" };
    });
  }

  /** Asks superuser_uri (when set) whether `username` may do anything. */
  async #superuser(username: string): Promise<boolean> {
    const uri = this.#config.auth_opt_http_superuser_uri;
    if (uri === "") return false;
    const said = await this.#ask(`s\0${username}`, uri, { username });
    return said.verdict === "allow";
  }

  authorize(req: AccessRequest): Verdict | Promise<Verdict> {
    const uri = this.#config.auth_opt_http_aclcheck_uri;
    const acc = req.access === ACCESS_READ
      ? 1
      : req.access === ACCESS_WRITE
      ? 2
      : req.access === ACCESS_SUBSCRIBE
      ? 4
      : 0;
    if (uri === "" || acc === 0) return "next";
    const p = req.principal;
    const key = `a\0${acc}\0${p.username ?? ""}\0${p.clientId}\0${req.topic}`;
    const known = this.#cache.get(key, Date.now());
    if (known !== undefined) return known.verdict;
    const params = { username: p.username ?? "", clientid: p.clientId, topic: req.topic, acc };
    return this.#ask(key, uri, params).then((said) => said.verdict);
  }

  /** The answer for `key`: remembered, under way, or asked now. */
  #ask(key: string, uri: string, params: Record<string, string | number>): Promise<Said> {
    const known = this.#cache.get(key, Date.now());
    if (known !== undefined) return Promise.resolve(known);
    const running = this.#pending.get(key);
    if (running !== undefined) return running;
    if (this.#pending.size >= MAX_PENDING) {
      return Promise.resolve(this.#failed(new Unavailable(`${MAX_PENDING} requests under way`)));
    }
    const p = this.#post(uri, params).then((said) => {
      this.#up();
      this.#cache.set(key, said, Date.now());
      return said;
    }, (e) => this.#failed(e)).finally(() => this.#pending.delete(key));
    this.#pending.set(key, p);
    return p;
  }

  /** The service answered: an outage logged before is over. */
  #up(): void {
    if (this.#down) this.#log.notice(`HTTP auth service ${this.#base} answers again.`);
    this.#down = false;
  }

  /** The configured choice while the service cannot answer; the outage's first line. */
  #failed(e: unknown): Said {
    const choice = this.#config.auth_opt_http_on_error;
    if (!this.#down) {
      this.#down = true;
      this.#log.error(
        `HTTP auth service ${this.#base} cannot answer (${
          (e as Error).message
        }); "${choice}" applies until it does.`,
      );
    }
    return { verdict: choice, superuser: false };
  }

  #mac(password: Uint8Array): string {
    return createHmac("sha256", this.#macKey).update(password).digest("base64");
  }

  /** One POST; resolves with what it said, rejects with `Unavailable` when it could not say. */
  #post(uri: string, params: Record<string, string | number>): Promise<Said> {
    const c = this.#config;
    const json = c.auth_opt_http_params_mode === "json";
    const body = Buffer.from(
      json ? JSON.stringify(params) : new URLSearchParams(
        Object.entries(params).map(([k, v]) => [k, String(v)]),
      ).toString(),
    );
    const send = c.auth_opt_http_with_tls ? httpsRequest : httpRequest;
    this.requests++;
    return new Promise<Said>((resolve, reject) => {
      let done = false;
      const finish = (f: () => void) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        f();
      };
      const req = send(this.#base + uri, {
        method: "POST",
        agent: this.#agent,
        headers: {
          "content-type": json ? "application/json" : "application/x-www-form-urlencoded",
          "content-length": String(body.length),
        },
      }, (res) => {
        const chunks: Uint8Array[] = [];
        let size = 0;
        res.on("data", (d: Uint8Array) => {
          size += d.length;
          if (size > MAX_BODY) {
            req.destroy();
            finish(() => reject(new Unavailable(`an answer over ${MAX_BODY} bytes`)));
            return;
          }
          chunks.push(d);
        });
        res.on("end", () =>
          finish(() => {
            const status = res.statusCode ?? 0;
            if (status >= 500) {
              reject(new Unavailable(`status ${status}`));
              return;
            }
            resolve(this.#read(status, Buffer.concat(chunks).toString("utf8")));
          }));
        res.on("error", (e) => finish(() => reject(new Unavailable(e.message))));
      });
      const timer = setTimeout(() => {
        req.destroy();
        finish(() => reject(new Unavailable(`no answer in ${c.auth_opt_http_timeout} s`)));
      }, c.auth_opt_http_timeout * 1000);
      req.on(
        "error",
        (e: Error & { code?: string }) =>
          finish(() => reject(new Unavailable(e.code ?? e.message))),
      );
      req.end(body);
    });
  }

  /** Reads an answer per auth_opt_http_response_mode; EMQX's JSON form in any mode. */
  #read(status: number, text: string): Said {
    const emqx = emqxAnswer(text);
    if (emqx !== null && status >= 200 && status < 300) return emqx;
    const deny: Said = { verdict: "deny", superuser: false };
    const allow: Said = { verdict: "allow", superuser: false };
    switch (this.#config.auth_opt_http_response_mode) {
      case "status":
        return status === 200 ? allow : deny;
      case "text":
        return status === 200 && text.trim() === "ok" ? allow : deny;
      default: {
        if (status !== 200) return deny;
        try {
          return (JSON.parse(text) as { ok?: unknown }).ok === true ? allow : deny;
        } catch {
          return deny;
        }
      }
    }
  }
}

/** EMQX's `{"result": "allow|deny|ignore", "is_superuser": …}`, or null when it is not that. */
function emqxAnswer(text: string): Said | null {
  if (!text.includes('"result"')) return null;
  let o: { result?: unknown; is_superuser?: unknown };
  try {
    o = JSON.parse(text);
  } catch {
    return null;
  }
  const superuser = o.is_superuser === true || o.is_superuser === "true";
  if (o.result === "allow") return { verdict: "allow", superuser };
  if (o.result === "deny") return { verdict: "deny", superuser: false };
  if (o.result === "ignore") return { verdict: "next", superuser: false };
  return null;
}
