/**
 * Migration records in Redis: creation with the target's room reserved, compare-and-set phase
 * changes, the switch-over commit, rollback, in-flight slots, and change events for watchers.
 */
import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import type { MigrationPhase } from '@vmm/migration/phase';
import { hashToMigration, phasesLeadingTo, toProtoPhase, type MigrationRecord } from '../migration/migration-record.js';
import { LuaScript } from './lua-script.js';
import {
  ACQUIRE_SLOT_LUA,
  ADVANCE_MIGRATION_LUA,
  COMMIT_MIGRATION_LUA,
  CREATE_MIGRATION_LUA,
  ROLLBACK_MIGRATION_LUA,
} from './lua/migration.lua.js';
import type { RedisKeys } from './redis-keys.js';
import { REDIS, REDIS_KEYS } from './redis.provider.js';

export type CreateMigrationOutcome =
  | 'OK'
  | 'NO_VM'
  | 'VM_MIGRATING'
  | 'VM_NOT_RUNNING'
  | 'SAME_NODE'
  | 'NO_NODE'
  | 'CORDONED'
  | 'DRAINING'
  | 'NOT_READY'
  | 'NO_VCPUS'
  | 'NO_MEMORY'
  | 'ANTI_AFFINITY';

export type SlotOutcome = 'OK' | 'CLUSTER' | 'OUTBOUND' | 'INBOUND';

export interface SlotLimits {
  cluster: number;
  outboundPerNode: number;
  inboundPerNode: number;
}

const createMigration = new LuaScript('create-migration', CREATE_MIGRATION_LUA);
const advanceMigration = new LuaScript('advance-migration', ADVANCE_MIGRATION_LUA);
const commitMigration = new LuaScript('commit-migration', COMMIT_MIGRATION_LUA);
const rollbackMigration = new LuaScript('rollback-migration', ROLLBACK_MIGRATION_LUA);
const acquireSlot = new LuaScript('acquire-slot', ACQUIRE_SLOT_LUA);

type Fields = Record<string, string | number>;

