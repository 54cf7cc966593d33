import { parseAddress } from '@vmm/migration';
import type { agent } from '@vmm/proto';
import type { Logger } from 'pino';
import { Observable, ReplaySubject } from 'rxjs';
import type { AgentConfig } from '../config.js';
import { InvalidRequestError, MigrationNotFoundError, MigrationStepError, VmBusyError, VmFencedError } from '../errors.js';
import type { VmManager } from '../vm/vm-manager.js';
import { finalMessage, progressMessage, toEnginePolicy } from './migration-progress.js';
import { SourceRunner } from './source.runner.js';
import { SwitchOverEstimator } from './switch-over-estimator.js';
import { TargetRunner } from './target.runner.js';

/** How long a finished migration is remembered, so that the controller's retries stay idempotent. */
const RETAIN_FINISHED_MS = 10 * 60_000;
/** CommitIncoming waits this long for a transfer that is verifying its last frames. */
const COMMIT_WAIT_MS = 10_000;
const ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

function requireId(field: string, value: string): void {
  if (!ID.test(value)) throw new InvalidRequestError(field, 'must be 1-128 letters, digits, ".", "_", ":" or "-"');
}

function requireToken(value: string): void {
  if (value.length < 8 || value.length > 256) throw new InvalidRequestError('token', 'must be 8-256 characters');
}

/**
 * Both ends of live migrations on this node, over @vmm/migration's engine. The controller drives:
 * PrepareIncoming (target) → StartOutgoing (source) → CommitIncoming (target) → ReleaseOutgoing
 * (source); AbortMigration before the commit rolls both ends back. Every call is idempotent.
 */
export class MigrationService {
  private readonly incoming = new Map<string, TargetRunner>();
  private readonly outgoing = new Map<string, SourceRunner>();
  /** What a switch-over costs here beyond the engine's prediction, learned from every commit. */
  private readonly switchOver = new SwitchOverEstimator();

  constructor(
    private readonly vms: VmManager,
    private readonly config: Pick<AgentConfig, 'host' | 'advertiseAddress'>,
    private readonly log: Logger,
  ) {}

  async prepareIncoming(request: agent.PrepareIncomingRequest): Promise<agent.PrepareIncomingResponse> {
    requireId('migration_id', request.migrationId);
    requireToken(request.token);
    const existing = this.incoming.get(request.migrationId);
    if (existing && existing.state !== 'discarded') {
      if (existing.state === 'committed') throw new MigrationStepError(request.migrationId, 'already committed');
      // A retry, possibly while the first call is still opening the listener.
      return { dataAddress: await existing.open() };
    }
    const entry = this.vms.create(request.spec ?? undefined, { incoming: true });
    const runner = new TargetRunner({
      migrationId: request.migrationId,
      token: request.token,
      entry,
      bindHost: this.config.host,
      advertiseHost: parseAddress(this.config.advertiseAddress).host,
      log: this.log,
      onDiscard: () => {
        if (this.vms.get(entry.vm.id) === entry) this.vms.delete(entry.vm.id);
        this.retire(this.incoming, request.migrationId, runner);
      },
    });
    this.incoming.set(request.migrationId, runner);
    try {
      const dataAddress = await runner.open();
      this.log.info({ migrationId: request.migrationId, vmId: entry.vm.id, dataAddress }, 'incoming migration prepared');
      return { dataAddress };
    } catch (err) {
      runner.abort(`listener failed: ${err instanceof Error ? err.message : String(err)}`);
      throw err;
    }
  }

  /** Streams progress: one message per round and phase change, then COMMITTING or FAILED/CANCELLED. */
  startOutgoing(request: agent.StartOutgoingRequest): Observable<agent.MigrationProgress> {
    requireId('migration_id', request.migrationId);
    requireToken(request.token);
    try {
      parseAddress(request.targetDataAddress);
    } catch {
      throw new InvalidRequestError('target_data_address', `expected host:port, got '${request.targetDataAddress}'`);
    }
    const existing = this.outgoing.get(request.migrationId);
    if (existing?.state === 'ready') return new Observable((s) => (s.next(finalMessage(existing, undefined)), s.complete()));
    if (existing?.state === 'sending') throw new VmBusyError(existing.vmId, `migration ${request.migrationId} is in flight`);
    if (existing?.state === 'released') throw new MigrationStepError(request.migrationId, 'already released');
    const entry = this.vms.require(request.vmId);
    if (entry.role !== 'none') throw new VmBusyError(request.vmId, 'it is already migrating');
    if (entry.vm.state === 'stopped') throw new VmBusyError(request.vmId, 'it is stopped');

    const progress$ = new ReplaySubject<agent.MigrationProgress>();
    let last: agent.MigrationProgress | undefined;
    let pauseForwarded = false;
    const runner: SourceRunner = new SourceRunner({
      migrationId: request.migrationId,
      entry,
      targetDataAddress: request.targetDataAddress,
      token: request.token,
      policy: toEnginePolicy(request.policy),
      log: this.log,
      switchOverOverheadMs: this.switchOver.overheadMs,
      onProgress: (p) => {
        last = progressMessage(p, runner.startedAtMs);
        // STOP_AND_COPY goes out once, at the pause (watchers see the VM go down when it does); the
        // engine's second one, once the target verified, is followed at once by COMMITTING with the same
        // figures, so it is not sent. next() only queues the message: nothing here waits on the controller.
        if (p.phase === 'STOP_AND_COPY') {
          if (pauseForwarded) return;
          pauseForwarded = true;
        }
        progress$.next(last);
      },
    });
    entry.role = 'outgoing';
    this.outgoing.set(request.migrationId, runner);
    this.log.info({ migrationId: request.migrationId, vmId: request.vmId, target: request.targetDataAddress }, 'outgoing migration started');
    void runner.run().then(() => {
      try {
        if (runner.state === 'rolled-back') this.settleRolledBack(runner);
        const stats = runner.result?.stats;
        if (runner.state === 'ready' && stats) this.switchOver.observeStopAndCopy(stats.stopAndCopyMs, stats.expectedStopAndCopyMs);
        const message = finalMessage(runner, last);
        if (runner.state === 'ready') runner.committingSentAt = performance.now();
        progress$.next(message);
        progress$.complete();
      } catch (err) {
        progress$.error(err);
      }
    });
    return new Observable<agent.MigrationProgress>((subscriber) => {
      const subscription = progress$.subscribe(subscriber);
      return () => {
        subscription.unsubscribe();
        // The controller went away mid-transfer: roll back rather than leave the VM in limbo.
        if (runner.state === 'sending') runner.abort('the StartOutgoing call was cancelled');
      };
    });
  }

