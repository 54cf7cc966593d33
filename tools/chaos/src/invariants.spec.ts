import { describe, expect, it } from 'vitest';
import { agent, cluster } from '@vmm/proto';
import { checkInvariants, checkOutcome, type Snapshot } from './invariants.js';

const S = cluster.VmState;
const vm = (over: Partial<cluster.Vm> = {}): cluster.Vm =>
  cluster.Vm.fromPartial({ vmId: 'v1', nodeId: 'n1', state: S.VM_STATE_RUNNING, vcpus: 1, memoryMib: 64, fencingEpoch: 2, ...over });
const copy = (over: Partial<agent.VmStatus> = {}): agent.VmStatus => agent.VmStatus.fromPartial({ vmId: 'v1', state: S.VM_STATE_RUNNING, fencingEpoch: 2, ...over });
const node = (nodeId: string, over: Partial<cluster.Node> = {}): cluster.Node =>
  cluster.Node.fromPartial({ nodeId, vcpusAllocated: 0, memoryMibAllocated: 0, vmCount: 0, ...over });

function snap(over: Partial<Snapshot> = {}): Snapshot {
  return {
    vms: [vm()],
    nodes: [node('n1', { vcpusAllocated: 1, memoryMibAllocated: 64, vmCount: 1 }), node('n2')],
    agentVms: new Map([['n1', [copy()]], ['n2', []]]),
    openMigrations: [],
    slotsHeld: 0,
    ...over,
  };
}
const kinds = (s: Snapshot) => checkInvariants(s).map((v) => v.kind);

describe('checkInvariants', () => {
  it('passes a cluster in order', () => expect(checkInvariants(snap())).toEqual([]));
  it.each([
    ['a second running copy', { agentVms: new Map([['n1', [copy()]], ['n2', [copy({ fencingEpoch: 1 })]]]) }, 'second-copy'],
    ['a copy at another epoch', { agentVms: new Map([['n1', [copy({ fencingEpoch: 1 })]], ['n2', []]]) }, 'wrong-epoch'],
    ['a paused orphan', { agentVms: new Map([['n1', [copy({ state: S.VM_STATE_PAUSED })]], ['n2', []]]) }, 'paused-orphan'],
    ['a source copy left MIGRATING', { agentVms: new Map([['n1', [copy({ state: S.VM_STATE_MIGRATING })]], ['n2', []]]) }, 'stuck-migrating-copy'],
    ['a VM no agent runs', { agentVms: new Map([['n1', []], ['n2', []]]) }, 'lost'],
    ['a copy of a deleted VM', { vms: [], nodes: [node('n1'), node('n2')] }, 'stray-copy'],
    ['a VM stuck MIGRATING', { vms: [vm({ state: S.VM_STATE_MIGRATING })] }, 'stuck-migrating'],
    ['an incoming copy left', { nodes: [node('n1', { vcpusAllocated: 1, memoryMibAllocated: 64, vmCount: 1 }), node('n2', { reportedVms: [{ vmId: 'v1', state: S.VM_STATE_MIGRATING, fencingEpoch: 0, migrationRole: cluster.MigrationRole.MIGRATION_ROLE_TARGET, migrationId: 'm' }] })] }, 'incoming-left'],
    ['allocations that do not add up', { nodes: [node('n1', { vcpusAllocated: 2, memoryMibAllocated: 64, vmCount: 1 }), node('n2')] }, 'allocation'],
    ['a slot with nothing open', { slotsHeld: 1 }, 'slot-leaked'],
    ['a migration still open', { openMigrations: ['m'] }, 'not-quiet'],
  ] as [string, Partial<Snapshot>, string][])('flags %s', (_case, over, kind) => {
    expect(kinds(snap(over))).toContain(kind);
  });
});

describe('checkOutcome', () => {
  const m = (phase: cluster.MigrationPhase, over: Partial<cluster.Migration> = {}) =>
    cluster.Migration.fromPartial({ migrationId: 'm', vmId: 'v1', sourceNodeId: 'n1', targetNodeId: 'n2', phase, sourceDigest: 'ab', targetDigest: 'ab', ...over });
  const P = cluster.MigrationPhase;
  it.each([
    ['COMPLETED on its target, counter continued', m(P.MIGRATION_PHASE_COMPLETED), vm({ nodeId: 'n2' }), 10, 12, []],
    ['COMPLETED with differing digests', m(P.MIGRATION_PHASE_COMPLETED, { targetDigest: 'cd' }), vm({ nodeId: 'n2' }), 10, 12, ['digest']],
    ['COMPLETED but the workload started over', m(P.MIGRATION_PHASE_COMPLETED), vm({ nodeId: 'n2' }), 10, 3, ['workload-restarted']],
    ['FAILED, back on its source', m(P.MIGRATION_PHASE_FAILED), vm(), 0, undefined, []],
    ['FAILED, but on the target', m(P.MIGRATION_PHASE_FAILED), vm({ nodeId: 'n2' }), 0, undefined, ['rollback-elsewhere']],
    ['FAILED with its host dead', m(P.MIGRATION_PHASE_FAILED), vm({ state: S.VM_STATE_FAILED, nodeId: 'n2' }), 0, undefined, []],
    ['CANCELLED, restarted elsewhere per its policy', m(P.MIGRATION_PHASE_CANCELLED), vm({ nodeId: 'n3', restartPolicy: cluster.RestartPolicy.RESTART_POLICY_ALWAYS }), 0, undefined, []],
  ] as [string, cluster.Migration, cluster.Vm, number, number | undefined, string[]][])('%s', (_case, migration, after, writesBefore, writesAfter, expected) => {
    expect(checkOutcome({ migration, vm: after, writesBefore, writesAfter, deleted: false }).map((v) => v.kind)).toEqual(expected);
  });
});
