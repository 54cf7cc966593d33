import { agent, cluster } from '@vmm/proto';
import { describe, expect, it } from 'vitest';
import { AgentStateStore } from '../state/agent-state.store.js';
import { MigrationLedger, REPORT_SETTLED_MS, RETAIN_SETTLED_MS } from './migration-ledger.js';

describe('MigrationLedger', () => {
  it('marks the ends a previous process left unsettled LOST, and keeps settled ones as they were', () => {
    const store = AgentStateStore.open(undefined);
    const before = new MigrationLedger(store, () => 1_000);
    before.record({ migrationId: 'a', vmId: 'v', role: 'target', state: 'COMMITTED', fencingEpoch: 4 });
    before.record({ migrationId: 'b', vmId: 'w', role: 'source', state: 'RELEASED', fencingEpoch: 4 });
    before.record({ migrationId: 'c', vmId: 'x', role: 'source', state: 'READY', fencingEpoch: 2 });
    const after = new MigrationLedger(store, () => 2_000);
    expect(after.markUnsettledLost().map((e) => e.migrationId).sort()).toEqual(['a', 'c']);
    expect(after.get('a')).toMatchObject({ state: 'LOST', fencingEpoch: 4, updatedAtMs: 2_000 });
    expect(after.get('b')).toMatchObject({ state: 'RELEASED', updatedAtMs: 1_000 });
    expect(after.markUnsettledLost()).toEqual([]);
  });

  it('reports unsettled ends always and settled ones for a while; forgets settled ones after the retention', () => {
    let now = 0;
    const ledger = new MigrationLedger(AgentStateStore.open(undefined), () => now);
    ledger.record({ migrationId: 'open', vmId: 'v', role: 'target', state: 'RECEIVING', fencingEpoch: 0 });
    ledger.record({ migrationId: 'done', vmId: 'w', role: 'source', state: 'ABORTED', fencingEpoch: 1 });
    expect(ledger.reported().map((e) => [e.migrationId, e.state, e.role])).toEqual([
      ['open', agent.MigrationEndState.MIGRATION_END_STATE_RECEIVING, cluster.MigrationRole.MIGRATION_ROLE_TARGET],
      ['done', agent.MigrationEndState.MIGRATION_END_STATE_ABORTED, cluster.MigrationRole.MIGRATION_ROLE_SOURCE],
    ]);
    now = REPORT_SETTLED_MS + 1;
    expect(ledger.reported().map((e) => e.migrationId)).toEqual(['open']);
    expect(ledger.get('done')).toBeDefined();
    now = RETAIN_SETTLED_MS + 1;
    ledger.record({ migrationId: 'next', vmId: 'x', role: 'source', state: 'SENDING', fencingEpoch: 1 });
    expect(ledger.get('done')).toBeUndefined();
    expect(ledger.get('open')).toBeDefined();
  });
});