  async commitIncoming(request: agent.CommitIncomingRequest): Promise<agent.CommitIncomingResponse> {
    const runner = this.incoming.get(request.migrationId);
    if (!runner) throw new MigrationNotFoundError(request.migrationId);
    if (runner.state === 'receiving') {
      await Promise.race([runner.settled, new Promise((resolve) => setTimeout(resolve, COMMIT_WAIT_MS).unref())]);
    }
    const entry = this.vms.get(runner.vmId);
    if (runner.state !== 'committed') {
      if (!entry) throw new MigrationStepError(request.migrationId, `cannot commit: incoming migration is ${runner.state}`);
      if (request.fencingEpoch < entry.fencingEpoch) throw new VmFencedError(runner.vmId, request.fencingEpoch, entry.fencingEpoch);
      this.vms.fences.check(runner.vmId, request.fencingEpoch);
    }
    const wasCommitted = runner.state === 'committed';
    const resumedAtMs = runner.commit();
    if (!wasCommitted && entry) {
      this.vms.adoptIncoming(entry, request.fencingEpoch);
      this.retire(this.incoming, request.migrationId, runner);
      this.log.info({ migrationId: request.migrationId, vmId: runner.vmId, fencingEpoch: request.fencingEpoch, resumedAtMs }, 'incoming migration committed; VM resumed');
    }
    return { resumedAtMs };
  }

  releaseOutgoing(request: agent.ReleaseOutgoingRequest): agent.ReleaseOutgoingResponse {
    requireId('vm_id', request.vmId);
    const runner = this.outgoing.get(request.migrationId);
    if (runner && runner.vmId !== request.vmId) {
      throw new InvalidRequestError('vm_id', `migration ${request.migrationId} moves ${runner.vmId}, not ${request.vmId}`);
    }
    const entry = this.vms.get(request.vmId);
    if (runner) {
      runner.assertReleasable();
    } else if (entry && entry.fencingEpoch >= request.fencingEpoch) {
      throw new VmFencedError(request.vmId, entry.fencingEpoch, request.fencingEpoch);
    } else if (entry) {
      this.log.warn({ migrationId: request.migrationId, vmId: request.vmId }, 'release of a VM with no outgoing migration: destroying the stale copy');
    }
    // The VM manager stops the VM (after its lifecycle hooks let go of its memory); the engine's
    // commit then finds it stopped.
    this.vms.fenceAndDestroy(request.vmId, request.fencingEpoch);
    if (runner) {
      if (runner.state === 'ready' && runner.committingSentAt > 0) {
        this.switchOver.observeCommit(performance.now() - runner.committingSentAt);
      }
      runner.release();
      this.retire(this.outgoing, request.migrationId, runner);
    }
    this.log.info({ migrationId: request.migrationId, vmId: request.vmId, fencingEpoch: request.fencingEpoch }, 'outgoing migration released; VM fenced');
    return {};
  }

  /** Rolls back whichever end(s) of the migration live here; unknown ids are fine (nothing to undo). */
  abortMigration(request: agent.AbortMigrationRequest): agent.AbortMigrationResponse {
    const reason = request.reason || 'aborted by the controller';
    const source = this.outgoing.get(request.migrationId);
    const target = this.incoming.get(request.migrationId);
    if (source?.state === 'released') throw new MigrationStepError(request.migrationId, 'cannot abort: already released');
    if (target?.state === 'committed') throw new MigrationStepError(request.migrationId, 'cannot abort: already committed');
    if (source) {
      source.abort(reason);
      if (source.state === 'rolled-back') this.settleRolledBack(source);
    }
    target?.abort(reason);
    return {};
  }

  /** Before DeleteVm: a VM that is migrating stops migrating first (rolled back on both ends). */
  abortForVm(vmId: string, reason: string): void {
    for (const runner of this.outgoing.values()) if (runner.vmId === vmId && runner.state !== 'released') runner.abort(reason);
    for (const runner of this.incoming.values()) if (runner.vmId === vmId && runner.state !== 'committed') runner.abort(reason);
  }

  /** Shutdown: rolls back every migration in flight. */
  abortAll(reason: string): void {
    for (const runner of this.outgoing.values()) if (runner.state === 'sending' || runner.state === 'ready') runner.abort(reason);
    for (const runner of this.incoming.values()) if (runner.state !== 'committed' && runner.state !== 'discarded') runner.abort(reason);
  }

  private settleRolledBack(runner: SourceRunner): void {
    const entry = this.vms.get(runner.vmId);
    if (entry && entry.role === 'outgoing') entry.role = 'none';
    this.retire(this.outgoing, runner.migrationId, runner);
  }

  private retire<T>(map: Map<string, T>, migrationId: string, runner: T): void {
    setTimeout(() => {
      if (map.get(migrationId) === runner) map.delete(migrationId);
    }, RETAIN_FINISHED_MS).unref();
  }
}
