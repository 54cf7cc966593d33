/**
 * Drives every migration to an end, level-triggered: each pass re-reads the migration, asks
 * nextStep() (migration-steps.ts) what to do from its recorded phase, carries that out (each side
 * effect idempotent) and asks again. A BullMQ job per migration runs the passes; a sweep re-queues any
 * open migration that no job drives (a job BullMQ gave up on, a controller restarted any number of
 * times), so nothing depends on BullMQ's stall count.
 *
 *   PENDING → (slot) → PREPARING: target PrepareIncoming → PRECOPY: source StartOutgoing, progress
 *   written every round → STOP_AND_COPY (a source that holds there, QEMU's, goes on only on
 *   ContinueSwitchover, once STOP_AND_COPY is recorded) → the source reports COMMITTING with both digests →
 *   commit in Redis (the VM's node and epoch N+1, atomically) → target CommitIncoming(N+1) →
 *   source ReleaseOutgoing(N+1) → COMPLETED.
 *
 * Decisions are written to Redis before any agent is told: a rollback (Redis first, so that nothing
 * commits after it) before the agents resume the source at N; a commit before the target resumes; a
 * revert (the target lost its copy before resuming it) before the source resumes at N+2. An error
 * after the commit never rolls back: the pass is retried until the commit completes or is reverted.
 */
import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { fromProtoPhase } from '@vmm/migration/phase';
import { streamDeadlineMs } from '@vmm/migration/policy';
import type { agent } from '@vmm/proto';
import { AgentGateway } from '../agent/agent.gateway.js';
import { LOGGER, type Logger } from '../common/logger.js';
import { PeriodicSweep } from '../common/periodic-sweep.js';
import { CONFIG, type ControllerConfig } from '../config.js';
import { AgentRejectedError, AgentUnavailableError } from '../errors.js';
import { MigrationQueueRepository, type JobVerdict } from '../redis/migration-queue.repository.js';
import { MigrationRepository, type Fields, type Outcome } from '../redis/migration.repository.js';
import { NodeRepository } from '../redis/node.repository.js';
import { VmRepository } from '../redis/vm.repository.js';
import { isNodeReadySince } from '../node/node-state.js';
import type { NodeRecord } from '../common/model.js';
import { toVmSpec } from '../vm/vm.service.js';
import { PROGRESS_FIELDS, type MigrationRecord } from './migration-record.js';
import { afterCommitAttempt, afterStream, FAILURE_REASONS, nextStep, switchoverVerdict, type SourceVerdict, type SwitchoverVerdict } from './migration-steps.js';

const SLOT_RETRY_MS = 250;
/** After a pass failed on an unexpected error (Redis down, a bug): wait, then re-read and go on. */
const PASS_RETRY_MS = 1_000;
/** The sweep that re-queues open migrations no job drives, and frees stranded slots. */
const RESYNC_INTERVAL_MS = 5_000;
/** Telling agents about a final outcome: a few tries, then the reports' reconcile takes over. */
const SETTLE_ATTEMPTS = 3;
const SETTLE_RETRY_MS = 300;
/** How long shutdown waits for the passes of this process to reach a safe point. */
const SHUTDOWN_WAIT_MS = 3_000;

export function progressFields(p: agent.MigrationProgress): Fields {
  const fields: Fields = {};
  for (const name of PROGRESS_FIELDS) fields[name] = Number(p[name] ?? 0);
  if (p.sourceDigest) fields.sourceDigest = p.sourceDigest;
  if (p.targetDigest) fields.targetDigest = p.targetDigest;
  if (Number(p.pausedAtMs ?? 0) > 0) fields.pausedAtMs = Number(p.pausedAtMs);
  return fields;
}

function verdictOf(p: agent.MigrationProgress | undefined): SourceVerdict {
  const phase = p ? fromProtoPhase(p.phase) : undefined;
  return {
    phase: phase === 'COMMITTING' || phase === 'FAILED' || phase === 'CANCELLED' ? phase : 'NONE',
    lastPhase: phase ?? '',
    sourceDigest: p?.sourceDigest ?? '',
    targetDigest: p?.targetDigest ?? '',
    error: p?.error ?? '',
    errorReason: p?.errorReason ?? '',
  };
}

