/**
 * A JSON Web Key Set from a file or an https URL. The URL is fetched at start and every
 * `refreshSeconds`; when a fetch fails the last good set stays in force and one line is logged
 * (one more when fetching works again).
 */
import { Agent, request } from "node:https";
import { setInterval } from "node:timers";
import { createLocalJWKSet, type JSONWebKeySet } from "jose";
import type { Logger } from "../sys/log.ts";
import { AuthFileError, readAuthFile } from "./auth_file.ts";

/** A key resolver as jose's `jwtVerify` takes it. */
export type KeyResolver = ReturnType<typeof createLocalJWKSet>;

/** Largest JWKS document accepted, in bytes. */
const MAX_JWKS_BYTES = 1024 * 1024;
/** Time allowed for one fetch. */
const FETCH_TIMEOUT_MS = 10_000;

/** Checks and wraps a parsed JWKS; throws with `what` naming where it came from. */
export function keySet(doc: unknown, what: string): KeyResolver {
  const keys = (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0) {
    throw new Error(`${what}: not a JWKS (expected {"keys": [...]} with at least one key)`);
  }
  return createLocalJWKSet(doc as JSONWebKeySet);
}

/** A JWKS read from a file (again on reload). */
export async function jwksFromFile(path: string): Promise<KeyResolver> {
  const text = await readAuthFile(path);
  try {
    return keySet(JSON.parse(text), path);
  } catch (e) {
    throw new AuthFileError(path, [{ line: 0, message: (e as Error).message }]);
  }
}

/** A JWKS fetched from an https URL, refreshed on an interval. */
export class RemoteJwks {
  readonly #url: string;
  readonly #log: Logger;
  readonly #agent: Agent;
  readonly #refreshMs: number;
  #keys: KeyResolver | null = null;
  #timer: ReturnType<typeof setInterval> | null = null;
  /** Whether the last fetch failed (so an outage is logged once). */
  #failing = false;

  /** `ca`: PEM certificates the server must chain to ("" = the system's). */
  constructor(url: string, refreshSeconds: number, ca: string, log: Logger) {
    this.#url = url;
    this.#log = log;
    this.#refreshMs = refreshSeconds * 1000;
    this.#agent = new Agent({ keepAlive: false, ...(ca ? { ca } : {}) });
  }

  /** The last good set, or null before the first successful fetch. */
  get keys(): KeyResolver | null {
    return this.#keys;
  }

  /** Fetches once (a failure is logged, not thrown), then starts the refresh timer. */
  async start(): Promise<void> {
    await this.refresh();
    if (this.#timer === null) {
      this.#timer = setInterval(() => void this.refresh(), this.#refreshMs);
      (this.#timer as { unref?: () => void }).unref?.();
    }
  }

  /** Fetches the set now; keeps the old one when that fails. Resolves to whether it worked. */
  async refresh(): Promise<boolean> {
    try {
      const doc = JSON.parse(await this.#fetch());
      this.#keys = keySet(doc, this.#url);
      if (this.#failing) this.#log.notice(`JWKS ${this.#url}: fetched again.`);
      this.#failing = false;
      return true;
    } catch (e) {
      if (!this.#failing) {
        this.#log.error(
          `JWKS ${this.#url}: ${(e as Error).message}; ${
            this.#keys ? "the last good key set stays in force" : "no key set yet"
          }.`,
        );
      }
      this.#failing = true;
      return false;
    }
  }

  #fetch(): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = request(this.#url, { agent: this.#agent, timeout: FETCH_TIMEOUT_MS }, (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`HTTP status ${res.statusCode}`));
          return;
        }
        const chunks: Uint8Array[] = [];
        let size = 0;
        res.on("data", (c: Uint8Array) => {
          size += c.length;
          if (size > MAX_JWKS_BYTES) {
            req.destroy(new Error(`larger than ${MAX_JWKS_BYTES} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on("end", () => resolve(new TextDecoder().decode(concat(chunks, size))));
        res.on("error", reject);
      });
      req.on("timeout", () => req.destroy(new Error("timed out")));
      req.on("error", reject);
      req.end();
    });
  }

  /** Stops refreshing. */
  close(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    this.#agent.destroy();
  }
}

function concat(chunks: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
