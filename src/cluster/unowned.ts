/**
 * Client ids admitted while the session registry could not be reached. A node that has lost
 * NATS (or whose registry does not answer within `REACH_MS`) still takes connections: their
 * sessions start here, and who owns each client id is written once NATS is back
 * (`KvSessions`' settle, compare-and-set), retried each second until it is written.
 */
import type { ClusterNode } from "./node.ts";

/** How long a CONNECT waits for the session registry before it is admitted here alone. */
export const REACH_MS = 1500;
/** How often unwritten owners are tried again while NATS is up. */
const RETRY_MS = 1000;

/** The registry did not answer: the CONNECT goes on without it. */
export class RegistryUnreachable extends Error {
  constructor(why: string) {
    super(`the session registry cannot be reached (${why})`);
    this.name = "RegistryUnreachable";
  }
}

/**
 * `p`, or a `RegistryUnreachable` rejection at once when NATS is known to be down, or after
 * `ms` when it has not settled by then (it is left to settle unobserved).
 */
export function withinReach<T>(node: ClusterNode, p: Promise<T>, ms = REACH_MS): Promise<T> {
  if (!node.natsUp) {
    p.catch(() => {});
    return Promise.reject(new RegistryUnreachable("NATS is disconnected"));
  }
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new RegistryUnreachable(`no answer in ${ms} ms`)), ms);
    p.then(resolve, reject).finally(() => clearTimeout(timer));
  });
}

/** The client ids admitted without the registry, with when each was admitted. */
export class Unowned {
  readonly #node: ClusterNode;
  readonly #settle: (id: string, since: number) => Promise<void>;
  readonly #since = new Map<string, number>();
  #timer: ReturnType<typeof setTimeout> | null = null;
  #running = false;
  #stopped = false;

  /** `settle` writes this node as the owner of `id` (or lets it go), or throws to try again. */
  constructor(node: ClusterNode, settle: (id: string, since: number) => Promise<void>) {
    this.#node = node;
    this.#settle = settle;
    node.onNatsBack(() => this.#soon(0));
  }

  /** Whether `id` waits for its owner entry. */
  has(id: string): boolean {
    return this.#since.has(id);
  }

  /** When `id` was admitted without the registry, or undefined. */
  since(id: string): number | undefined {
    return this.#since.get(id);
  }

  /** `id` was admitted here without the registry, now. */
  add(id: string): void {
    if (this.#since.size === 0) {
      this.#node.log.warning(
        "Cluster: the session registry cannot be reached; clients are admitted on this node alone, and their owners written once NATS is back.",
      );
    }
    if (!this.#since.has(id)) this.#since.set(id, Date.now());
    this.#soon(RETRY_MS);
  }

  /** `id` still waits (its owner entry is written, but not yet what is kept of its session). */
  retry(id: string, since: number): void {
    this.#since.set(id, since);
    this.#soon(RETRY_MS);
  }

  /** `id`'s owner entry is written (or it left this node). */
  delete(id: string): void {
    this.#since.delete(id);
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #soon(ms: number): void {
    if (this.#stopped || this.#running || this.#since.size === 0) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#run();
    }, ms);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  async #run(): Promise<void> {
    if (this.#node.natsUp) {
      this.#running = true;
      let failed = 0;
      let last = "";
      try {
        for (const [id, since] of [...this.#since]) {
          if (this.#stopped) return;
          try {
            await this.#settle(id, since);
            if (this.#since.get(id) === since) this.#since.delete(id);
          } catch (e) {
            failed++;
            last = (e as Error).message;
            if (e instanceof RegistryUnreachable) break; // Not yet: the next round.
          }
        }
      } finally {
        this.#running = false;
      }
      if (failed && this.#node.log.on("debug")) {
        this.#node.log.debug(`Cluster: ${failed} owners not written yet (${last}).`);
      }
      if (this.#since.size === 0) {
        this.#node.log.notice(
          "Cluster: the owners of the clients admitted without NATS are written.",
        );
      }
    }
    this.#soon(RETRY_MS);
  }
}
