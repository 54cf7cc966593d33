/**
 * Runs one migration end to end, as the BullMQ job of that migration:
 *
 *   PENDING → (slot) → PREPARING: target PrepareIncoming → PRECOPY: source StartOutgoing, progress
 *   written every round → STOP_AND_COPY → the source reports COMMITTING with both digests →
 *   commit in Redis (VM's node + fencing epoch, Lua) → target CommitIncoming → source
 *   ReleaseOutgoing → COMPLETED.
 *
 * Anything before the Redis commit rolls back: AbortMigration on both agents, the target's room
 * given back, the VM RUNNING on the source. Each pass re-reads the migration, so a job taken over
 * after a controller restart either finishes a commit or rolls back.
 */
import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { isFinal } from '@vmm/migration/phase';
import type { agent } from '@vmm/proto';
import { AgentGateway } from '../agent/agent.gateway.js';
import { LOGGER, type Logger } from '../common/logger.js';
import type { NodeRecord } from '../common/model.js';
import { CONFIG, type ControllerConfig } from '../config.js';
import { NodeRepository } from '../redis/node.repository.js';
import { MigrationQueueRepository, type JobVerdict } from '../redis/migration-queue.repository.js';
import { MigrationRepository } from '../redis/migration.repository.js';
import { VmRepository } from '../redis/vm.repository.js';
import { toVmSpec } from '../vm/vm.service.js';
import { fromProtoPhase, PROGRESS_FIELDS, type MigrationRecord } from './migration-record.js';

const SLOT_RETRY_MS = 250;
const SHUTDOWN_REASON = 'the controller shut down during the migration';
const COMMIT_ATTEMPTS = 5;
const COMMIT_RETRY_MS = 1000;
/** Beyond the policy's completion timeout, time for preparing, the last round and verification. */
const STREAM_MARGIN_MS = 60_000;

type Fields = Record<string, string | number>;

export function progressFields(p: agent.MigrationProgress): Fields {
  const fields: Fields = {};
  for (const name of PROGRESS_FIELDS) fields[name] = Number(p[name] ?? 0);
  if (p.sourceDigest) fields.sourceDigest = p.sourceDigest;
  if (p.targetDigest) fields.targetDigest = p.targetDigest;
  if (Number(p.pausedAtMs ?? 0) > 0) fields.pausedAtMs = Number(p.pausedAtMs);
  return fields;
}

