/**
 * The broker's clock: the time its keep-alive checks, session expiry and will delays read, and the
 * timers they set. The system clock in production; tests give a clock they move forward
 * themselves, so that nothing waits for real time to pass.
 */

/** A timer handle, as the clock that made it knows it. */
export type ClockTimer = unknown;

/** Time and timers. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Runs `fn` once after `ms` milliseconds. */
  setTimeout(fn: () => void, ms: number): ClockTimer;
  clearTimeout(t: ClockTimer): void;
  /** Runs `fn` every `ms` milliseconds. */
  setInterval(fn: () => void, ms: number): ClockTimer;
  clearInterval(t: ClockTimer): void;
}

/** The system's clock and the runtime's timers. */
export const systemClock: Clock = {
  now: Date.now,
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (t) => clearTimeout(t as ReturnType<typeof setTimeout>),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (t) => clearInterval(t as ReturnType<typeof setInterval>),
};
