/**
 * The durable migration queue (BullMQ): one job per migration, jobId = migrationId so a duplicate
 * is dropped. The worker's concurrency is the cluster limit; a job whose node slots are taken goes
 * back to the queue (delayed) instead of holding a worker slot. BullMQ stays inside this file.
 *
 * BullMQ is how passes get scheduled, not what keeps a migration alive: a job it gave up on (stalled
 * too often, failed) is replaced by ensureQueued(), which the orchestrator's sweep calls for every
 * open migration, so any number of controller restarts ends every migration.
 */
import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { DelayedError, Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { LOGGER, type Logger } from '../common/logger.js';
import { CONFIG, type ControllerConfig } from '../config.js';
import { REDIS } from './redis.provider.js';

export const MIGRATION_QUEUE = 'migrations';

interface MigrationJobData {
  migrationId: string;
}

/** What a processing pass asks for: finished, or run again after a delay (waiting for a slot). */
export type JobVerdict = { done: true } | { done: false; retryAfterMs: number };

export type MigrationProcessor = (migrationId: string) => Promise<JobVerdict>;

const JOB_OPTIONS = (migrationId: string) => ({
  jobId: migrationId,
  attempts: 1_000,
  backoff: { type: 'fixed' as const, delay: 1_000 },
  removeOnComplete: 1000,
  removeOnFail: 1000,
});

@Injectable()
export class MigrationQueueRepository implements OnModuleDestroy {
  private readonly queue: Queue<MigrationJobData>;
  private worker: Worker<MigrationJobData> | undefined;
  private workerConnection: Redis | undefined;

  constructor(
    @Inject(CONFIG) private readonly config: ControllerConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(REDIS) redis: Redis,
  ) {
    this.queue = new Queue<MigrationJobData>(MIGRATION_QUEUE, { connection: redis, prefix: config.redisPrefix });
  }

  /** Jobs by BullMQ state (waiting, delayed, active, prioritized): the queue's depth, for /metrics. */
  async depth(): Promise<Record<string, number>> {
    return this.queue.getJobCounts('waiting', 'delayed', 'active', 'prioritized');
  }

  async enqueue(migrationId: string): Promise<void> {
    await this.queue.add('migrate', { migrationId }, JOB_OPTIONS(migrationId));
  }

  /**
   * Makes sure a job will drive the migration: true when it had to queue one (no job, or one that
   * BullMQ has completed or failed), false when a job is waiting, delayed or active already.
   */
  async ensureQueued(migrationId: string): Promise<boolean> {
    const job = await this.queue.getJob(migrationId);
    if (job) {
      const state = await job.getState();
      if (state !== 'completed' && state !== 'failed' && state !== 'unknown') return false;
      await job.remove().catch(() => undefined);
    }
    await this.enqueue(migrationId);
    return true;
  }

  /** Removes a job that has not started (a cancelled PENDING migration); false if it is running or gone. */
  async removeWaiting(migrationId: string): Promise<boolean> {
    const job = await this.queue.getJob(migrationId);
    if (!job) return false;
    const state = await job.getState();
    if (state !== 'waiting' && state !== 'delayed' && state !== 'prioritized') return false;
    await job.remove().catch(() => undefined);
    return true;
  }

  startWorker(processor: MigrationProcessor): void {
    // BullMQ blocks on this connection; it must not retry commands on its own (docs/stack.md §6).
    this.workerConnection = new Redis(this.config.redisUrl, { maxRetriesPerRequest: null });
    this.workerConnection.on('error', (err) => this.logger.warn({ err: err.message }, 'migration worker redis error'));
    this.worker = new Worker<MigrationJobData>(
      MIGRATION_QUEUE,
      async (job: Job<MigrationJobData>, token?: string) => {
        const verdict = await processor(job.data.migrationId);
        if (!verdict.done) {
          await job.moveToDelayed(Date.now() + verdict.retryAfterMs, token);
          throw new DelayedError();
        }
      },
      {
        connection: this.workerConnection,
        prefix: this.config.redisPrefix,
        concurrency: this.config.maxMigrationsCluster,
        // A controller that dies mid-migration: its job is picked up again after the lock expires, as
        // often as it takes (and ensureQueued() replaces a job BullMQ gave up on anyway).
        lockDuration: 5_000,
        stalledInterval: 2_000,
        maxStalledCount: 1_000_000,
      },
    );
    this.worker.on('failed', (job, err) => {
      if (err instanceof DelayedError) return;
      this.logger.error({ migrationId: job?.data.migrationId, err }, 'migration job failed');
    });
    this.worker.on('error', (err) => this.logger.warn({ err: err.message }, 'migration worker error'));
  }

  async onModuleDestroy(): Promise<void> {
    // Running jobs are interrupted: their migrations roll back on the agents when the stream breaks,
    // and the job is taken up again (stalled) by the next controller.
    await this.worker?.close(true).catch(() => undefined);
    await this.queue.close().catch(() => undefined);
    this.workerConnection?.disconnect();
  }
}