/** The final phase of a migration whose held switch-over was refused. */
function refusedPhase(v: { errorReason: string }): 'FAILED' | 'CANCELLED' {
  return v.errorReason === FAILURE_REASONS.CANCELLED ? 'CANCELLED' : 'FAILED';
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The stable reason of an agent call's failure. */
function reasonOf(error: unknown): string {
  if (error instanceof AgentUnavailableError) return FAILURE_REASONS.AGENT_UNAVAILABLE;
  if (error instanceof AgentRejectedError) return FAILURE_REASONS.AGENT_REJECTED;
  return FAILURE_REASONS.INTERNAL;
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

@Injectable()
export class MigrationOrchestrator implements OnApplicationBootstrap, OnModuleDestroy {
  /** Cancels of the progress streams this process holds. */
  private readonly streams = new Map<string, () => void>();
  /** Migrations whose source stream this process started: without it PRECOPY means another process started it. */
  private readonly streamed = new Set<string>();
  /** Migrations a pass of this process drives right now (one at a time each). */
  private readonly running = new Set<string>();
  private readonly resyncs: PeriodicSweep<string>;
  private shuttingDown = false;

  constructor(
    @Inject(CONFIG) private readonly config: ControllerConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(MigrationRepository) private readonly migrations: MigrationRepository,
    @Inject(MigrationQueueRepository) private readonly queue: MigrationQueueRepository,
    @Inject(NodeRepository) private readonly nodes: NodeRepository,
    @Inject(VmRepository) private readonly vms: VmRepository,
    @Inject(AgentGateway) private readonly agents: AgentGateway,
  ) {
    this.resyncs = new PeriodicSweep('migration resync', logger);
  }

  onApplicationBootstrap(): void {
    this.queue.startWorker((id) => this.process(id));
    this.resyncs.start(RESYNC_INTERVAL_MS, () => this.resync(), true);
  }

  /**
   * Shutdown: streams this process holds are cancelled (a source still sending rolls back; a ready one
   * waits for a decision), and passes stop at their next step. Migrations before the commit roll back
   * now; the next controller finishes committed ones.
   */
  async onModuleDestroy(): Promise<void> {
    this.shuttingDown = true;
    this.resyncs.stop();
    for (const cancel of this.streams.values()) cancel();
    const deadline = Date.now() + SHUTDOWN_WAIT_MS;
    while (this.running.size > 0 && Date.now() < deadline) await delay(20);
  }

  /** One BullMQ job run: drives the migration until it is final (or shutdown). */
  async process(migrationId: string): Promise<JobVerdict> {
    // A job delivered twice (BullMQ took it for stalled while this process was frozen): one pass at a time.
    if (this.running.has(migrationId)) return { done: true };
    this.running.add(migrationId);
    try {
      return await this.drive(migrationId);
    } finally {
      this.running.delete(migrationId);
    }
  }

  /** Stops a stream this process is reading (CancelMigration); the agents are told separately. */
  cancelLocal(migrationId: string): void {
    this.streams.get(migrationId)?.();
  }

  private async drive(id: string): Promise<JobVerdict> {
    for (;;) {
      if (this.shuttingDown) return { done: false, retryAfterMs: PASS_RETRY_MS };
      try {
        const m = await this.migrations.get(id);
        if (!m) return { done: true };
        const step = nextStep(m, this.streamed.has(id));
        switch (step.kind) {
          case 'admit':
            if (!(await this.admit(m))) return { done: false, retryAfterMs: SLOT_RETRY_MS };
            break;
          case 'prepare-target':
            await this.prepareTarget(m);
            break;
          case 'stream':
            await this.stream(m);
            break;
          case 'reattach':
            await this.reattach(m);
            break;
          case 'commit-target': {
            const waitMs = await this.commitTarget(m);
            if (waitMs > 0) await delay(waitMs);
            break;
          }
          case 'complete':
            await this.complete(m);
            break;
          case 'settle':
            await this.settle(m);
            this.streamed.delete(id);
            return { done: true };
        }
      } catch (error) {
        // Never a rollback here: after the commit only completing or reverting is allowed, and before
        // it the next pass decides from the record. Redis or an agent may be back by then.
        this.logger.warn({ migrationId: id, err: describe(error) }, 'migration pass failed; retrying');
        await delay(PASS_RETRY_MS);
      }
    }
  }

  private async admit(m: MigrationRecord): Promise<boolean> {
    const slot = await this.migrations.acquireSlot(m, {
      cluster: this.config.maxMigrationsCluster,
      outboundPerNode: this.config.maxMigrationsOutboundPerNode,
      inboundPerNode: this.config.maxMigrationsInboundPerNode,
    });
    if (slot !== 'OK') return false;
    await this.migrations.advance(m.migrationId, 'PREPARING', { startedAtMs: Date.now() });
    return true;
  }

  private async prepareTarget(m: MigrationRecord): Promise<void> {
    const [vm, target] = await Promise.all([this.vms.get(m.vmId), this.nodes.get(m.targetNodeId)]);
    if (!vm || !target) return this.rollback(m, 'FAILED', { error: 'the vm or its target node disappeared', errorReason: FAILURE_REASONS.VM_GONE });
    let dataAddress: string;
    try {
      ({ dataAddress } = await this.agents.prepareIncoming(target, { migrationId: m.migrationId, spec: toVmSpec(vm), token: m.token, sourceNodeId: m.sourceNodeId, policy: m.policy }));
    } catch (error) {
      return this.rollback(m, 'FAILED', { error: describe(error), errorReason: reasonOf(error) });
    }
    // This process streams it from here on; another process finding it in PRECOPY re-attaches instead.
    this.streamed.add(m.migrationId);
    await this.migrations.advance(m.migrationId, 'PRECOPY', { dataAddress });
  }

  /** Streams the VM from its source; ends in a commit or a rollback. */
  private async stream(m: MigrationRecord): Promise<void> {
    const id = m.migrationId;
    // One attempt per process: whatever happens below ends in a commit or a rollback.
    this.streamed.delete(id);
    const [vm, source] = await Promise.all([this.vms.get(m.vmId), this.nodes.get(m.sourceNodeId)]);
    if (!vm || !source) return this.rollback(m, 'FAILED', { error: 'the vm or its source node disappeared', errorReason: FAILURE_REASONS.VM_GONE });
    let markReady: (p: agent.MigrationProgress) => void = () => undefined;
    const ready = new Promise<agent.MigrationProgress>((resolve) => (markReady = resolve));
    // Why this process refused a held switch-over (the stream is cancelled then): the rollback's reason.
    let refused: { error: string; errorReason: string } | undefined;
    const outgoing = this.agents.startOutgoing(
      source,
      { migrationId: id, vmId: m.vmId, targetDataAddress: m.dataAddress, token: m.token, policy: m.policy, reattach: false, targetNodeId: m.targetNodeId, gateSwitchover: true },
      streamDeadlineMs(m.policy, vm.memoryMib * 1024 * 1024),
      async (p) => {
        const phase = fromProtoPhase(p.phase);
        if (phase === 'PRECOPY') await this.migrations.update(id, 'PRECOPY', progressFields(p));
        // A held switch-over is recorded by allowSwitchover(), before the source goes on.
        else if (phase === 'STOP_AND_COPY' && !p.awaitingSwitchover) await this.migrations.advance(id, 'STOP_AND_COPY', progressFields(p), true);
      },
      (p) => {
        const phase = fromProtoPhase(p.phase);
        if (phase === 'COMMITTING') markReady(p);
        else if (phase === 'STOP_AND_COPY' && p.awaitingSwitchover) {
          void this.allowSwitchover(m, source, p).then(async (verdict) => {
            if (verdict.kind === 'continue') return;
            refused = verdict;
            // Redis first (nothing commits after it), then the source hears of it: its stream ends.
            await this.rollback(m, refusedPhase(verdict), verdict).catch((error: unknown) => this.logger.warn({ migrationId: id, err: describe(error) }, 'rollback of a refused switch-over failed; the pass retries'));
            outgoing.cancel();
          });
        }
      },
    );
    this.streams.set(id, outgoing.cancel);
    let last: agent.MigrationProgress | undefined;
    let failure: unknown;
    try {
      // Commit as soon as the source reports a verified copy: the VM is paused until the target resumes it.
      last = await Promise.race([outgoing.done, ready]);
    } catch (error) {
      failure = error;
    } finally {
      this.streams.delete(id);
    }
    outgoing.done.catch(() => undefined);
    if (failure !== undefined) {
      if (refused) return this.rollback(m, refusedPhase(refused), refused);
      if (this.shuttingDown) return this.rollback(m, 'FAILED', { error: 'the controller shut down during the migration', errorReason: FAILURE_REASONS.SHUTDOWN });
      return this.rollback(m, 'FAILED', { error: describe(failure), errorReason: reasonOf(failure) });
    }
    await this.decide(m, verdictOf(last), last);
  }

  /**
   * The answer to a source holding at the switch-over, its guest stopped: STOP_AND_COPY recorded first
   * (nothing ended the migration meanwhile), the target READY, then ContinueSwitchover. On the downtime's
   * critical path: one Redis script and one call. Anything else is a refusal (the stream is cancelled,
   * the source runs on); a source that hears nothing gives up by itself after its hold.
   */
  private async allowSwitchover(m: MigrationRecord, source: NodeRecord, p: agent.MigrationProgress): Promise<SwitchoverVerdict> {
    try {
      const [recorded, target] = await Promise.all([this.migrations.advance(m.migrationId, 'STOP_AND_COPY', progressFields(p), true), this.nodes.get(m.targetNodeId)]);
      const ready = target !== undefined && isNodeReadySince(target, Date.now(), this.config.nodeStaleAfterMs, this.config.startedAtMs);
      const verdict = switchoverVerdict(recorded, m.targetNodeId, ready);
      if (verdict.kind === 'refuse') {
        this.logger.warn({ migrationId: m.migrationId, vmId: m.vmId, ...verdict }, 'switch-over refused; the source runs on');
        return verdict;
      }
      await this.agents.continueSwitchover(source, { migrationId: m.migrationId, vmId: m.vmId });
      return verdict;
    } catch (error) {
      this.logger.warn({ migrationId: m.migrationId, err: describe(error) }, 'switch-over not continued; the source runs on');
      return { kind: 'refuse', error: `the switch-over could not be continued: ${describe(error)}`, errorReason: reasonOf(error) };
    }
  }

  /** A PRECOPY/STOP_AND_COPY migration this process did not start: commit a verified copy the source holds, else roll back. */
  private async reattach(m: MigrationRecord): Promise<void> {
    const source = await this.nodes.get(m.sourceNodeId);
    let last: agent.MigrationProgress | undefined;
    try {
      if (!source) throw new Error('the source node disappeared');
      const request = { migrationId: m.migrationId, vmId: m.vmId, targetDataAddress: m.dataAddress || '127.0.0.1:1', token: m.token, policy: m.policy, reattach: true, targetNodeId: m.targetNodeId, gateSwitchover: true };
      last = await this.agents.startOutgoing(source, request, 10_000, async () => undefined).done;
    } catch (error) {
      this.logger.info({ migrationId: m.migrationId, err: describe(error) }, 'no verified copy to re-attach to');
    }
    const verdict = verdictOf(last);
    if (verdict.phase !== 'COMMITTING') {
      return this.rollback(m, 'FAILED', { error: 'the controller restarted during the migration', errorReason: FAILURE_REASONS.CONTROLLER_RESTARTED });
    }
    this.logger.info({ migrationId: m.migrationId }, 're-attached to a verified source after a controller restart');
    await this.decide(m, verdict, last);
  }

  /** The source's verdict: commit a verified copy, or roll back. */
  private async decide(m: MigrationRecord, verdict: SourceVerdict, last?: agent.MigrationProgress): Promise<void> {
    const next = afterStream(verdict);
    if (next.kind === 'rollback') return this.rollback(m, next.phase, next);
    const fields = last ? progressFields(last) : {};
    const epoch = await this.migrations.commit(m, { ...fields, sourceDigest: verdict.sourceDigest, targetDigest: verdict.targetDigest });
    if (epoch > 0) {
      this.logger.info({ migrationId: m.migrationId, vmId: m.vmId, fencingEpoch: epoch }, 'migration committed');
      return;
    }
    // Not committable: cancelled or failed meanwhile (the next pass settles it), or the record no longer fits.
    const now = await this.migrations.get(m.migrationId);
    if (now && !now.committedAtMs && now.phase !== 'FAILED' && now.phase !== 'CANCELLED') {
      await this.rollback(now, 'FAILED', { error: 'the commit was refused: the vm record changed', errorReason: FAILURE_REASONS.INTERNAL });
    }
  }

  /** COMMITTING: CommitIncoming at N+1 until the target resumed; a target that lost its copy is reverted. Returns ms to wait. */
  private async commitTarget(m: MigrationRecord): Promise<number> {
    const target = await this.nodes.get(m.targetNodeId);
    const attempt = await this.agents.attemptCommit(target, { migrationId: m.migrationId, fencingEpoch: m.fencingEpoch, vmId: m.vmId });
    const next = afterCommitAttempt(attempt, target?.lastReportMs ?? 0, Date.now(), this.config.nodeLeaseMs);
    if (next.kind === 'retry') return next.afterMs;
    if (next.kind === 'resumed') {
      await this.migrations.markTargetResumed(m, next.resumedAtMs);
      return 0;
    }
    const epoch = await this.migrations.revert(m, { error: `committed, but the target lost the vm before resuming it: ${next.detail}`, errorReason: FAILURE_REASONS.TARGET_LOST }, next.silentBeforeMs);
    if (epoch > 0) this.logger.warn({ migrationId: m.migrationId, vmId: m.vmId, fencingEpoch: epoch, detail: next.detail }, 'commit reverted: the source resumes its verified copy');
    return epoch > 0 ? 0 : 500;
  }

  /** The target runs the VM: release the source (a copy it keeps is fenced, and destroyed through its reports), then COMPLETED. */
  private async complete(m: MigrationRecord): Promise<void> {
    const source = await this.nodes.get(m.sourceNodeId);
    if (source) {
      await this.agents
        .releaseOutgoing(source, { migrationId: m.migrationId, vmId: m.vmId, fencingEpoch: m.fencingEpoch })
        .catch((error: unknown) => this.logger.warn({ migrationId: m.migrationId, err: describe(error) }, 'source did not release its copy (it is fenced; its reports will)'));
    }
    const now = Date.now();
    const fields: Fields = { finishedAtMs: now, totalTimeMs: now - (m.createdAtMs || now) };
    if (m.targetResumedAtMs > 0 && m.pausedAtMs > 0) fields.downtimeMs = Math.max(0, m.targetResumedAtMs - m.pausedAtMs);
    if (await this.migrations.complete(m, fields)) {
      this.logger.info({ migrationId: m.migrationId, vmId: m.vmId, target: m.targetNodeId, downtimeMs: fields.downtimeMs }, 'migration completed');
    }
  }

  /** Before the commit: Redis first (nothing commits after it), then the agents are told in settle(). */
  private async rollback(m: MigrationRecord, phase: 'FAILED' | 'CANCELLED', outcome: Outcome): Promise<void> {
    if (await this.migrations.rollback(m, phase, outcome)) {
      this.logger.warn({ migrationId: m.migrationId, vmId: m.vmId, phase, ...outcome }, 'migration rolled back');
    }
  }

  /**
   * A final migration: its slot goes back, and the agents hear what Redis says (the source resumes at
   * the VM's epoch, the target discards), a few times; after that, the agents' reports reconcile.
   */
  private async settle(m: MigrationRecord): Promise<void> {
    await this.migrations.releaseSlot(m);
    if (m.phase === 'COMPLETED') return;
    const epoch = m.revertedEpoch || m.sourceEpoch;
    await this.tellAgents(m, `the migration ${m.phase === 'CANCELLED' ? 'was cancelled' : 'failed'}: ${m.error}`, epoch);
  }

  /** AbortMigration to both ends (resume the source at `epoch`, discard the target), retried a little. */
  async tellAgents(m: Pick<MigrationRecord, 'migrationId' | 'sourceNodeId' | 'targetNodeId'>, reason: string, epoch: number): Promise<void> {
    const [source, target] = await Promise.all([this.nodes.get(m.sourceNodeId), this.nodes.get(m.targetNodeId)]);
    await Promise.all(
      [source, target].map(async (node) => {
        if (!node) return;
        for (let attempt = 1; attempt <= SETTLE_ATTEMPTS; attempt++) {
          try {
            await this.agents.abortMigration(node, { migrationId: m.migrationId, reason, fencingEpoch: epoch });
            return;
          } catch (error) {
            if (error instanceof AgentRejectedError || attempt === SETTLE_ATTEMPTS) {
              this.logger.warn({ migrationId: m.migrationId, nodeId: node.nodeId, err: describe(error) }, 'AbortMigration not applied; the node\'s reports will reconcile it');
              return;
            }
            await delay(SETTLE_RETRY_MS);
          }
        }
      }),
    );
  }

  /** Re-queues open migrations that no pass drives, and gives back slots of migrations that ended. */
  async resync(): Promise<string[]> {
    return this.resyncs.run(async (requeued) => {
      for (const id of await this.migrations.openIds()) {
        if (this.running.has(id)) continue;
        if (await this.queue.ensureQueued(id)) requeued.push(id);
      }
      for (const m of await this.migrations.getMany(await this.migrations.strandedSlots())) await this.migrations.releaseSlot(m);
    });
  }
}
