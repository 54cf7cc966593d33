/**
 * Reconciles one agent report against the controller's records, in both directions, with no side
 * effects: what the agent must do with each copy it reported (the ReportAck's directives), which
 * migrated-in VMs the report shows resumed (their commit can no longer be reverted), and which
 * tombstones are done. VMs the controller expects on the node but the report leaves out are the
 * report script's business (missing since, then FAILED or restarted after a grace).
 *
 * Every answer is one the records cannot take back: epochs only grow and final phases stay final, so
 * a directive computed from a read that is a moment old is still right when the agent applies it.
 * The one exception, a target's copy of a committed migration, is confirmed only after the
 * atomic markTargetResumed script has made the commit irreversible (`resumed`).
 */
import { isCommitted, isFinal } from '@vmm/migration/phase';
import { agent, cluster } from '@vmm/proto';
import type { VmRecord } from '../common/model.js';
import type { MigrationRecord } from '../migration/migration-record.js';

const A = agent.DirectiveAction;
const E = agent.MigrationEndState;

export interface ReportedCopy {
  vmId: string;
  fencingEpoch: number;
  /** The migration this copy is the source of, '' for a plain VM. */
  migrationId: string;
}

export interface ReconcileInput {
  nodeId: string;
  vms: readonly ReportedCopy[];
  ends: readonly agent.MigrationEnd[];
  records: ReadonlyMap<string, VmRecord>;
  migrations: ReadonlyMap<string, MigrationRecord>;
  /** VM id → epoch, for VMs deleted while the node could not be told. */
  tombstones: ReadonlyMap<string, number>;
}

export interface ReconcileResult {
  directives: agent.Directive[];
  /** Target copies running at a committed epoch whose migration is not yet marked resumed. */
  resumed: { migration: MigrationRecord; vmId: string }[];
  /** Tombstones whose VM the node no longer reports. */
  clearedTombstones: string[];
  /** Copies the controller cannot place (unknown, or claimed at an epoch it does not hold), for the log. */
  conflicts: { vmId: string; detail: string }[];
}

const directive = (vmId: string, action: agent.DirectiveAction, fencingEpoch: number, reason: string, migrationId = ''): agent.Directive => ({
  vmId,
  migrationId,
  action,
  fencingEpoch,
  reason,
});

export function reconcileReport(input: ReconcileInput): ReconcileResult {
  const out: ReconcileResult = { directives: [], resumed: [], clearedTombstones: [], conflicts: [] };
  const reportedIds = new Set<string>();
  for (const copy of input.vms) {
    reportedIds.add(copy.vmId);
    // A migration's source copy is decided by its migration end, below.
    if (!copy.migrationId) reconcileVm(input, copy, out);
  }
  for (const end of input.ends) reconcileEnd(input, end, out);
  for (const vmId of input.tombstones.keys()) if (!reportedIds.has(vmId)) out.clearedTombstones.push(vmId);
  return out;
}

function reconcileVm(input: ReconcileInput, copy: ReportedCopy, out: ReconcileResult): void {
  const { nodeId } = input;
  const r = input.records.get(copy.vmId);
  const tombstone = input.tombstones.get(copy.vmId);
  if (tombstone !== undefined && (!r || r.nodeId !== nodeId)) {
    out.directives.push(directive(copy.vmId, A.DIRECTIVE_ACTION_DESTROY, Math.max(tombstone, copy.fencingEpoch) + 1, 'the vm was deleted'));
    return;
  }
  if (!r) {
    out.conflicts.push({ vmId: copy.vmId, detail: 'a vm the controller does not know' });
    out.directives.push(directive(copy.vmId, A.DIRECTIVE_ACTION_HOLD, copy.fencingEpoch, 'unknown to the controller'));
    return;
  }
  if (copy.fencingEpoch < r.fencingEpoch) {
    out.directives.push(directive(copy.vmId, A.DIRECTIVE_ACTION_DESTROY, r.fencingEpoch, `the vm runs at epoch ${r.fencingEpoch} on ${r.nodeId}`));
    return;
  }
  if (r.nodeId !== nodeId || copy.fencingEpoch > r.fencingEpoch) {
    out.conflicts.push({ vmId: copy.vmId, detail: `reported at epoch ${copy.fencingEpoch}, the controller holds ${r.fencingEpoch} on ${r.nodeId}` });
    out.directives.push(directive(copy.vmId, A.DIRECTIVE_ACTION_HOLD, copy.fencingEpoch, 'the controller holds another copy'));
    return;
  }
  // Placed here at this epoch. A migrated-in copy confirms its commit only once that is irreversible.
  const m = r.migrationId ? input.migrations.get(r.migrationId) : undefined;
  if (m && m.phase === 'COMMITTING' && m.targetNodeId === nodeId && m.fencingEpoch === copy.fencingEpoch && m.targetResumedAtMs === 0) {
    out.resumed.push({ migration: m, vmId: copy.vmId });
  }
}

function reconcileEnd(input: ReconcileInput, end: agent.MigrationEnd, out: ReconcileResult): void {
  const m = input.migrations.get(end.migrationId);
  if (end.role === cluster.MigrationRole.MIGRATION_ROLE_SOURCE) {
    if (end.state !== E.MIGRATION_END_STATE_READY) return;
    const d = decideForSource(input.nodeId, end, m, input.records.get(end.vmId));
    if (d) out.directives.push(d);
    return;
  }
  if (end.state !== E.MIGRATION_END_STATE_RECEIVING && end.state !== E.MIGRATION_END_STATE_READY) return;
  if (!m || isFinal(m.phase) || m.targetNodeId !== input.nodeId) {
    out.directives.push(directive(end.vmId, A.DIRECTIVE_ACTION_DISCARD_INCOMING, 0, 'the migration is over', end.migrationId));
  }
}

/**
 * The answer to a paused, verified source copy: resume it when the VM stays on its node (rolled back,
 * or reverted: at the VM's epoch), release it when the VM runs elsewhere, or nothing while the
 * controller has not decided (before the commit, or committed but the target not seen running yet:
 * the source's copy may still be needed).
 */
export function decideForSource(
  nodeId: string,
  end: Pick<agent.MigrationEnd, 'vmId' | 'migrationId' | 'fencingEpoch'>,
  m: MigrationRecord | undefined,
  vm: VmRecord | undefined,
): agent.Directive | undefined {
  const resume = (epoch: number, why: string) => directive(end.vmId, A.DIRECTIVE_ACTION_RESUME_SOURCE, epoch, why, end.migrationId);
  const release = (epoch: number, why: string) => directive(end.vmId, A.DIRECTIVE_ACTION_RELEASE_SOURCE, epoch, why, end.migrationId);
  if (m && !isFinal(m.phase)) {
    if (isCommitted(m.phase) && m.targetResumedAtMs > 0) return release(m.fencingEpoch, 'the target runs the vm');
    return undefined;
  }
  if (m?.phase === 'COMPLETED') return release(m.fencingEpoch, 'the migration completed');
  if (!vm) return release(Number(end.fencingEpoch) + 1, 'the vm was deleted');
  if (vm.nodeId === nodeId && vm.state !== cluster.VmState.VM_STATE_MIGRATING) return resume(vm.fencingEpoch, 'the migration did not move the vm');
  if (vm.nodeId !== nodeId) return release(vm.fencingEpoch, `the vm runs on ${vm.nodeId}`);
  return undefined;
}
