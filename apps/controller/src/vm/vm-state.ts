/**
 * The VM state machine as the controller keeps it (who moves it, in brackets):
 *
 *   PENDING → RUNNING                       create succeeded on the agent [VmService]; a stale PENDING the
 *                                            agent runs after a controller crash [Registry]
 *   PENDING, RUNNING, PAUSED, STOPPED → FAILED   the agent no longer runs it [Registry reconcile]
 *   RUNNING ⇄ PAUSED ⇄ STOPPED, FAILED → RUNNING…  as the agent reports it [reports, Lua APPLY_REPORT]
 *   RUNNING → PAUSED → RUNNING, RUNNING/PAUSED → STOPPED → RUNNING   lifecycle calls [VmService,
 *                                            LIFECYCLE below]
 *   RUNNING → MIGRATING                     a migration was created [Lua CREATE_MIGRATION]
 *   MIGRATING → RUNNING                     rolled back on the source, or resumed on the target [Lua]
 *   MIGRATING → FAILED                      committed, but the target did not resume it [orchestrator]
 *
 * While PENDING or MIGRATING the controller owns the state: reports do not change it.
 */
import { cluster } from '@vmm/proto';

const S = cluster.VmState;
type State = cluster.VmState;

const ALLOWED: Readonly<Partial<Record<State, readonly State[]>>> = {
  [S.VM_STATE_PENDING]: [S.VM_STATE_RUNNING, S.VM_STATE_FAILED],
  [S.VM_STATE_RUNNING]: [S.VM_STATE_PAUSED, S.VM_STATE_STOPPED, S.VM_STATE_FAILED, S.VM_STATE_MIGRATING],
  [S.VM_STATE_PAUSED]: [S.VM_STATE_RUNNING, S.VM_STATE_STOPPED, S.VM_STATE_FAILED],
  [S.VM_STATE_STOPPED]: [S.VM_STATE_RUNNING, S.VM_STATE_PAUSED, S.VM_STATE_FAILED],
  [S.VM_STATE_FAILED]: [S.VM_STATE_RUNNING, S.VM_STATE_PAUSED, S.VM_STATE_STOPPED],
  [S.VM_STATE_MIGRATING]: [S.VM_STATE_RUNNING, S.VM_STATE_FAILED],
};

/** States the agent's reports may set (the Lua APPLY_REPORT script holds the same list). */
export const REPORTED_STATES: ReadonlySet<State> = new Set([S.VM_STATE_RUNNING, S.VM_STATE_PAUSED, S.VM_STATE_STOPPED, S.VM_STATE_FAILED]);

/** States the controller owns while an operation runs: reports and reconcile leave them alone. */
export function isControllerOwned(state: State): boolean {
  return state === S.VM_STATE_PENDING || state === S.VM_STATE_MIGRATING;
}

export function canVmTransition(from: State, to: State): boolean {
  return from === to || (ALLOWED[from] ?? []).includes(to);
}

/** The compare-and-set list for moving to `to`: every state it may be reached from (itself included). */
export function vmStatesLeadingTo(to: State): State[] {
  return (Object.keys(ALLOWED) as State[]).filter((from) => canVmTransition(from, to));
}

/** A lifecycle call of the API, by the agent's power action it becomes. */
export type LifecycleAction = 'pause' | 'resume' | 'stop' | 'start';

/**
 * What each lifecycle call may start from and leads to. A pause of a PAUSED VM and a stop of a STOPPED
 * one are answered as they are (a retried call succeeds: nothing is left to do); RUNNING is not
 * `already` for resume or start, since docs/api.md refuses a start of a running VM (and so, alike, a
 * resume). Any other state, MIGRATING and PENDING among them, is refused.
 */
export const LIFECYCLE: Readonly<Record<LifecycleAction, { from: readonly State[]; to: State; already: readonly State[] }>> = {
  pause: { from: [S.VM_STATE_RUNNING], to: S.VM_STATE_PAUSED, already: [S.VM_STATE_PAUSED] },
  resume: { from: [S.VM_STATE_PAUSED], to: S.VM_STATE_RUNNING, already: [] },
  stop: { from: [S.VM_STATE_RUNNING, S.VM_STATE_PAUSED], to: S.VM_STATE_STOPPED, already: [S.VM_STATE_STOPPED] },
  start: { from: [S.VM_STATE_STOPPED], to: S.VM_STATE_RUNNING, already: [] },
};

/** 'start' if `from` allows the call, 'done' if nothing is left to do, else 'refused'. */
export function lifecycleStep(action: LifecycleAction, from: State): 'start' | 'done' | 'refused' {
  const step = LIFECYCLE[action];
  if (step.already.includes(from)) return 'done';
  return step.from.includes(from) && canVmTransition(from, step.to) ? 'start' : 'refused';
}
