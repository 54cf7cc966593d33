/**
 * Migration retention in Redis: finding the migrations old enough to be looked at and removing a
 * finished one with everything that indexes it. Migration ids sort by creation time
 * (migration/migration-id.ts), and a migration ends after it was created, so only ids created before
 * the cutoff can have ended before it: the scan reads that prefix of the index and nothing newer.
 */
import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { FINAL_PHASES, toProtoPhase } from '@vmm/migration/phase';
import { migrationIdFloor } from '../migration/migration-id.js';
import type { MigrationRecord } from '../migration/migration-record.js';
import { RecordScript } from './lua-script.js';
import { REMOVE_FINISHED_MIGRATION_LUA } from './lua/retention.lua.js';
import { MigrationRepository } from './migration.repository.js';
import type { RedisKeys } from './redis-keys.js';
import { REDIS, REDIS_KEYS } from './redis.provider.js';

// A record script: the removal is a DELETED event for watchers (WatchEvents).
const removeFinished = new RecordScript('remove-finished-migration', REMOVE_FINISHED_MIGRATION_LUA);
const FINAL = FINAL_PHASES.map(toProtoPhase);

@Injectable()
export class MigrationRetentionRepository {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(REDIS_KEYS) private readonly keys: RedisKeys,
    @Inject(MigrationRepository) private readonly migrations: MigrationRepository,
  ) {}

  /**
   * Up to `limit` migrations created before `createdBeforeMs`, after the id `after` ('' = from the
   * first), in id order; `more` when the index holds further ones before the cutoff, `lastId` the
   * last id read (where the next page starts).
   */
  async createdBefore(createdBeforeMs: number, after: string, limit: number): Promise<{ migrations: MigrationRecord[]; more: boolean; lastId: string }> {
    const bound = `(${migrationIdFloor(createdBeforeMs)}`;
    const ids = await this.redis.zrangebylex(this.keys.migrations(), after ? `(${after}` : '-', bound, 'LIMIT', 0, limit + 1);
    const more = ids.length > limit;
    const page = more ? ids.slice(0, limit) : ids;
    return { migrations: await this.migrations.getMany(page), more, lastId: page.at(-1) ?? after };
  }

  /** Removes a finished migration (see REMOVE_FINISHED_MIGRATION_LUA); false if it is open, not final or gone. */
  async remove(m: Pick<MigrationRecord, 'migrationId' | 'vmId' | 'sourceNodeId' | 'targetNodeId'>): Promise<boolean> {
    const k = this.keys;
    const keys = [
      k.migration(m.migrationId),
      k.migrations(),
      k.vmMigrations(m.vmId),
      k.migrationsOpen(),
      k.migrationsActive(),
      k.migrationsOut(m.sourceNodeId),
      k.migrationsIn(m.targetNodeId),
    ];
    return (await removeFinished.runJson(this.redis, this.keys, keys, { migrationId: m.migrationId, final: FINAL })) === 1;
  }
}
