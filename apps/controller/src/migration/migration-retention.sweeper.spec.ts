// Migration retention against a real redis-server: a sweep removes finished migrations older than
// the retention, record and indexes, and leaves open and recent ones.
import { beforeEach, describe, expect, it } from 'vitest';
import { resolvePolicy } from '@vmm/migration/policy';
import { cluster } from '@vmm/proto';
import { createLogger } from '../common/logger.js';
import type { ControllerConfig } from '../config.js';
import { MigrationRetentionRepository } from '../redis/migration-retention.repository.js';
import { MigrationRepository } from '../redis/migration.repository.js';
import { NodeRepository } from '../redis/node.repository.js';
import { PlacementRepository } from '../redis/placement.repository.js';
import { redisKeys, type RedisKeys } from '../redis/redis-keys.js';
import { testVm } from '../testing/records.js';
import { useSpecRedis } from '../testing/redis-spec.fixture.js';
import { newMigrationId } from './migration-id.js';
import { endedAtMs, MigrationRetentionSweeper, retentionSweepIntervalMs } from './migration-retention.sweeper.js';

const HOUR = 3_600_000;
const db = useSpecRedis();
let keys: RedisKeys;
let migrations: MigrationRepository;
let placement: PlacementRepository;
let sweeper: MigrationRetentionSweeper;
let seq = 0;

beforeEach(async () => {
  keys = redisKeys(db.newPrefix());
  const nodes = new NodeRepository(db.redis, keys);
  migrations = new MigrationRepository(db.redis, keys);
  placement = new PlacementRepository(db.redis, keys);
  const config = { migrationRetentionMs: 2 * HOUR } as ControllerConfig;
  sweeper = new MigrationRetentionSweeper(config, createLogger('silent'), new MigrationRetentionRepository(db.redis, keys, migrations));
  for (const nodeId of ['a', 'b']) {
    await nodes.upsertRegistration({ nodeId, address: '127.0.0.1:1', vcpus: 1000, memoryMib: 100_000, cpuAllocationRatio: 1, ramAllocationRatio: 1, agentVersion: '' }, Date.now());
  }
});

/** A migration of a new VM from a to b created at `createdAtMs`, ended `phase` (or left open). */
async function migration(createdAtMs: number, phase: 'FAILED' | 'CANCELLED' | 'OPEN', finishedAtMs = createdAtMs + 1_000): Promise<string> {
  const vm = testVm({ vmId: `vm-${String(++seq).padStart(6, '0')}`, name: `r-${seq}`, nodeId: 'a', state: cluster.VmState.VM_STATE_RUNNING, memoryMib: 64 });
  // Readiness is not what is tested: a node registered in beforeEach stays ready however slow the machine.
  expect(await placement.reserve(vm, Date.now(), HOUR)).toBe('OK');
  const migrationId = newMigrationId(createdAtMs);
  const created = await migrations.create(
    { migrationId, vmId: vm.vmId, targetNodeId: 'b', policy: resolvePolicy(undefined, 64 << 20), reason: 'user', createdAtMs, token: 't' },
    Date.now(),
    HOUR,
  );
  expect(created).toBe('OK');
  if (phase !== 'OPEN') {
    expect(await migrations.rollback({ migrationId, vmId: vm.vmId, targetNodeId: 'b', antiAffinityGroup: '' }, phase, { error: 'x', errorReason: 'X' })).toBe(true);
    await db.redis.hset(keys.migration(migrationId), 'finishedAtMs', String(finishedAtMs));
  }
  expect(await migrations.acquireSlot({ migrationId, sourceNodeId: 'a', targetNodeId: 'b' }, { cluster: 1000, outboundPerNode: 1000, inboundPerNode: 1000 })).toBe('OK');
  return migrationId;
}

describe('MigrationRetentionSweeper', () => {
  it('removes finished migrations past the retention with their indexes, and keeps the rest', async () => {
    const now = Date.now();
    const old = await migration(now - 5 * HOUR, 'FAILED');
    const oldCancelled = await migration(now - 4 * HOUR, 'CANCELLED', now - 3 * HOUR);
    const openOld = await migration(now - 5 * HOUR, 'OPEN');
    // Created long ago, ended within the retention: kept.
    const longRunning = await migration(now - 6 * HOUR, 'FAILED', now - HOUR);
    const recent = await migration(now - HOUR, 'FAILED');
    const oldRecord = (await migrations.get(old))!;
    // Three hours earlier, nothing had ended more than the retention before.
    expect(await sweeper.sweep(now - 3 * HOUR)).toEqual([]);
    expect((await sweeper.sweep(now)).sort()).toEqual([old, oldCancelled].sort());
    expect(await migrations.get(old)).toBeUndefined();
    expect(await migrations.get(openOld)).toBeDefined();
    expect(await migrations.get(recent)).toBeDefined();
    expect(await db.redis.zrange(keys.migrations(), '0', '-1')).toEqual([longRunning, openOld, recent].sort());
    expect(await db.redis.zrange(keys.vmMigrations(oldRecord.vmId), '0', '-1')).toEqual([]);
    expect(await db.redis.smembers(keys.migrationsActive())).not.toContain(old);
    expect(await db.redis.smembers(keys.migrationsOut('a'))).not.toContain(old);
    expect(await db.redis.smembers(keys.migrationsIn('b'))).not.toContain(old);
    // Idempotent: nothing more to remove.
    expect(await sweeper.sweep(now)).toEqual([]);
  });

  it('pages through many old migrations', async () => {
    const now = Date.now();
    const ids: string[] = [];
    for (let i = 0; i < 205; i++) ids.push(await migration(now - 10 * HOUR + i, 'FAILED'));
    expect((await sweeper.sweep(now)).sort()).toEqual(ids.sort());
    expect(await db.redis.zcard(keys.migrations())).toBe(0);
  });

  it('sweeps every half retention within bounds, and dates an end by finishedAtMs first', () => {
    expect(retentionSweepIntervalMs(2_000)).toBe(1_000);
    expect(retentionSweepIntervalMs(100)).toBe(500);
    expect(retentionSweepIntervalMs(7 * 24 * HOUR)).toBe(60_000);
    expect(endedAtMs({ finishedAtMs: 5, createdAtMs: 1, transitions: [{ phase: 'FAILED', timeMs: 4 }] })).toBe(5);
    expect(endedAtMs({ finishedAtMs: 0, createdAtMs: 1, transitions: [{ phase: 'FAILED', timeMs: 4 }] })).toBe(4);
    expect(endedAtMs({ finishedAtMs: 0, createdAtMs: 1, transitions: [] })).toBe(1);
  });
});