@Injectable()
export class MigrationOrchestrator implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly streams = new Map<string, () => void>();
  /** Migrations this process is running right now. */
  private readonly running = new Map<string, MigrationRecord>();
  private shuttingDown = false;

  constructor(
    @Inject(CONFIG) private readonly config: ControllerConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(MigrationRepository) private readonly migrations: MigrationRepository,
    @Inject(MigrationQueueRepository) private readonly queue: MigrationQueueRepository,
    @Inject(NodeRepository) private readonly nodes: NodeRepository,
    @Inject(VmRepository) private readonly vms: VmRepository,
    @Inject(AgentGateway) private readonly agents: AgentGateway,
  ) {}

  onApplicationBootstrap(): void {
    this.queue.startWorker((id) => this.process(id));
  }

  /** One pass of the job. */
  async process(migrationId: string): Promise<JobVerdict> {
    const m = await this.migrations.get(migrationId);
    if (!m || isFinal(m.phase)) return { done: true };
    if (m.phase === 'COMMITTING') {
      if (m.committed) await this.finishCommit(m);
      else await this.rollback(m, 'FAILED', 'commit interrupted');
      await this.migrations.releaseSlot(m);
      return { done: true };
    }
    if (m.phase !== 'PENDING') {
      // In flight when its controller stopped: the agents rolled back when the progress stream broke.
      await this.rollback(m, 'FAILED', 'the controller restarted during the migration');
      await this.migrations.releaseSlot(m);
      return { done: true };
    }
    const slot = await this.migrations.acquireSlot(m, {
      cluster: this.config.maxMigrationsCluster,
      outboundPerNode: this.config.maxMigrationsOutboundPerNode,
      inboundPerNode: this.config.maxMigrationsInboundPerNode,
    });
    if (slot !== 'OK') return { done: false, retryAfterMs: SLOT_RETRY_MS };
    this.running.set(migrationId, m);
    try {
      await this.run(m);
    } finally {
      this.running.delete(migrationId);
      await this.migrations.releaseSlot(m);
    }
    return { done: true };
  }

  /**
   * Graceful shutdown: uncommitted migrations this process runs are rolled back now (the agents
   * roll back too when the stream breaks), so a restarted controller finds them FAILED, not stuck.
   */
  async onModuleDestroy(): Promise<void> {
    const reason = SHUTDOWN_REASON;
    this.shuttingDown = true;
    await Promise.all(
      [...this.running.values()].map(async (m) => {
        this.cancelLocal(m.migrationId);
        const now = await this.migrations.get(m.migrationId).catch(() => undefined);
        if (!now || now.committed || isFinal(now.phase)) return;
        await this.abortAndRollback(m, 'FAILED', reason).catch(() => undefined);
      }),
    );
  }

  /** Stops a stream this process is reading (CancelMigration); the agents are told separately. */
  cancelLocal(migrationId: string): void {
    this.streams.get(migrationId)?.();
  }

  private async run(m: MigrationRecord): Promise<void> {
    const id = m.migrationId;
    const startedAtMs = Date.now();
    if (!(await this.migrations.advance(id, 'PREPARING', { startedAtMs }))) return this.rollback(m, 'FAILED', 'not started');
    const log = this.logger.child({ migrationId: id, vmId: m.vmId, source: m.sourceNodeId, target: m.targetNodeId });
    log.info('migration started');
    try {
      const [vm, source, target] = await Promise.all([this.vms.get(m.vmId), this.nodes.get(m.sourceNodeId), this.nodes.get(m.targetNodeId)]);
      if (!vm || !source || !target) return await this.rollback(m, 'FAILED', 'the vm or a node disappeared');
      const { dataAddress } = await this.agents.prepareIncoming(target, { migrationId: id, spec: toVmSpec(vm), token: m.token });
      if (!(await this.migrations.advance(id, 'PRECOPY'))) return await this.abortAndRollback(m, 'FAILED', 'cancelled while preparing');
      const deadlineMs = (m.policy.completionTimeoutMs || 120_000) + STREAM_MARGIN_MS;
      let markReady: (p: agent.MigrationProgress) => void = () => undefined;
      const ready = new Promise<agent.MigrationProgress>((resolve) => (markReady = resolve));
      const outgoing = this.agents.startOutgoing(
        source,
        { migrationId: id, vmId: m.vmId, targetDataAddress: dataAddress, token: m.token, policy: m.policy },
        deadlineMs,
        async (p) => {
          if (fromProtoPhase(p.phase) !== 'COMMITTING') await this.onProgress(id, p);
        },
        (p) => {
          if (fromProtoPhase(p.phase) === 'COMMITTING') markReady(p);
        },
      );
      this.streams.set(id, outgoing.cancel);
      let last: agent.MigrationProgress | undefined;
      try {
        // Commit as soon as the source reports a verified copy: the VM is paused until the target resumes it.
        last = await Promise.race([outgoing.done, ready]);
      } finally {
        this.streams.delete(id);
      }
      outgoing.done.catch(() => undefined);
      const phase = last ? fromProtoPhase(last.phase) : undefined;
      if (!last || phase !== 'COMMITTING') {
        const error = last?.error || `the source ended the migration in ${phase ?? 'no phase'}`;
        return await this.abortAndRollback(m, phase === 'CANCELLED' ? 'CANCELLED' : 'FAILED', error);
      }
      if (!last.sourceDigest || last.sourceDigest !== last.targetDigest) {
        return await this.abortAndRollback(m, 'FAILED', `digest mismatch: source ${last.sourceDigest || '-'} target ${last.targetDigest || '-'}`);
      }
      const fields = progressFields(last);
      const readyAtMs = Date.now();
      const epoch = await this.migrations.commit(m, fields);
      if (epoch === 0) return await this.abortAndRollback(m, 'FAILED', 'cancelled before the commit');
      log.info({ fencingEpoch: epoch, sourceDowntimeMs: last.downtimeMs, pausedForMsAtReady: readyAtMs - Number(fields.pausedAtMs ?? readyAtMs), commitMs: Date.now() - readyAtMs }, 'migration committed');
      await this.finishCommit({ ...m, fencingEpoch: epoch, pausedAtMs: Number(fields.pausedAtMs ?? 0) }, source, target);
    } catch (error) {
      log.warn({ err: error }, 'migration failed');
      const reason = this.shuttingDown ? SHUTDOWN_REASON : error instanceof Error ? error.message : String(error);
      await this.abortAndRollback(m, 'FAILED', reason);
    }
  }

  private async onProgress(id: string, p: agent.MigrationProgress): Promise<void> {
    const phase = fromProtoPhase(p.phase);
    if (phase === 'PRECOPY' || phase === 'STOP_AND_COPY') await this.migrations.advance(id, phase, progressFields(p), true);
  }

  /** After the Redis commit: the target resumes the VM, the source destroys its copy. Idempotent. */
  private async finishCommit(m: MigrationRecord, knownSource?: NodeRecord, knownTarget?: NodeRecord): Promise<void> {
    const id = m.migrationId;
    const [source, target] =
      knownSource && knownTarget ? [knownSource, knownTarget] : await Promise.all([this.nodes.get(m.sourceNodeId), this.nodes.get(m.targetNodeId)]);
    let resumedAtMs = 0;
    let lastError = 'target node is gone';
    for (let attempt = 0; target && attempt < COMMIT_ATTEMPTS; attempt++) {
      try {
        resumedAtMs = Number((await this.agents.commitIncoming(target, { migrationId: id, fencingEpoch: m.fencingEpoch })).resumedAtMs);
        lastError = '';
        break;
      } catch (error) {
        lastError = error instanceof Error ? error.message : String(error);
        await new Promise((r) => setTimeout(r, COMMIT_RETRY_MS));
      }
    }
    if (lastError) {
      // Past the point of no return: the VM belongs to the target, which did not resume it.
      this.logger.error({ migrationId: id, err: lastError }, 'committed migration: target did not resume the vm');
      await this.vms.setFields(m.vmId, { state: 'VM_STATE_FAILED' });
      await this.migrations.advance(id, 'FAILED', { error: `committed, but the target did not resume the vm: ${lastError}`, finishedAtMs: Date.now() });
      return;
    }
    if (source) {
      await this.agents
        .releaseOutgoing(source, { migrationId: id, vmId: m.vmId, fencingEpoch: m.fencingEpoch })
        .catch((error: unknown) => this.logger.warn({ migrationId: id, err: error }, 'source did not release its copy (it is fenced)'));
    }
    const now = Date.now();
    const fields: Fields = { finishedAtMs: now, totalTimeMs: now - (m.createdAtMs || now) };
    if (resumedAtMs > 0 && m.pausedAtMs > 0) fields.downtimeMs = Math.max(0, resumedAtMs - m.pausedAtMs);
    await this.migrations.finishVm(m.vmId, id);
    await this.migrations.advance(id, 'COMPLETED', fields);
    this.logger.info({ migrationId: id, vmId: m.vmId, target: m.targetNodeId, downtimeMs: fields.downtimeMs, resumedAtMs }, 'migration completed');
  }

  private async abortAndRollback(m: MigrationRecord, phase: 'FAILED' | 'CANCELLED', error: string): Promise<void> {
    await this.abortAgents(m, error);
    await this.rollback(m, phase, error);
  }

  /** Best effort: both ends roll back on their own when the stream breaks, too. */
  async abortAgents(m: MigrationRecord, reason: string): Promise<void> {
    const [source, target] = await Promise.all([this.nodes.get(m.sourceNodeId), this.nodes.get(m.targetNodeId)]);
    await Promise.all(
      [source, target].map((node) =>
        node
          ? this.agents.abortMigration(node, { migrationId: m.migrationId, reason }).catch((error: unknown) => {
              this.logger.warn({ migrationId: m.migrationId, nodeId: node.nodeId, err: error }, 'AbortMigration failed');
            })
          : undefined,
      ),
    );
  }

  private async rollback(m: MigrationRecord, phase: 'FAILED' | 'CANCELLED', error: string): Promise<void> {
    await this.migrations.rollback(m, phase, error);
    this.logger.warn({ migrationId: m.migrationId, vmId: m.vmId, phase, error }, 'migration rolled back');
  }
}
