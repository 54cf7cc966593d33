// CancelMigration in the middle of pre-copy, against real processes: a busy VM whose pre-copy is
// slowed by a bandwidth cap is cancelled while PRECOPY. It must end CANCELLED with the VM running on
// its source (still working), no trace on the target agent, the target's room given back, and the
// VM free to migrate again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmRequest } from './support/vms.js';
import { waitFor } from './support/wait-for.js';
import {
  agentAddress,
  agentVms,
  allocations,
  expectCompleted,
  MigrationPhase,
  policy,
  short,
  startMigrationCluster,
  VmState,
  waitForFinal,
  waitForPhase,
  watchMigration,
  workload,
  WorkloadKind,
  type MigrationTestCluster,
} from './support/migration.js';

const REPORT_INTERVAL_MS = 250;

let t: MigrationTestCluster;

beforeAll(async () => {
  t = await startMigrationCluster({ agents: 2, reportIntervalMs: REPORT_INTERVAL_MS, tap: true });
});

afterAll(async () => {
  await t?.stop();
});

describe('CancelMigration', () => {
  it('mid-pre-copy: CANCELLED, VM running on the source, target clean, room released, migratable again', async () => {
    const { api, c } = t;
    const tap = t.tap!;
    const source = 'node-1';
    const target = 'node-2';
    const vm = await api.createVm(
      vmRequest({ memoryMib: 256, image: 'debian-12', nodeId: source, workload: workload(WorkloadKind.WORKLOAD_KIND_UNIFORM, 20_000, 128) }),
    );
    try {
      await tap.waitForReport(vm.vmId, (r) => r.writesTotal > 0, 30_000);
      const before = await api.getVm({ vmId: vm.vmId });
      const allocBefore = await allocations(api);
      const targetUsedBeforeMib = (await api.getNode({ nodeId: target })).memoryMibUsed;

      // 8 MiB/s against 20k pages/s (~80 MiB/s) of dirtying: pre-copy cannot finish on its own soon.
      const started = await api.migrateVm({ vmId: vm.vmId, targetNodeId: target, policy: policy({ maxBandwidthMibPerSec: 8, maxRounds: 1000 }) });
      const watching = watchMigration(api, started.migrationId, 60_000);
      await waitForPhase(api, started.migrationId, [MigrationPhase.MIGRATION_PHASE_PRECOPY], 30_000, 20);
      // While it runs the target holds the incoming VM (agents list only VMs they run, not incoming
      // ones: its trace is the guest memory received, in the node's reported memory use) and its room
      // is reserved.
      await waitFor(
        async () => (await api.getNode({ nodeId: target })).memoryMibUsed > targetUsedBeforeMib + 1,
        30_000,
        'the target to hold received guest memory',
      );
      expect((await allocations(api))[target]!.memoryMib).toBe(allocBefore[target]!.memoryMib + vm.memoryMib);
      expect(short((await api.getVm({ vmId: vm.vmId })).state)).toBe('MIGRATING');

      const cancelled = await api.cancelMigration({ migrationId: started.migrationId });
      expect(short(cancelled.phase), `cancel answered ${short(cancelled.phase)} (${cancelled.error})`).toBe('CANCELLED');
      const cancelledAtMs = Date.now();

      const watch = await watching;
      expect(watch.ended, 'the watch ends after CANCELLED').toBe(true);
      expect(short(watch.messages.at(-1)!.phase)).toBe('CANCELLED');
      expect(watch.messages.filter((m) => short(m.phase) === 'CANCELLED')).toHaveLength(1);

      const final = await api.getMigration({ migrationId: started.migrationId });
      expect(short(final.phase)).toBe('CANCELLED');
      expect(final.error).toMatch(/cancel/i);
      // Cancelling again is a no-op on a finished migration.
      expect(short((await api.cancelMigration({ migrationId: started.migrationId })).phase)).toBe('CANCELLED');

      // The VM: running where it was, same epoch; its source agent runs it and it keeps working.
      const after = await api.getVm({ vmId: vm.vmId });
      expect(after.nodeId).toBe(source);
      expect(short(after.state)).toBe('RUNNING');
      expect(after.fencingEpoch).toBe(before.fencingEpoch);
      const onSource = (await agentVms(agentAddress(c, source))).find((v) => v.vmId === vm.vmId);
      expect(short(onSource?.state ?? 'absent')).toBe('RUNNING');
      const atCancel = Math.max(...tap.of(vm.vmId, source).map((r) => r.writesTotal));
      await tap.waitForReport(
        vm.vmId,
        (r) => r.nodeId === source && r.state === VmState.VM_STATE_RUNNING && r.writesTotal > atCancel,
        15_000,
        cancelledAtMs,
      );

      // The target: no trace of the VM, its room given back.
      await waitFor(async () => !(await agentVms(agentAddress(c, target))).some((v) => v.vmId === vm.vmId), 15_000, 'the target agent to drop the incoming vm');
      expect(await allocations(api)).toEqual(allocBefore);
      await waitFor(
        async () => (await api.getNode({ nodeId: target })).memoryMibUsed <= targetUsedBeforeMib + 0.5,
        15_000,
        'the target to free the received guest memory',
      );

      // And the VM migrates fine afterwards.
      const again = await api.migrateVm({ vmId: vm.vmId, targetNodeId: target, policy: policy() });
      const done = await waitForFinal(api, again.migrationId, 90_000);
      expectCompleted(done, 'after a cancelled one');
      const moved = await api.getVm({ vmId: vm.vmId });
      expect(moved.nodeId).toBe(target);
      expect(short(moved.state)).toBe('RUNNING');
      expect(moved.fencingEpoch).toBeGreaterThan(before.fencingEpoch);
      expect((await agentVms(agentAddress(c, source))).map((v) => v.vmId)).not.toContain(vm.vmId);
    } finally {
      await api.deleteVm({ vmId: vm.vmId }).catch(() => {});
    }
  });
});
