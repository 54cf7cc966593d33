import { describe, expect, it } from 'vitest';
import type { MigrationPhase } from '@vmm/migration/phase';
import { agent, cluster } from '@vmm/proto';
import type { VmRecord } from '../common/model.js';
import type { MigrationRecord } from '../migration/migration-record.js';
import { testVm } from '../testing/records.js';
import { decideForSource, reconcileReport, type ReconcileInput } from './report-reconcile.js';

const A = agent.DirectiveAction;
const E = agent.MigrationEndState;
const R = cluster.MigrationRole;

const vm = (over: Partial<VmRecord> = {}): VmRecord =>
  testVm({ vmId: 'vm-1', name: 'v', nodeId: 'n1', memoryMib: 64, state: cluster.VmState.VM_STATE_RUNNING, fencingEpoch: 3, ...over });
const migration = (phase: MigrationPhase, over: Partial<MigrationRecord> = {}): MigrationRecord =>
  ({ migrationId: 'm-1', vmId: 'vm-1', sourceNodeId: 'n1', targetNodeId: 'n2', phase, fencingEpoch: 0, targetResumedAtMs: 0, revertedEpoch: 0, ...over }) as MigrationRecord;

function run(over: Partial<ReconcileInput>) {
  return reconcileReport({ nodeId: 'n1', vms: [], ends: [], records: new Map(), migrations: new Map(), tombstones: new Map(), ...over });
}
const only = (r: ReturnType<typeof run>) => r.directives.map((d) => ({ vmId: d.vmId, action: d.action, fencingEpoch: d.fencingEpoch }));

describe('reconcileReport: VMs', () => {
  it.each([
    ['held here at its epoch: confirmed', vm(), 3, []],
    ['below the epoch the controller holds: destroyed there', vm(), 2, [{ vmId: 'vm-1', action: A.DIRECTIVE_ACTION_DESTROY, fencingEpoch: 3 }]],
    ['held elsewhere, older: destroyed', vm({ nodeId: 'n9', fencingEpoch: 4 }), 3, [{ vmId: 'vm-1', action: A.DIRECTIVE_ACTION_DESTROY, fencingEpoch: 4 }]],
    ['held elsewhere at the same epoch: held, never confirmed', vm({ nodeId: 'n9' }), 3, [{ vmId: 'vm-1', action: A.DIRECTIVE_ACTION_HOLD, fencingEpoch: 3 }]],
    ['ahead of the controller: held', vm(), 4, [{ vmId: 'vm-1', action: A.DIRECTIVE_ACTION_HOLD, fencingEpoch: 4 }]],
    ['unknown: held (registration adopts, reports do not)', undefined, 1, [{ vmId: 'vm-1', action: A.DIRECTIVE_ACTION_HOLD, fencingEpoch: 1 }]],
  ] as [string, VmRecord | undefined, number, object[]][])('%s', (_case, record, epoch, directives) => {
    const records = new Map(record ? [['vm-1', record]] : []);
    expect(only(run({ vms: [{ vmId: 'vm-1', fencingEpoch: epoch, migrationId: '' }], records }))).toEqual(directives);
  });

  it('destroys a deleted VM above any epoch it had, and clears tombstones the node no longer reports', () => {
    const r = run({ vms: [{ vmId: 'vm-1', fencingEpoch: 3, migrationId: '' }], tombstones: new Map([['vm-1', 3], ['vm-gone', 1]]) });
    expect(only(r)).toEqual([{ vmId: 'vm-1', action: A.DIRECTIVE_ACTION_DESTROY, fencingEpoch: 4 }]);
    expect(r.clearedTombstones).toEqual(['vm-gone']);
  });

  it('asks to mark a committed migration resumed when its target reports the VM at the committed epoch', () => {
    const m = migration('COMMITTING', { targetNodeId: 'n1', fencingEpoch: 3 });
    const r = run({ vms: [{ vmId: 'vm-1', fencingEpoch: 3, migrationId: '' }], records: new Map([['vm-1', vm({ state: cluster.VmState.VM_STATE_MIGRATING, migrationId: 'm-1' })]]), migrations: new Map([['m-1', m]]) });
    expect(r.resumed).toEqual([{ migration: m, vmId: 'vm-1' }]);
    expect(r.directives).toEqual([]);
  });

  it('leaves a migration source copy to its migration end', () => {
    expect(only(run({ vms: [{ vmId: 'vm-1', fencingEpoch: 1, migrationId: 'm-1' }], records: new Map([['vm-1', vm()]]) }))).toEqual([]);
  });
});

