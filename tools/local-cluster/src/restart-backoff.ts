/**
 * When a supervised process that died is started again, as a service manager does it: at once
 * (after a short grace) the first time, then doubling for a process that keeps dying, never more than
 * `maxMs` apart, and never giving up. A process that stayed up `stableAfterMs` starts the count over.
 */
export interface RestartBackoff {
  /** Delay before the first restart; also the grace in which a Ctrl-C that reached the whole process
   * group is seen by the launcher before it takes the children's exits for deaths. */
  initialMs: number;
  /** Cap of the delay between two tries. */
  maxMs: number;
  /** A process that ran this long before it died counts as having started well. */
  stableAfterMs: number;
}

export const DEFAULT_RESTART_BACKOFF: RestartBackoff = { initialMs: 100, maxMs: 2000, stableAfterMs: 5000 };

/** Delay before the restart that follows `failuresInARow` deaths (1 for the first death). */
export function restartDelayMs(failuresInARow: number, backoff: RestartBackoff = DEFAULT_RESTART_BACKOFF): number {
  const exponent = Math.max(0, Math.min(failuresInARow - 1, 30));
  return Math.min(backoff.maxMs, backoff.initialMs * 2 ** exponent);
}

/** How many deaths in a row this one makes: a process that ran `stableAfterMs` starts the count over. */
export function failuresInARow(previous: number, ranForMs: number, backoff: RestartBackoff = DEFAULT_RESTART_BACKOFF): number {
  return ranForMs >= backoff.stableAfterMs ? 1 : previous + 1;
}
