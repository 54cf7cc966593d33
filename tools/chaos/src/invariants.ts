/**
 * The failure semantics as checks over one snapshot of a quiet cluster (no migration open), with no
 * side effects (docs/design.md, "Failure semantics"): each VM runs in exactly one place, at the epoch
 * the controller holds, or is FAILED; nothing is paused that nobody will resume; no copy is left
 * behind; the bookkeeping (allocations, slots) adds up.
 */
import { agent, cluster } from '@vmm/proto';

const S = cluster.VmState;

export interface Snapshot {
  vms: readonly cluster.Vm[];
  nodes: readonly cluster.Node[];
  /** What each node's agent runs right now (its ListVms), by node id. */
  agentVms: ReadonlyMap<string, readonly agent.VmStatus[]>;
  /** Ids of the migrations that are not final (Redis `migs-open`; the checks run only when there are none). */
  openMigrations: readonly string[];
  /** Migrations holding an in-flight slot (Redis `mig-active`). */
  slotsHeld: number;
}

export interface Violation {
  kind: string;
  vmId?: string;
  nodeId?: string;
  detail: string;
}

/** Every violation of the invariants in `s`; [] for a cluster in order. */
export function checkInvariants(s: Snapshot): Violation[] {
  const out: Violation[] = [];
  const byId = new Map(s.vms.map((v) => [v.vmId, v]));
  if (s.openMigrations.length > 0) out.push({ kind: 'not-quiet', detail: `migrations open: ${s.openMigrations.join(', ')}` });
  if (s.slotsHeld > 0 && s.openMigrations.length === 0) out.push({ kind: 'slot-leaked', detail: `${s.slotsHeld} slots held with no migration open` });

  // Each copy an agent runs belongs to a VM the controller places there, at its epoch.
  const holders = new Map<string, string[]>();
  for (const [nodeId, list] of s.agentVms) {
    for (const copy of list) {
      (holders.get(copy.vmId) ?? holders.set(copy.vmId, []).get(copy.vmId)!).push(nodeId);
      const vm = byId.get(copy.vmId);
      if (!vm) {
        out.push({ kind: 'stray-copy', vmId: copy.vmId, nodeId, detail: `a copy of a VM the controller does not have (epoch ${copy.fencingEpoch})` });
        continue;
      }
      if (vm.nodeId !== nodeId) {
        out.push({ kind: 'second-copy', vmId: copy.vmId, nodeId, detail: `also held here at epoch ${copy.fencingEpoch}; the controller places it on ${vm.nodeId} at ${vm.fencingEpoch}` });
        continue;
      }
      if (Number(copy.fencingEpoch) !== Number(vm.fencingEpoch)) {
        out.push({ kind: 'wrong-epoch', vmId: copy.vmId, nodeId, detail: `held at epoch ${copy.fencingEpoch}, the controller holds ${vm.fencingEpoch}` });
      }
      if (copy.state === S.VM_STATE_MIGRATING) {
        out.push({ kind: 'stuck-migrating-copy', vmId: copy.vmId, nodeId, detail: 'the agent still holds it as a migration source' });
      } else if (copy.state === S.VM_STATE_PAUSED && vm.state !== S.VM_STATE_PAUSED) {
        out.push({ kind: 'paused-orphan', vmId: copy.vmId, nodeId, detail: `paused on the agent, ${short(vm.state)} in the API` });
      } else if (copy.state === S.VM_STATE_RUNNING && vm.state !== S.VM_STATE_RUNNING) {
        out.push({ kind: 'state-mismatch', vmId: copy.vmId, nodeId, detail: `running on the agent, ${short(vm.state)} in the API` });
      }
    }
  }

  // Each VM the API says runs is held somewhere: exactly its node.
  for (const vm of s.vms) {
    const at = holders.get(vm.vmId) ?? [];
    if (vm.state === S.VM_STATE_MIGRATING) out.push({ kind: 'stuck-migrating', vmId: vm.vmId, detail: 'MIGRATING with no migration open' });
    if (vm.state === S.VM_STATE_PENDING) out.push({ kind: 'stuck-pending', vmId: vm.vmId, detail: 'PENDING in a quiet cluster' });
    if ((vm.state === S.VM_STATE_RUNNING || vm.state === S.VM_STATE_PAUSED) && !at.includes(vm.nodeId)) {
      out.push({ kind: 'lost', vmId: vm.vmId, nodeId: vm.nodeId, detail: `${short(vm.state)} in the API, but its node holds no copy` });
    }
  }

  // No incoming copy outlives its migration.
  for (const node of s.nodes) {
    for (const r of node.reportedVms ?? []) {
      if (r.migrationRole === cluster.MigrationRole.MIGRATION_ROLE_TARGET) {
        out.push({ kind: 'incoming-left', vmId: r.vmId, nodeId: node.nodeId, detail: `an incoming copy of ${r.migrationId} is still reported` });
      }
    }
  }

  // Allocations are the sum of the VMs placed on each node.
  for (const node of s.nodes) {
    const placed = s.vms.filter((v) => v.nodeId === node.nodeId);
    const vcpus = placed.reduce((n, v) => n + v.vcpus, 0);
    const memoryMib = placed.reduce((n, v) => n + Number(v.memoryMib), 0);
    if (vcpus !== node.vcpusAllocated || memoryMib !== Number(node.memoryMibAllocated) || placed.length !== node.vmCount) {
      out.push({
        kind: 'allocation',
        nodeId: node.nodeId,
        detail: `allocated ${node.vcpusAllocated} vCPU / ${node.memoryMibAllocated} MiB / ${node.vmCount} VMs; its VMs sum to ${vcpus} / ${memoryMib} / ${placed.length}`,
      });
    }
  }
  return out;
}

