// UpdateMigration against real processes (virsh migrate-setmaxdowntime / migrate-setspeed, Nova's
// force-complete). A guest that dirties its whole 64 MiB far faster than a 32 MiB/s cap sends it never
// gets an expected downtime under a 1 ms limit: with max_rounds 10,000 it would run for hours. An
// update raises its bandwidth (recorded, shown by GetMigration), force_complete switches it over at the
// next round, and it completes with equal digests. A finished migration cannot be updated; bad values
// are INVALID_ARGUMENT naming the field; an unknown id is NOT_FOUND.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readStatusDetails } from '@vmm/proto';
import { expectGrpcError, status } from './support/grpc.js';
import { vmRequest } from './support/vms.js';
import { waitFor } from './support/wait-for.js';
import {
  expectCompleted,
  MigrationPhase,
  policy,
  short,
  startMigrationCluster,
  waitForFinal,
  workload,
  WorkloadKind,
  type MigrationTestCluster,
} from './support/migration.js';

const SOURCE = 'node-1';
const TARGET = 'node-2';

let t: MigrationTestCluster;

beforeAll(async () => {
  t = await startMigrationCluster({ agents: 2, reportIntervalMs: 500 });
});

afterAll(async () => {
  await t?.stop();
});

const busyVm = () => vmRequest({ memoryMib: 64, nodeId: SOURCE, workload: workload(WorkloadKind.WORKLOAD_KIND_UNIFORM, 50_000, 64, 13) });

describe('UpdateMigration', () => {
  it('force_complete completes a migration that would not converge; then it is FAILED_PRECONDITION and changes nothing', async () => {
    const { api } = t;
    const vm = await api.createVm(busyVm());
    try {
      const pol = policy({ downtimeLimitMs: 1, maxBandwidthMibPerSec: 32, maxRounds: 10_000, completionTimeoutMs: 600_000 });
      const m = await api.migrateVm({ vmId: vm.vmId, targetNodeId: TARGET, policy: pol });
      const running = await waitFor(
        async () => {
          const x = await api.getMigration({ migrationId: m.migrationId });
          if (x.phase !== MigrationPhase.MIGRATION_PHASE_PRECOPY && x.phase !== MigrationPhase.MIGRATION_PHASE_PREPARING && x.phase !== MigrationPhase.MIGRATION_PHASE_PENDING) {
            throw new Error(`migration left pre-copy on its own: ${short(x.phase)} ${x.error}`);
          }
          return x.phase === MigrationPhase.MIGRATION_PHASE_PRECOPY && x.round >= 2 ? x : undefined;
        },
        60_000,
        'the migration in its third pre-copy round',
      );
      expect(running.expectedDowntimeMs).toBeGreaterThan(1);

      // Bad values on a live migration: INVALID_ARGUMENT naming the field, nothing recorded.
      for (const [request, field] of [
        [{ downtimeLimitMs: 0 }, 'downtime_limit_ms'],
        [{ downtimeLimitMs: 60_001 }, 'downtime_limit_ms'],
        [{ maxBandwidthMibPerSec: -1 }, 'max_bandwidth_mib_per_sec'],
      ] as const) {
        const err = await expectGrpcError(api.updateMigration({ migrationId: m.migrationId, forceComplete: true, ...request }), status.INVALID_ARGUMENT, new RegExp(field));
        expect(readStatusDetails(err)?.badRequest?.fieldViolations.map((v) => v.field)).toEqual([field]);
      }
      expect((await api.getMigration({ migrationId: m.migrationId })).policy).toMatchObject({ downtimeLimitMs: 1, maxBandwidthMibPerSec: 32 });

      // A new bandwidth: recorded, and GetMigration shows it while the migration goes on.
      const faster = await api.updateMigration({ migrationId: m.migrationId, maxBandwidthMibPerSec: 64, forceComplete: false });
      expect(faster.policy).toMatchObject({ downtimeLimitMs: 1, maxBandwidthMibPerSec: 64, maxRounds: 10_000 });
      expect((await api.getMigration({ migrationId: m.migrationId })).policy).toMatchObject({ maxBandwidthMibPerSec: 64 });

      const forced = await api.updateMigration({ migrationId: m.migrationId, forceComplete: true });
      const forcedAtRound = forced.round;
      const done = await waitForFinal(api, m.migrationId, 60_000);
      console.info(
        `force_complete at round ${forcedAtRound}: ${short(done.phase)} rounds=${done.round} downtime_ms=${done.downtimeMs.toFixed(1)} total_time_ms=${done.totalTimeMs.toFixed(0)} error="${done.error}"`,
      );
      expectCompleted(done, 'after force_complete');
      expect(done.sourceDigest).toBe(done.targetDigest);
      // The switch-over came within a round or two of the call, not after thousands of rounds.
      expect(done.round).toBeLessThanOrEqual(forcedAtRound + 3);
      expect(done.policy).toMatchObject({ downtimeLimitMs: 1, maxBandwidthMibPerSec: 64 });
      const after = await api.getVm({ vmId: vm.vmId });
      expect(after.nodeId).toBe(TARGET);
      expect(short(after.state)).toBe('RUNNING');

      // Finished: FAILED_PRECONDITION with its reason, and the record stays as it was.
      const err = await expectGrpcError(
        api.updateMigration({ migrationId: m.migrationId, downtimeLimitMs: 500, forceComplete: true }),
        status.FAILED_PRECONDITION,
        /PRECOPY/,
      );
      expect(readStatusDetails(err)?.errorInfo?.reason).toBe('MIGRATION_NOT_UPDATABLE');
      expect(await api.getMigration({ migrationId: m.migrationId })).toEqual(done);
    } finally {
      await api.deleteVm({ vmId: vm.vmId }).catch(() => {});
    }
  }, 150_000);

  it('NOT_FOUND for an unknown migration, INVALID_ARGUMENT for a missing id', async () => {
    const { api } = t;
    await expectGrpcError(api.updateMigration({ migrationId: 'mig-does-not-exist', forceComplete: true }), status.NOT_FOUND);
    await expectGrpcError(api.updateMigration({ migrationId: '', forceComplete: true }), status.INVALID_ARGUMENT, /migration_id/);
  });
});
