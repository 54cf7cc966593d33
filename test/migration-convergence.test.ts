// Pre-copy convergence against real processes. A guest that dirties memory far faster than the
// bandwidth cap lets pre-copy send it (uniform 50k pages/s ≈ 195 MiB/s over a 128 MiB working set,
// 32 MiB/s cap) never gets its expected downtime under the limit: without auto-converge it fails at
// max_rounds, saying so; with auto-converge the source throttles the vCPU until it converges.
//
// The auto-converge run gets more rounds than the failing one: QEMU's scheme throttles only after two
// high-dirty syncs and then steps 20%, 30%, … per round, so it needs about a dozen rounds here; with
// max_rounds 5 it would give up before the throttle could bite.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vmRequest } from './support/vms.js';
import {
  expectCompleted,
  policy,
  short,
  startMigrationCluster,
  waitForFinal,
  watchMigration,
  workload,
  WorkloadKind,
  type MigrationTestCluster,
} from './support/migration.js';

const SOURCE = 'node-1';
const TARGET = 'node-2';
const MAX_ROUNDS = 5;
const BANDWIDTH_MIB_PER_SEC = 32;

let t: MigrationTestCluster;

beforeAll(async () => {
  t = await startMigrationCluster({ agents: 2, reportIntervalMs: 500 });
});

afterAll(async () => {
  await t?.stop();
});

const hotVm = () =>
  vmRequest({ memoryMib: 128, nodeId: SOURCE, workload: workload(WorkloadKind.WORKLOAD_KIND_UNIFORM, 50_000, 128, 11) });

describe('pre-copy that cannot keep up with the guest', () => {
  it(`fails at max_rounds (${MAX_ROUNDS}) without auto-converge, naming it; the VM stays on its source`, async () => {
    const { api } = t;
    const vm = await api.createVm(hotVm());
    try {
      const before = await api.getVm({ vmId: vm.vmId });
      const pol = policy({ maxBandwidthMibPerSec: BANDWIDTH_MIB_PER_SEC, maxRounds: MAX_ROUNDS, autoConverge: false, completionTimeoutMs: 150_000 });
      const m = await api.migrateVm({ vmId: vm.vmId, targetNodeId: TARGET, policy: pol });
      const watch = await watchMigration(api, m.migrationId, 170_000);
      expect(watch.ended).toBe(true);
      const failed = await api.getMigration({ migrationId: m.migrationId });
      console.info(`no auto-converge: ${short(failed.phase)} round=${failed.round} error="${failed.error}"`);
      expect(short(failed.phase)).toBe('FAILED');
      expect(failed.error).toMatch(new RegExp(`converge.*${MAX_ROUNDS} rounds|max_rounds`, 'i'));
      // It really ran max_rounds rounds, unthrottled.
      expect(Math.max(...watch.messages.map((x) => x.round))).toBeGreaterThanOrEqual(MAX_ROUNDS - 1);
      expect(Math.max(...watch.messages.map((x) => x.throttlePercent))).toBe(0);
      expect(failed.targetDigest).toBe('');

      const after = await api.getVm({ vmId: vm.vmId });
      expect(after.nodeId).toBe(SOURCE);
      expect(short(after.state)).toBe('RUNNING');
      expect(after.fencingEpoch).toBe(before.fencingEpoch);
    } finally {
      await api.deleteVm({ vmId: vm.vmId }).catch(() => {});
    }
  }, 200_000);

  it('completes with auto-converge: the vCPU was throttled, digests equal', async () => {
    const { api } = t;
    const vm = await api.createVm(hotVm());
    try {
      const pol = policy({ maxBandwidthMibPerSec: BANDWIDTH_MIB_PER_SEC, maxRounds: 30, autoConverge: true, completionTimeoutMs: 150_000 });
      const m = await api.migrateVm({ vmId: vm.vmId, targetNodeId: TARGET, policy: pol });
      const watch = await watchMigration(api, m.migrationId, 170_000);
      expect(watch.ended).toBe(true);
      const done = await waitForFinal(api, m.migrationId, 10_000);
      const throttles = watch.messages.map((x) => x.throttlePercent);
      console.info(
        `auto-converge: ${short(done.phase)} rounds=${done.round} throttle=${[...new Set(throttles)].join(',')} downtime_ms=${done.downtimeMs.toFixed(1)} total_time_ms=${done.totalTimeMs.toFixed(0)} error="${done.error}"`,
      );
      expectCompleted(done, 'with auto-converge');
      expect(Math.max(...throttles), 'throttle_percent reported during pre-copy').toBeGreaterThan(0);
      expect(done.downtimeMs).toBeLessThanOrEqual(pol.downtimeLimitMs!);
      const after = await api.getVm({ vmId: vm.vmId });
      expect(after.nodeId).toBe(TARGET);
      expect(short(after.state)).toBe('RUNNING');
    } finally {
      await api.deleteVm({ vmId: vm.vmId }).catch(() => {});
    }
  }, 200_000);
});