@Injectable()
export class MigrationRepository {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(REDIS_KEYS) private readonly keys: RedisKeys,
  ) {}

  /** Creates a PENDING migration, reserving the target's room and marking the VM MIGRATING, atomically. */
  async create(
    m: Pick<MigrationRecord, 'migrationId' | 'vmId' | 'targetNodeId' | 'policy' | 'reason' | 'createdAtMs' | 'token'>,
    nowMs: number,
    staleAfterMs: number,
  ): Promise<CreateMigrationOutcome> {
    const k = this.keys;
    const fields: Fields = {
      migrationId: m.migrationId,
      vmId: m.vmId,
      targetNodeId: m.targetNodeId,
      phase: toProtoPhase('PENDING'),
      policy: JSON.stringify(m.policy),
      reason: m.reason,
      createdAtMs: m.createdAtMs,
      finishedAtMs: 0,
      token: m.token,
      committed: '0',
    };
    const keys = [k.vm(m.vmId), k.migration(m.migrationId), k.migrations(), k.vmMigrations(m.vmId)];
    const args = [m.migrationId, m.vmId, m.targetNodeId, k.prefix, nowMs, staleAfterMs, ...Object.entries(fields).flat()];
    return (await createMigration.run(this.redis, keys, args)) as CreateMigrationOutcome;
  }

  async get(migrationId: string): Promise<MigrationRecord | undefined> {
    return hashToMigration(await this.redis.hgetall(this.keys.migration(migrationId)));
  }

  async listPage(after: string, limit: number, vmId: string): Promise<{ migrations: MigrationRecord[]; more: boolean }> {
    const index = vmId ? this.keys.vmMigrations(vmId) : this.keys.migrations();
    const ids = await this.redis.zrangebylex(index, after ? `(${after}` : '-', '+', 'LIMIT', 0, limit + 1);
    const more = ids.length > limit;
    const page = more ? ids.slice(0, limit) : ids;
    if (page.length === 0) return { migrations: [], more: false };
    const pipeline = this.redis.pipeline();
    for (const id of page) pipeline.hgetall(this.keys.migration(id));
    const migrations: MigrationRecord[] = [];
    for (const [error, hash] of (await pipeline.exec()) ?? []) {
      if (error) throw error;
      const m = hashToMigration(hash as Record<string, string>);
      if (m) migrations.push(m);
    }
    return { migrations, more };
  }

  /** Every migration of one VM, oldest first. */
  async listForVm(vmId: string): Promise<MigrationRecord[]> {
    const all: MigrationRecord[] = [];
    let after = '';
    for (;;) {
      const page = await this.listPage(after, 500, vmId);
      all.push(...page.migrations);
      const last = page.migrations.at(-1);
      if (!page.more || !last) return all;
      after = last.migrationId;
    }
  }

  /**
   * Moves to `to` if allowed from the current phase by the shared phase model (or stays in `to`
   * when `allowSame`), writing `fields` with it. False if the phase moved elsewhere meanwhile.
   */
  async advance(migrationId: string, to: MigrationPhase, fields: Fields = {}, allowSame = false): Promise<boolean> {
    const from = phasesLeadingTo(to, allowSame).join(',');
    const args = [toProtoPhase(to), from, ...Object.entries(fields).flat()];
    const keys = [this.keys.migration(migrationId), this.keys.migrationEvents(migrationId)];
    return (await advanceMigration.run(this.redis, keys, args)) === 1;
  }

  /**
   * The switch-over commit (see COMMIT_MIGRATION_LUA); the new fencing epoch, or 0 if not
   * committable. On the downtime's critical path: one script (which also tells watchers).
   */
  async commit(m: Pick<MigrationRecord, 'migrationId' | 'vmId'>, fields: Fields): Promise<number> {
    const keys = [this.keys.migration(m.migrationId), this.keys.vm(m.vmId), this.keys.migrationEvents(m.migrationId)];
    return Number(await commitMigration.run(this.redis, keys, [this.keys.prefix, ...Object.entries(fields).flat()]));
  }

  /** Ends an uncommitted migration (see ROLLBACK_MIGRATION_LUA). Idempotent. */
  async rollback(m: Pick<MigrationRecord, 'migrationId' | 'vmId'>, phase: 'FAILED' | 'CANCELLED', error: string): Promise<void> {
    const keys = [this.keys.migration(m.migrationId), this.keys.vm(m.vmId), this.keys.migrationEvents(m.migrationId)];
    await rollbackMigration.run(this.redis, keys, [this.keys.prefix, toProtoPhase(phase), error, Date.now()]);
  }

  /** After a commit: the VM runs on the target again. */
  async finishVm(vmId: string, migrationId: string): Promise<void> {
    const key = this.keys.vm(vmId);
    const current = await this.redis.hget(key, 'migrationId');
    if (current !== migrationId) return;
    await this.redis.multi().hset(key, 'state', 'VM_STATE_RUNNING').hdel(key, 'migrationId').exec();
  }

  async acquireSlot(m: Pick<MigrationRecord, 'migrationId' | 'sourceNodeId' | 'targetNodeId'>, limits: SlotLimits): Promise<SlotOutcome> {
    const k = this.keys;
    const keys = [k.migrationsActive(), k.migrationsOut(m.sourceNodeId), k.migrationsIn(m.targetNodeId)];
    const args = [m.migrationId, limits.cluster, limits.outboundPerNode, limits.inboundPerNode];
    return (await acquireSlot.run(this.redis, keys, args)) as SlotOutcome;
  }

  async releaseSlot(m: Pick<MigrationRecord, 'migrationId' | 'sourceNodeId' | 'targetNodeId'>): Promise<void> {
    const k = this.keys;
    await this.redis
      .multi()
      .srem(k.migrationsActive(), m.migrationId)
      .srem(k.migrationsOut(m.sourceNodeId), m.migrationId)
      .srem(k.migrationsIn(m.targetNodeId), m.migrationId)
      .exec();
  }
}
