/** Reconnect schedule towards the controller: exponential, capped, with jitter. */
export interface BackoffOptions {
  /** Delay ceiling of the first retry, ms. */
  baseMs: number;
  /** No delay exceeds this, ms. */
  capMs: number;
  /** Uniform in [0, 1); injectable for tests. */
  random?: () => number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 200, capMs: 5_000 };

/**
 * Delay before retry number `attempt` (0 = first retry), in ms: "equal jitter" over
 * min(cap, base·2^attempt), i.e. uniform in [ceiling/2, ceiling). Half the ceiling is kept so that
 * a fleet of agents restarting together spreads out, yet none retries in a tight loop.
 */
export function backoffDelayMs(attempt: number, options: BackoffOptions = DEFAULT_BACKOFF): number {
  const random = options.random ?? Math.random;
  const ceilingMs = Math.min(options.capMs, options.baseMs * 2 ** Math.min(Math.max(attempt, 0), 30));
  return Math.round(ceilingMs / 2 + random() * (ceilingMs / 2));
}