/** The outcome of one migration the chaos run drove, as its VM showed right after it settled. */
export interface MigrationOutcome {
  migration: cluster.Migration;
  /** The VM after the migration ended; undefined when it was deleted. */
  vm: cluster.Vm | undefined;
  /** The source's write counter when the migration started; the target's after it completed. */
  writesBefore: number;
  writesAfter: number | undefined;
  /** The VM was deleted on purpose during the migration (a racing DeleteVm). */
  deleted: boolean;
}

/** Checks what one finished migration left behind. */
export function checkOutcome(o: MigrationOutcome): Violation[] {
  const m = o.migration;
  const vmId = m.vmId;
  const out: Violation[] = [];
  const vm = o.vm;
  if (!vm) {
    if (!o.deleted) out.push({ kind: 'vm-vanished', vmId, detail: `${short(m.phase)} migration ${m.migrationId} left no VM` });
    return out;
  }
  if (m.phase === cluster.MigrationPhase.MIGRATION_PHASE_COMPLETED) {
    if (!m.sourceDigest || m.sourceDigest !== m.targetDigest) out.push({ kind: 'digest', vmId, detail: `COMPLETED with digests ${m.sourceDigest || '-'} / ${m.targetDigest || '-'}` });
    if (vm.state === S.VM_STATE_FAILED || vm.restartPolicy === cluster.RestartPolicy.RESTART_POLICY_ALWAYS) return out; // its target may have died since
    if (vm.nodeId !== m.targetNodeId) out.push({ kind: 'completed-elsewhere', vmId, detail: `COMPLETED to ${m.targetNodeId}, the VM is on ${vm.nodeId}` });
    if (o.writesAfter !== undefined && o.writesAfter < o.writesBefore) {
      out.push({ kind: 'workload-restarted', vmId, detail: `write counter ${o.writesAfter} on the target, ${o.writesBefore} on the source before` });
    }
    return out;
  }
  // FAILED or CANCELLED: the VM runs on its source, or is FAILED with its host, or was restarted per its policy.
  if (vm.state === S.VM_STATE_FAILED) return out;
  if (vm.restartPolicy === cluster.RestartPolicy.RESTART_POLICY_ALWAYS && vm.nodeId !== m.sourceNodeId) return out;
  if (vm.nodeId !== m.sourceNodeId) out.push({ kind: 'rollback-elsewhere', vmId, detail: `${short(m.phase)} (${m.errorReason}), but the VM is on ${vm.nodeId}, not its source ${m.sourceNodeId}` });
  return out;
}

function short(state: string): string {
  return String(state).replace(/^(VM_STATE|MIGRATION_PHASE)_/, '');
}
