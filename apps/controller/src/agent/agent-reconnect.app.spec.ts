// An agent that restarts on the same address: right after it registers again, the controller's
// calls reach it, although its old channel was backing off after failed connection attempts.
import { connectivityState } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cluster } from '@vmm/proto';
import { FINAL_PHASES } from '../testing/cluster-client.js';
import { waitFor } from '../../../../test/support/wait-for.js';
import { IDLE_WORKLOAD } from '../testing/records.js';
import { startSpecCluster, type SpecCluster } from '../testing/spec-cluster.js';
import { AgentClientPool } from './agent-client.pool.js';

const { MigrationPhase: P, NodeState } = cluster;

let c: SpecCluster;

beforeAll(async () => {
  c = await startSpecCluster({ agents: [{ nodeId: 'node-1' }, { nodeId: 'node-2' }] });
});

afterAll(async () => {
  await c?.stop();
});

describe('an agent restarted on the same address', () => {
  it('is reachable as soon as it registers again: a migration to it completes', async () => {
    const [source, target] = c.agents as [NonNullable<(typeof c.agents)[0]>, NonNullable<(typeof c.agents)[0]>];
    const vm = await c.api.createVm({ name: 'r-1', vcpus: 1, memoryMib: 128, workload: IDLE_WORKLOAD, nodeId: 'node-1' });
    const pool = c.controller.get(AgentClientPool);
    try {
      target.kill();
      // The controller tries the dead agent: its channel fails to connect and starts backing off.
      const doomed = c.api.setNodeKsm('node-2', { run: 1 }).catch((e: unknown) => e);
      await waitFor(async () => (await c.api.getNode('node-2')).state === NodeState.NODE_STATE_NOT_READY, 5000, 'node-2 NOT_READY');
      await waitFor(
        () => pool.get(target.address, 'node-2').getChannel().getConnectivityState(false) === connectivityState.TRANSIENT_FAILURE,
        5000,
        'the channel to node-2 backing off',
      );

      await target.start();
      await target.register(c.controller.address);
      const m = await c.api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2' });
      let done: cluster.Migration | undefined;
      await waitFor(async () => FINAL_PHASES.has((done = await c.api.getMigration(m.migrationId)).phase), 15_000, 'migration final');
      expect(done!.phase, done!.error).toBe(P.MIGRATION_PHASE_COMPLETED);
      expect((await c.api.getVm(vm.vmId)).nodeId).toBe('node-2');
      expect(source.calls).toContain(`release:${m.migrationId}@2`);
      await doomed;
    } finally {
      await c.api.deleteVm(vm.vmId).catch(() => undefined);
    }
  });
});
