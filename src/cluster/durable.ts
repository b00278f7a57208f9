/**
 * Durable writes in flight, in the order they were issued, and callbacks waiting for all writes
 * issued before them: the cluster's counterpart of the store's "after commit". Writes complete
 * out of order (many JetStream publishes are pipelined); a callback runs once every earlier
 * write has completed.
 */

/** Tracks writes and runs `after` callbacks in order. */
export class DurableWrites {
  /** Writes issued so far; write n has index n (1-based). */
  #issued = 0;
  /** Every write with index <= low has completed. */
  #low = 0;
  /** Completed writes above `low`. */
  readonly #done = new Set<number>();
  /** Callbacks waiting for all writes up to `upTo`, in issue order. */
  #waiters: { upTo: number; cb: (ok: boolean) => void }[] = [];
  #stopped = false;

  /** Writes not completed yet. */
  get pending(): number {
    return this.#issued - this.#low - this.#done.size;
  }

  /** Records one write; `p` must settle only when the write is durable (retry inside it). */
  track(p: Promise<unknown>): void {
    const n = ++this.#issued;
    const settle = () => this.#complete(n);
    p.then(settle, settle);
  }

  /** Runs `cb(true)` once every write issued so far has completed; false if none is pending. */
  after(cb: (ok: boolean) => void): boolean {
    if (this.#low === this.#issued) return false;
    if (this.#stopped) {
      cb(false);
      return true;
    }
    this.#waiters.push({ upTo: this.#issued, cb });
    return true;
  }

  /** Fails every waiting callback (shutdown). */
  stop(): void {
    this.#stopped = true;
    const w = this.#waiters;
    this.#waiters = [];
    for (const x of w) x.cb(false);
  }

  #complete(n: number): void {
    if (n === this.#low + 1) {
      this.#low = n;
      while (this.#done.delete(this.#low + 1)) this.#low++;
    } else {
      this.#done.add(n);
    }
    let i = 0;
    const w = this.#waiters;
    while (i < w.length && w[i].upTo <= this.#low) i++;
    if (i === 0) return;
    const ready = w.splice(0, i);
    for (const x of ready) {
      try {
        x.cb(true);
      } catch { /* a callback's failure is its own */ }
    }
  }
}
