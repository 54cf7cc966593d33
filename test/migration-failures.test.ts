// An agent dies (kill -9) in the middle of pre-copy, against real processes. Killing the TARGET: the
// migration FAILS with a clear error and the VM keeps running on its source, its work intact.
// Killing the SOURCE: the migration FAILS clearly, the target discards what it received and gives
// its room back, and the target never claims the VM (same node, same fencing epoch).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { cluster } from '@vmm/proto';
import { expectGrpcError, status } from './support/grpc.js';
import { vmRequest } from './support/vms.js';
import { waitFor } from './support/wait-for.js';
import {
  agentAddress,
  agentVms,
  allocations,
  MigrationPhase,
  policy,
  short,
  startMigrationCluster,
  VmState,
  waitForFinal,
  waitForPhase,
  workload,
  WorkloadKind,
  type MigrationTestCluster,
} from './support/migration.js';

const REPORT_INTERVAL_MS = 250;
const SOURCE = 'node-1';
const TARGET = 'node-2';
/** The second case's target: a node whose agent the first case did not kill and restart. */
const TARGET_2 = 'node-3';

let t: MigrationTestCluster;

beforeAll(async () => {
  t = await startMigrationCluster({ agents: 3, reportIntervalMs: REPORT_INTERVAL_MS, tap: true });
});

afterAll(async () => {
  await t?.stop();
});

/** A busy VM on SOURCE, a bandwidth-capped migration to `target`, waited on until data flows. */
async function busyMigrationInPrecopy(target: string): Promise<{ vm: cluster.Vm; migration: cluster.Migration; targetUsedBeforeMib: number }> {
  const { api } = t;
  const vm = await api.createVm(
    vmRequest({ memoryMib: 256, image: 'debian-12', nodeId: SOURCE, workload: workload(WorkloadKind.WORKLOAD_KIND_UNIFORM, 20_000, 128) }),
  );
  await t.tap!.waitForReport(vm.vmId, (r) => r.writesTotal > 0, 30_000);
  const targetUsedBeforeMib = (await api.getNode({ nodeId: target })).memoryMibUsed;
  const migration = await api.migrateVm({ vmId: vm.vmId, targetNodeId: target, policy: policy({ maxBandwidthMibPerSec: 8, maxRounds: 1000 }) });
  await waitForPhase(api, migration.migrationId, [MigrationPhase.MIGRATION_PHASE_PRECOPY], 30_000, 20);
  // Guest memory has reached the target: the data connection is live.
  await waitFor(
    async () => (await api.getNode({ nodeId: target })).memoryMibUsed > targetUsedBeforeMib + 1,
    30_000,
    'guest memory on the target',
  );
  return { vm, migration, targetUsedBeforeMib };
}

/** Waits until every agent process runs and its node is READY again. */
async function restartIfDead(index: number): Promise<void> {
  if (!t.c.agents[index]!.process.running) await t.c.startAgent(index);
  await t.c.waitForNodes();
}

