/**
 * Timers for session expiry and will delays, which MQTT v5 allows up to 2^32-1 seconds (136
 * years). setTimeout holds at most 2^31-1 ms (24.8 days) and runs a longer delay at once, so a
 * client asking for a long Session Expiry Interval would lose its session on disconnect.
 */
import { type Clock, type ClockTimer, systemClock } from "./clock.ts";

/** setTimeout's longest delay in ms; a longer one fires immediately in every runtime. */
export const MAX_TIMEOUT_MS = 0x7fffffff;

/** A timer handle of the clock that set it. */
export type TimerHandle = ClockTimer;

/**
 * setTimeout for any delay: a delay over MAX_TIMEOUT_MS waits in steps, and each new step's
 * handle is passed to `rearm`, so whoever holds the handle can still cancel it with the clock's
 * clearTimeout. Returns the first handle.
 */
export function longTimeout(
  fn: () => void,
  ms: number,
  rearm: (next: TimerHandle) => void,
  clock: Clock = systemClock,
): TimerHandle {
  const at = clock.now() + ms;
  const step = (): TimerHandle => {
    const left = at - clock.now();
    const capped = left > MAX_TIMEOUT_MS;
    return clock.setTimeout(
      () => (capped ? rearm(step()) : fn()),
      Math.max(0, capped ? MAX_TIMEOUT_MS : left),
    );
  };
  return step();
}
