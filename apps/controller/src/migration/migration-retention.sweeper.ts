/**
 * Migration retention (MIGRATION_RETENTION): a periodic sweep removes migrations that ended
 * (COMPLETED, FAILED, CANCELLED) longer ago than the retention, record and indexes, so that Redis
 * does not grow with every migration ever run. GetMigration of a removed one is NOT_FOUND. Open
 * migrations are never touched, however old. Every controller sweeps; the removal is atomic and
 * idempotent, so two sweeps at once only do the work twice.
 */
import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { isFinal } from '@vmm/migration/phase';
import { LOGGER, type Logger } from '../common/logger.js';
import { PeriodicSweep } from '../common/periodic-sweep.js';
import { CONFIG, type ControllerConfig } from '../config.js';
import { MigrationRetentionRepository } from '../redis/migration-retention.repository.js';
import type { MigrationRecord } from './migration-record.js';

/** Migrations read per Redis round trip. */
const PAGE = 200;
/** The sweep runs every half retention, within these bounds (ms): a short retention is honoured within about half of it. */
const MIN_INTERVAL_MS = 500;
const MAX_INTERVAL_MS = 60_000;

/** How often to sweep for a retention of `retentionMs`. */
export function retentionSweepIntervalMs(retentionMs: number): number {
  return Math.min(MAX_INTERVAL_MS, Math.max(MIN_INTERVAL_MS, Math.floor(retentionMs / 2)));
}

/** When a final migration ended: finishedAtMs, else its last phase change, else its creation. */
export function endedAtMs(m: Pick<MigrationRecord, 'finishedAtMs' | 'createdAtMs' | 'transitions'>): number {
  return m.finishedAtMs || m.transitions.at(-1)?.timeMs || m.createdAtMs;
}

@Injectable()
export class MigrationRetentionSweeper implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly sweeps: PeriodicSweep<string>;

  constructor(
    @Inject(CONFIG) private readonly config: ControllerConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(MigrationRetentionRepository) private readonly retention: MigrationRetentionRepository,
  ) {
    this.sweeps = new PeriodicSweep('migration retention', logger);
  }

  onApplicationBootstrap(): void {
    // Immediately too: what expired while no controller ran goes at once.
    this.sweeps.start(retentionSweepIntervalMs(this.config.migrationRetentionMs), () => this.sweep(), true);
  }

  onModuleDestroy(): void {
    this.sweeps.stop();
  }

  /** One pass; returns the ids of the migrations removed. */
  async sweep(nowMs = Date.now()): Promise<string[]> {
    const cutoffMs = nowMs - this.config.migrationRetentionMs;
    return this.sweeps.run(async (removed) => {
      let after = '';
      for (;;) {
        const page = await this.retention.createdBefore(cutoffMs, after, PAGE);
        for (const m of page.migrations) {
          if (!isFinal(m.phase) || endedAtMs(m) > cutoffMs) continue;
          if (await this.retention.remove(m)) removed.push(m.migrationId);
        }
        if (!page.more) break;
        after = page.lastId;
      }
      if (removed.length > 0) this.logger.info({ count: removed.length, retentionMs: this.config.migrationRetentionMs }, 'finished migrations past their retention removed');
    });
  }
}
