/** Test helper: a clock that moves only when the test moves it (see src/broker/clock.ts). */
import type { Clock, ClockTimer } from "../../src/broker/clock.ts";

interface Timer {
  at: number;
  fn: () => void;
  /** Repeat period for an interval; 0 for a timeout. */
  every: number;
}

/** A `Clock` whose time stands still until `advance`, which runs the timers that fall due. */
export class ManualClock implements Clock {
  #now: number;
  readonly #timers = new Map<number, Timer>();
  #next = 1;

  constructor(start = Date.now()) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): ClockTimer {
    const id = this.#next++;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn, every: 0 });
    return id;
  }

  clearTimeout(t: ClockTimer): void {
    this.#timers.delete(t as number);
  }

  setInterval(fn: () => void, ms: number): ClockTimer {
    const id = this.#next++;
    const every = Math.max(1, ms);
    this.#timers.set(id, { at: this.#now + every, fn, every });
    return id;
  }

  clearInterval(t: ClockTimer): void {
    this.#timers.delete(t as number);
  }

  /** Timers waiting. */
  get pending(): number {
    return this.#timers.size;
  }

  /**
   * Move time forward by `ms`, running every timer that falls due on the way, earliest first,
   * with the clock reading its time. Resolves after each timer's microtasks have run.
   */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (;;) {
      let id = -1;
      let first: Timer | undefined;
      for (const [k, t] of this.#timers) {
        if (t.at <= end && (first === undefined || t.at < first.at)) [id, first] = [k, t];
      }
      if (!first) break;
      this.#now = Math.max(this.#now, first.at);
      if (first.every) first.at += first.every;
      else this.#timers.delete(id);
      first.fn();
      await settle();
    }
    this.#now = end;
    await settle();
  }
}

/** Lets pending promise callbacks and microtasks run (no timer, no real time). */
function settle(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}
