// CancelMigration in the middle of pre-copy, against real processes: a busy VM whose pre-copy is
// slowed by a bandwidth cap is cancelled while PRECOPY. It must end CANCELLED with the VM running on
// its source (still working), no trace on the target agent, the target's room given back, and the
// VM free to migrate again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { cluster } from '@vmm/proto';
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
  openWatch,
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
      // A watch opened now starts with the current state (pre-copy under way), not from PENDING.
      const lateWatch = openWatch(api, started.migrationId, 60_000);
      await lateWatch.first;

      const cancelled = await api.cancelMigration({ migrationId: started.migrationId });
      expect(short(cancelled.phase), `cancel answered ${short(cancelled.phase)} (${cancelled.error})`).toBe('CANCELLED');
      const cancelledAtMs = Date.now();

      const watch = await watching;
      expect(watch.ended, 'the watch ends after CANCELLED').toBe(true);
      expect(short(watch.messages.at(-1)!.phase)).toBe('CANCELLED');
      expect(watch.messages.filter((m) => short(m.phase) === 'CANCELLED')).toHaveLength(1);
      const late = await lateWatch.done;
      expect(late.ended).toBe(true);
      expect(short(late.messages[0]!.phase), 'first message of a watch opened mid-pre-copy').toBe('PRECOPY');
      expect(short(late.messages.at(-1)!.phase)).toBe('CANCELLED');

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

describe('CancelMigration of a queued migration', () => {
  it('PENDING behind the per-node limit: CANCELLED at once, never reaches the agents, room released', async () => {
    const { api, c } = t;
    const source = 'node-1';
    const target = 'node-2';
    const slow = policy({ maxBandwidthMibPerSec: 4, maxRounds: 1000 });
    const allocBefore = await allocations(api);
    const vms: cluster.Vm[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        vms.push(
          await api.createVm(
            vmRequest({ memoryMib: 128, image: 'debian-12', nodeId: source, workload: workload(WorkloadKind.WORKLOAD_KIND_UNIFORM, 10_000, 64, i + 20) }),
          ),
        );
      }
      const allocWithVms = await allocations(api);
      // Two migrations fill node-1's outbound slots (MAX_MIGRATIONS_OUTBOUND_PER_NODE = 2)…
      const running = [];
      for (const v of vms.slice(0, 2)) {
        const m = await api.migrateVm({ vmId: v.vmId, targetNodeId: target, policy: slow });
        running.push(await waitForPhase(api, m.migrationId, [MigrationPhase.MIGRATION_PHASE_PRECOPY], 30_000, 20));
      }
      // …so the third waits in PENDING, its room on the target already reserved.
      const queued = await api.migrateVm({ vmId: vms[2]!.vmId, targetNodeId: target, policy: slow });
      expect(short(queued.phase)).toBe('PENDING');
      expect((await allocations(api))[target]!.memoryMib).toBe(allocWithVms[target]!.memoryMib + 3 * 128);
      expect(short((await api.getMigration({ migrationId: queued.migrationId })).phase)).toBe('PENDING');

      const cancelled = await api.cancelMigration({ migrationId: queued.migrationId });
      expect(short(cancelled.phase)).toBe('CANCELLED');
      const vm2 = await api.getVm({ vmId: vms[2]!.vmId });
      expect(vm2.nodeId).toBe(source);
      expect(short(vm2.state)).toBe('RUNNING');
      expect((await allocations(api))[target]!.memoryMib).toBe(allocWithVms[target]!.memoryMib + 2 * 128);

      // The two running ones are unaffected; when they are cancelled too, all room is back.
      for (const m of running) expect(short((await api.getMigration({ migrationId: m.migrationId })).phase)).toBe('PRECOPY');
      for (const m of running) expect(short((await api.cancelMigration({ migrationId: m.migrationId })).phase)).toBe('CANCELLED');
      expect(await allocations(api)).toEqual(allocWithVms);
      // The queued one never started later on (its job was dropped or finds it final).
      expect(short((await api.getMigration({ migrationId: queued.migrationId })).phase)).toBe('CANCELLED');
      await waitFor(async () => !(await agentVms(agentAddress(c, target))).length, 15_000, 'the target agent to run nothing');
      for (const v of vms) expect(short((await api.getVm({ vmId: v.vmId })).state)).toBe('RUNNING');
    } finally {
      for (const v of vms) await api.deleteVm({ vmId: v.vmId }).catch(() => {});
    }
    expect(await allocations(api)).toEqual(allocBefore);
  });
});
