/**
 * The life of one process of the cluster (Redis, the controller, an agent) as its launcher sees it.
 *
 * - `stopped`:  not running, and nobody wants it to (before the first start, after stop()).
 * - `running`:  a child process is alive (it may be SIGSTOPped: that is still running).
 * - `stopping`: stop() sent SIGTERM (SIGKILL after a grace period) and waits for the exit.
 * - `backoff`:  it died on its own and is supervised: a restart is scheduled.
 * - `dead`:     it died on its own and is not supervised: it stays down until start().
 *
 * stopped → running (start) → stopping (stop) → stopped
 * running → backoff (died, supervised) → running (restarted)
 * running → dead (died, not supervised) → running (start)
 * backoff, dead → stopped (stop); backoff → dead (supervision switched off while it waited)
 */
export type ProcessState = 'stopped' | 'running' | 'stopping' | 'backoff' | 'dead';

const ALLOWED: Record<ProcessState, readonly ProcessState[]> = {
  stopped: ['running'],
  running: ['stopping', 'backoff', 'dead'],
  stopping: ['stopped'],
  backoff: ['running', 'stopped', 'dead'],
  dead: ['running', 'stopped'],
};

/** Thrown for a transition the table above does not allow: a bug in the launcher, never bad input. */
export class ProcessStateError extends Error {
  readonly code = 'PROCESS_STATE';
  constructor(
    readonly processName: string,
    readonly from: ProcessState,
    readonly to: ProcessState,
  ) {
    super(`${processName}: no transition ${from} -> ${to}`);
    this.name = 'ProcessStateError';
  }
}

export function canTransition(from: ProcessState, to: ProcessState): boolean {
  return ALLOWED[from].includes(to);
}

/** The next state, or a ProcessStateError when `from → to` is not allowed. */
export function transition(processName: string, from: ProcessState, to: ProcessState): ProcessState {
  if (!canTransition(from, to)) throw new ProcessStateError(processName, from, to);
  return to;
}
