// DrainNode finishes the job: drain migrations converge (auto-converge), a failed one is retried
// (another target first) while the node is DRAINING, up to DRAIN_MAX_ATTEMPTS; the node stays
// DRAINING and cordoned afterwards. Real controller, Redis and BullMQ; fake agents.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cluster, type agent } from '@vmm/proto';
import { FINAL_PHASES } from '../testing/cluster-client.js';
import { waitFor } from '../../../../test/support/wait-for.js';
import { IDLE_WORKLOAD } from '../testing/records.js';
import { defaultProgress } from '../testing/fake-agent.js';
import { startSpecCluster, type SpecCluster } from '../testing/spec-cluster.js';
import { DRAIN_MAX_ATTEMPTS, DrainCoordinator } from './drain.coordinator.js';
import { MigrationService } from './migration.service.js';

const { MigrationPhase: P, NodeState, VmState } = cluster;
const NOT_CONVERGED: Partial<agent.MigrationProgress>[] = [
  { phase: P.MIGRATION_PHASE_PRECOPY, round: 0 },
  { phase: P.MIGRATION_PHASE_FAILED, error: 'NOT_CONVERGED: dirty rate above the link rate' },
];

let c: SpecCluster;
let seq = 0;

beforeAll(async () => {
  c = await startSpecCluster({ agents: [{ nodeId: 'node-1' }, { nodeId: 'node-2' }, { nodeId: 'node-3' }] });
});

afterAll(async () => {
  await c?.stop();
});

const source = () => c.agents[0]!;

async function drainMigrations(vmId: string, count: number): Promise<cluster.Migration[]> {
  let ms: cluster.Migration[] = [];
  await waitFor(
    async () => {
      ms = (await c.api.listMigrations({ vmId })).migrations.filter((m) => m.reason === 'drain');
      return ms.length >= count && ms.every((m) => FINAL_PHASES.has(m.phase));
    },
    15_000,
    `${count} final drain migrations of ${vmId}`,
  );
  return ms;
}

describe('DrainNode', () => {
  it('uses auto-converge and retries a failed migration on another target; the node stays DRAINING', async () => {
    let starts = 0;
    source().progressScript = () => (++starts === 1 ? NOT_CONVERGED : defaultProgress());
    const vm = await c.api.createVm({ name: `d-${++seq}`, vcpus: 1, memoryMib: 128, workload: IDLE_WORKLOAD, nodeId: 'node-1' });
    try {
      const drained = await c.api.drainNode('node-1');
      expect(drained.node?.state).toBe(NodeState.NODE_STATE_DRAINING);
      expect(drained.migrations).toHaveLength(1);
      expect(drained.migrations[0]).toMatchObject({ reason: 'drain', policy: expect.objectContaining({ autoConverge: true }) });

      const [failed, retried] = await drainMigrations(vm.vmId, 2);
      expect(failed).toMatchObject({ migrationId: drained.migrations[0]!.migrationId, phase: P.MIGRATION_PHASE_FAILED });
      expect(failed!.error).toMatch(/NOT_CONVERGED/);
      expect(retried).toMatchObject({ phase: P.MIGRATION_PHASE_COMPLETED, sourceNodeId: 'node-1', policy: expect.objectContaining({ autoConverge: true }) });
      expect(retried!.targetNodeId).not.toBe(failed!.targetNodeId);
      expect(await c.api.getVm(vm.vmId)).toMatchObject({ nodeId: retried!.targetNodeId, state: VmState.VM_STATE_RUNNING });

      // Empty now, and still DRAINING and cordoned: nothing lands on it until UncordonNode.
      expect(await c.api.getNode('node-1')).toMatchObject({ state: NodeState.NODE_STATE_DRAINING, cordoned: true, vmCount: 0 });
      expect(await c.controller.get(DrainCoordinator).sweep()).toEqual([]);
    } finally {
      source().progressScript = defaultProgress;
      await c.api.uncordonNode('node-1');
      await c.api.deleteVm(vm.vmId);
    }
  });

  it(`gives up after ${DRAIN_MAX_ATTEMPTS} failed attempts: the VM keeps running on the node, which stays DRAINING`, async () => {
    source().progressScript = () => NOT_CONVERGED;
    const vm = await c.api.createVm({ name: `d-${++seq}`, vcpus: 1, memoryMib: 128, workload: IDLE_WORKLOAD, nodeId: 'node-1' });
    try {
      await c.api.drainNode('node-1');
      const attempts = await drainMigrations(vm.vmId, DRAIN_MAX_ATTEMPTS);
      expect(attempts.map((m) => m.phase)).toEqual(Array(DRAIN_MAX_ATTEMPTS).fill(P.MIGRATION_PHASE_FAILED));
      // The first two went to different targets; the third found none left untried and reused one.
      expect(new Set(attempts.slice(0, 2).map((m) => m.targetNodeId)).size).toBe(2);
      expect(await c.controller.get(DrainCoordinator).sweep()).toEqual([]);
      expect((await c.api.listMigrations({ vmId: vm.vmId })).migrations).toHaveLength(DRAIN_MAX_ATTEMPTS);
      expect(await c.api.getVm(vm.vmId)).toMatchObject({ nodeId: 'node-1', state: VmState.VM_STATE_RUNNING });
      expect((await c.api.getNode('node-1')).state).toBe(NodeState.NODE_STATE_DRAINING);

      // A new DrainNode call starts a fresh count.
      source().progressScript = defaultProgress;
      const again = await c.api.drainNode('node-1');
      expect(again.migrations).toHaveLength(1);
      await drainMigrations(vm.vmId, DRAIN_MAX_ATTEMPTS + 1);
      expect((await c.api.getVm(vm.vmId)).nodeId).not.toBe('node-1');
    } finally {
      source().progressScript = defaultProgress;
      await c.api.uncordonNode('node-1');
      await c.api.deleteVm(vm.vmId);
    }
  });

  it('answers with every migration of the drain, also those its coordinator started while DrainNode ran', async () => {
    const vms = [];
    for (let i = 0; i < 3; i++) vms.push(await c.api.createVm({ name: `d-${++seq}`, vcpus: 1, memoryMib: 128, workload: IDLE_WORKLOAD, nodeId: 'node-1' }));
    const service = c.controller.get(MigrationService);
    const migrate = service.migrate.bind(service);
    let swept: string[] = [];
    // The coordinator's sweep runs at its own pace: here it lands right after DrainNode marked the node.
    service.migrate = async (...args) => {
      if (swept.length === 0) swept = await c.controller.get(DrainCoordinator).sweep();
      return migrate(...args);
    };
    try {
      const drained = await c.api.drainNode('node-1');
      expect(swept).toHaveLength(3); // the sweep started all three; DrainNode's own attempts found them migrating
      expect(drained.migrations.map((m) => m.migrationId).sort()).toEqual([...swept].sort());
      for (const vm of vms) await drainMigrations(vm.vmId, 1);
    } finally {
      service.migrate = migrate;
      await c.api.uncordonNode('node-1');
      for (const vm of vms) await c.api.deleteVm(vm.vmId);
    }
  });
});