describe('an agent killed mid-pre-copy', () => {
  it('the TARGET: FAILED with a clear error, the VM keeps running on its source', async () => {
    const { api, c } = t;
    const tap = t.tap!;
    const allocBefore = await allocations(api);
    const { vm, migration } = await busyMigrationInPrecopy(TARGET);
    try {
      const before = await api.getVm({ vmId: vm.vmId });
      await c.killAgent(1, 'SIGKILL');
      const killedAtMs = Date.now();

      const failed = await waitForFinal(api, migration.migrationId, 60_000);
      console.info(`target killed: ${short(failed.phase)} error="${failed.error}"`);
      expect(short(failed.phase)).toBe('FAILED');
      expect(failed.error, 'a clear error').toMatch(/connection|lost|closed|reset|unavailable|target|peer/i);
      expect(failed.error).not.toMatch(/^(unknown|internal)/i);

      // The VM: still on its source, RUNNING, same epoch, and its work goes on from where it was.
      const after = await api.getVm({ vmId: vm.vmId });
      expect(after.nodeId).toBe(SOURCE);
      expect(short(after.state)).toBe('RUNNING');
      expect(after.fencingEpoch).toBe(before.fencingEpoch);
      const onSource = (await agentVms(agentAddress(c, SOURCE))).find((v) => v.vmId === vm.vmId);
      expect(short(onSource?.state ?? 'absent')).toBe('RUNNING');
      const beforeKill = Math.max(...tap.of(vm.vmId, SOURCE).filter((r) => r.atMs <= killedAtMs).map((r) => r.writesTotal));
      const next = await tap.waitForReport(
        vm.vmId,
        (r) => r.nodeId === SOURCE && r.state === VmState.VM_STATE_RUNNING && r.writesTotal > beforeKill,
        15_000,
        Date.now(),
      );
      expect(next.writesTotal, 'writes continue on the source, nothing lost').toBeGreaterThan(beforeKill);

      // The dead target's reservation is given back.
      expect((await allocations(api))[TARGET]).toEqual(allocBefore[TARGET]);

      // Once the target is back it holds nothing of the VM.
      await restartIfDead(1);
      expect((await agentVms(agentAddress(c, TARGET))).map((v) => v.vmId)).not.toContain(vm.vmId);
    } finally {
      await restartIfDead(1).catch(() => {});
      await api.deleteVm({ vmId: vm.vmId }).catch(() => {});
    }
  });

  it('the SOURCE: FAILED with a clear error, the target cleaned up, no fencing confusion', async () => {
    const { api, c } = t;
    const allocBefore = await allocations(api);
    const { vm, migration, targetUsedBeforeMib } = await busyMigrationInPrecopy(TARGET_2);
    try {
      const before = await api.getVm({ vmId: vm.vmId });
      await c.killAgent(0, 'SIGKILL');

      const failed = await waitForFinal(api, migration.migrationId, 60_000);
      console.info(`source killed: ${short(failed.phase)} error="${failed.error}"`);
      expect(short(failed.phase)).toBe('FAILED');
      expect(failed.error, 'a clear error').toMatch(/connection|lost|closed|reset|unavailable|source|peer/i);
      expect(failed.error).not.toMatch(/^(unknown|internal)/i);

      // The target: discarded the incoming VM (its memory freed), never ran it, room given back.
      await waitFor(
        async () => (await api.getNode({ nodeId: TARGET_2 })).memoryMibUsed <= targetUsedBeforeMib + 0.5,
        15_000,
        'the target to free the received guest memory',
      );
      expect((await agentVms(agentAddress(c, TARGET_2))).map((v) => v.vmId)).not.toContain(vm.vmId);
      expect((await allocations(api))[TARGET_2]).toEqual(allocBefore[TARGET_2]);

      // Fencing: the VM still belongs to its source at the same epoch; the target does not claim it.
      const after = await api.getVm({ vmId: vm.vmId });
      expect(after.nodeId).toBe(SOURCE);
      expect(after.fencingEpoch).toBe(before.fencingEpoch);
      expect(short(after.state)).not.toBe('MIGRATING');
      // The target never ran it: its agent never reported the VM (it reports every VM it runs).
      expect(t.tap!.of(vm.vmId, TARGET_2)).toEqual([]);

      // The source comes back empty-handed (its process died with the VM): the controller says so
      // rather than pretending the VM runs anywhere.
      await restartIfDead(0);
      const lost = await waitFor(
        async () => {
          const v = await api.getVm({ vmId: vm.vmId });
          return short(v.state) === 'FAILED' ? v : undefined;
        },
        15_000,
        'the VM lost with its source to be FAILED',
      );
      expect(lost.nodeId).toBe(SOURCE);
      expect(lost.fencingEpoch).toBe(before.fencingEpoch);
      expect((await agentVms(agentAddress(c, TARGET_2))).map((v) => v.vmId)).not.toContain(vm.vmId);
      // A VM that is not running cannot be migrated.
      await expectGrpcError(api.migrateVm({ vmId: vm.vmId, targetNodeId: TARGET_2, policy: undefined }), status.FAILED_PRECONDITION, /not running/i);
    } finally {
      await restartIfDead(0).catch(() => {});
      await api.deleteVm({ vmId: vm.vmId }).catch(() => {});
    }
  });

  // Once a bug: the controller kept a channel per agent address that, after the agent restarted, still
  // sat in its reconnect backoff, and called agents without waitForReady, so a migration started right
  // after the restart failed at once with "PrepareIncoming: No connection established … ECONNREFUSED".
  // The controller now replaces the channel when a node registers again and calls with waitForReady.
  it('a migration to a node whose agent just restarted (READY again) succeeds', async () => {
    const { api, c } = t;
    const vm = await api.createVm(vmRequest({ memoryMib: 128, image: 'debian-12', nodeId: SOURCE }));
    try {
      await c.killAgent(1, 'SIGKILL');
      // The controller tries the dead agent (its channel fails and backs off).
      const doomed = await api.migrateVm({ vmId: vm.vmId, targetNodeId: TARGET, policy: undefined });
      expect(short((await waitForFinal(api, doomed.migrationId, 30_000)).phase)).toBe('FAILED');
      await restartIfDead(1);
      const m = await api.migrateVm({ vmId: vm.vmId, targetNodeId: TARGET, policy: undefined });
      const done = await waitForFinal(api, m.migrationId, 60_000);
      expect(short(done.phase), done.error).toBe('COMPLETED');
    } finally {
      await restartIfDead(1).catch(() => {});
      await api.deleteVm({ vmId: vm.vmId }).catch(() => {});
    }
  });
});
