// A source that never got ReleaseOutgoing after a commit keeps a paused, lower-epoch copy of the VM
// and reports it: the controller releases it (from reports and from Register), rate-limited.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cluster } from '@vmm/proto';
import { FINAL_PHASES, waitFor } from '../testing/cluster-client.js';
import { IDLE_WORKLOAD } from '../testing/records.js';
import { startSpecCluster, type SpecCluster } from '../testing/spec-cluster.js';
import { StaleCopyReaper } from './stale-copy.reaper.js';

const { MigrationPhase: P, VmState } = cluster;

let c: SpecCluster;

beforeAll(async () => {
  c = await startSpecCluster({ agents: [{ nodeId: 'node-1' }, { nodeId: 'node-2' }] });
});

afterAll(async () => {
  await c?.stop();
});

describe('stale source copies', () => {
  it('a copy left behind by a lost ReleaseOutgoing is released once its node reports it; rate-limited', async () => {
    const [source] = c.agents;
    const vm = await c.api.createVm({ name: 's-1', vcpus: 1, memoryMib: 128, workload: IDLE_WORKLOAD, nodeId: 'node-1' });
    try {
      source!.failReleases = 1;
      const m = await c.api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2' });
      let done: cluster.Migration | undefined;
      await waitFor(async () => FINAL_PHASES.has((done = await c.api.getMigration(m.migrationId)).phase), 10_000, 'migration final');
      expect(done!.phase).toBe(P.MIGRATION_PHASE_COMPLETED);
      const releases = () => source!.calls.filter((x) => x === `release:${m.migrationId}@2`).length;
      expect(releases()).toBeGreaterThanOrEqual(1);

      // The source's next reports carry the epoch-1 copy: the controller releases it under epoch 2.
      await waitFor(() => !source!.vms.has(vm.vmId), 5000, 'the stale copy destroyed');
      expect(releases()).toBe(2);
      expect(await c.api.getVm(vm.vmId)).toMatchObject({ nodeId: 'node-2', state: VmState.VM_STATE_RUNNING, fencingEpoch: 2 });

      // The same left-over copy seen at registration: released once, then not again on every report
      // while the agent keeps failing (at most one attempt per RELEASE_RETRY_MS).
      source!.stopReporting();
      const copy: cluster.VmState = VmState.VM_STATE_MIGRATING;
      source!.vms.set(vm.vmId, { vmId: vm.vmId, state: copy, pagesTotal: 128 * 256, residentPages: 3, fencingEpoch: 1, spec: undefined });
      source!.failReleases = 100;
      const before = releases();
      await source!.register(c.controller.address);
      await c.controller.get(StaleCopyReaper).settled();
      expect(releases()).toBe(before + 1);
      const registeredAt = (await c.api.getNode('node-1')).lastReportMs;
      await waitFor(async () => (await c.api.getNode('node-1')).lastReportMs > registeredAt + 3 * c.config.reportIntervalMs, 5000, 'three more reports');
      await c.controller.get(StaleCopyReaper).settled();
      expect(releases()).toBe(before + 1);
      expect(source!.vms.has(vm.vmId)).toBe(true);
    } finally {
      source!.failReleases = 0;
      source!.vms.delete(vm.vmId);
      await c.api.deleteVm(vm.vmId).catch(() => undefined);
    }
  });
});