describe('decideForSource: the answer to a paused, verified source', () => {
  const end = { vmId: 'vm-1', migrationId: 'm-1', fencingEpoch: 3 };
  it.each([
    ['before the commit: no decision yet', migration('STOP_AND_COPY'), vm({ state: cluster.VmState.VM_STATE_MIGRATING }), undefined],
    ['committed, target not seen running: wait (a revert may need this copy)', migration('COMMITTING', { fencingEpoch: 4 }), vm({ nodeId: 'n2', fencingEpoch: 4 }), undefined],
    ['committed and resumed: release at N+1', migration('COMMITTING', { fencingEpoch: 4, targetResumedAtMs: 9 }), vm({ nodeId: 'n2', fencingEpoch: 4 }), [A.DIRECTIVE_ACTION_RELEASE_SOURCE, 4]],
    ['completed: release', migration('COMPLETED', { fencingEpoch: 4 }), vm({ nodeId: 'n2', fencingEpoch: 4 }), [A.DIRECTIVE_ACTION_RELEASE_SOURCE, 4]],
    ['rolled back: resume at N', migration('FAILED'), vm(), [A.DIRECTIVE_ACTION_RESUME_SOURCE, 3]],
    ['cancelled: resume at N', migration('CANCELLED'), vm(), [A.DIRECTIVE_ACTION_RESUME_SOURCE, 3]],
    ['reverted: resume at N+2', migration('FAILED', { revertedEpoch: 5 }), vm({ fencingEpoch: 5 }), [A.DIRECTIVE_ACTION_RESUME_SOURCE, 5]],
    ['migration forgotten, VM here: resume', undefined, vm(), [A.DIRECTIVE_ACTION_RESUME_SOURCE, 3]],
    ['migration forgotten, VM elsewhere: release', undefined, vm({ nodeId: 'n2', fencingEpoch: 4 }), [A.DIRECTIVE_ACTION_RELEASE_SOURCE, 4]],
    ['VM deleted: release above its epoch', migration('FAILED'), undefined, [A.DIRECTIVE_ACTION_RELEASE_SOURCE, 4]],
  ] as [string, MigrationRecord | undefined, VmRecord | undefined, [agent.DirectiveAction, number] | undefined][])('%s', (_case, m, record, expected) => {
    const d = decideForSource('n1', end, m, record);
    expect(d ? [d.action, d.fencingEpoch] : undefined).toEqual(expected);
  });

  it('is what a report with a READY source end gets', () => {
    const ends = [{ migrationId: 'm-1', vmId: 'vm-1', role: R.MIGRATION_ROLE_SOURCE, state: E.MIGRATION_END_STATE_READY, fencingEpoch: 3 }];
    expect(only(run({ ends, records: new Map([['vm-1', vm()]]), migrations: new Map([['m-1', migration('FAILED')]]) }))).toEqual([
      { vmId: 'vm-1', action: A.DIRECTIVE_ACTION_RESUME_SOURCE, fencingEpoch: 3 },
    ]);
  });
});

describe('reconcileReport: incoming copies', () => {
  const target = (state: agent.MigrationEndState) => [{ migrationId: 'm-1', vmId: 'vm-1', role: R.MIGRATION_ROLE_TARGET, state, fencingEpoch: 0 }];
  it.each([
    ['its migration is over', migration('FAILED', { targetNodeId: 'n1' }), E.MIGRATION_END_STATE_READY, true],
    ['its migration is unknown', undefined, E.MIGRATION_END_STATE_RECEIVING, true],
    ['its migration targets another node', migration('PRECOPY', { targetNodeId: 'n2' }), E.MIGRATION_END_STATE_RECEIVING, true],
    ['its migration runs to this node', migration('PRECOPY', { targetNodeId: 'n1' }), E.MIGRATION_END_STATE_RECEIVING, false],
    ['its migration is committing (CommitIncoming comes)', migration('COMMITTING', { targetNodeId: 'n1' }), E.MIGRATION_END_STATE_READY, false],
    ['it was committed already', migration('FAILED', { targetNodeId: 'n1' }), E.MIGRATION_END_STATE_RESUMED, false],
  ] as [string, MigrationRecord | undefined, agent.MigrationEndState, boolean][])('discarded when %s: %s', (_case, m, state, discard) => {
    const r = run({ ends: target(state), migrations: new Map(m ? [['m-1', m]] : []) });
    expect(r.directives.map((d) => d.action)).toEqual(discard ? [A.DIRECTIVE_ACTION_DISCARD_INCOMING] : []);
  });
});
