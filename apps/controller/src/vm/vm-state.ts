/**
 * The VM state machine as the controller keeps it (who moves it, in brackets):
 *
 *   PENDING → RUNNING                       create succeeded on the agent [VmService]; a stale PENDING the
 *                                            agent runs after a controller crash [Registry]
 *   PENDING, RUNNING, PAUSED, STOPPED → FAILED   the agent no longer runs it [Registry reconcile]
 *   RUNNING ⇄ PAUSED ⇄ STOPPED, FAILED → RUNNING…  as the agent reports it [reports, Lua APPLY_REPORT]
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
