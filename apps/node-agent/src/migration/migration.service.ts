import { parseAddress, resolvePolicy } from '@vmm/migration';
import { agent } from '@vmm/proto';
import type { Logger } from 'pino';
import { Observable, ReplaySubject } from 'rxjs';
import type { AgentConfig } from '../config.js';
import {
  DecisionConflictError,
  IncomingLostError,
  InvalidRequestError,
  MigrationNotFoundError,
  MigrationStepError,
  VmBusyError,
  VmFencedError,
} from '../errors.js';
import type { PersistedMigrationEnd } from '../state/agent-state.store.js';
import type { ManagedVm, VmManager } from '../vm/vm-manager.js';
import { MigrationLedger } from './migration-ledger.js';
import { toEnginePolicy } from './engine-policy.js';
import { finalMessage, progressMessage } from './migration-progress.js';
import type { OutgoingRunner, OutgoingState } from './source.runner.js';
import { SwitchOverEstimator } from './switch-over-estimator.js';
import { dataPlaneTls } from './data-plane-tls.js';
import type { IncomingRunner, IncomingState } from './target.runner.js';

/** How long a finished runner is kept in memory (its ledger entry lasts longer). */
const RETAIN_RUNNER_MS = 10 * 60_000;
/** CommitIncoming waits this long for a transfer that is verifying its last frames. */
const COMMIT_WAIT_MS = 10_000;
const ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

function requireId(field: string, value: string): void {
  if (!ID.test(value)) throw new InvalidRequestError(field, 'must be 1-128 letters, digits, ".", "_", ":" or "-"');
}

function requireToken(value: string): void {
  if (value.length < 8 || value.length > 256) throw new InvalidRequestError('token', 'must be 8-256 characters');
}

/** An epoch of a decision: a safe integer ≥ 1 (0 allowed where the field is optional). */
function requireEpoch(value: number, optional = false): number {
  const epoch = Number(value ?? 0);
  if (!Number.isSafeInteger(epoch) || epoch < (optional ? 0 : 1)) {
    throw new InvalidRequestError('fencing_epoch', `must be an integer in [${optional ? 0 : 1}, 2^53), got ${value}`);
  }
  return epoch;
}

const SOURCE_LEDGER_STATE = { sending: 'SENDING', ready: 'READY', released: 'RELEASED', 'rolled-back': 'ABORTED' } as const satisfies Record<
  OutgoingState,
  string
>;
const TARGET_LEDGER_STATE = {
  listening: 'RECEIVING',
  receiving: 'RECEIVING',
  ready: 'READY',
  committed: 'COMMITTED',
  discarded: 'ABORTED',
} as const satisfies Record<IncomingState, string>;

/**
 * Both ends of live migrations on this node, over @vmm/migration's engine. The controller decides;
 * this service carries out decisions that name the migration and the epoch:
 * PrepareIncoming (target) → StartOutgoing (source) → CommitIncoming (target, N+1) → ReleaseOutgoing
 * (source, N+1); AbortMigration resumes the source under the epoch it names (N, or N+2 after a revert)
 * and discards the target. Every call is idempotent, every state change is in the ledger (STATE_DIR)
 * before it is acknowledged, and a decision that contradicts one already applied is refused
 * (DecisionConflictError): a released source never resumes, a resumed target is never discarded.
 */
export class MigrationService {
  private readonly incoming = new Map<string, IncomingRunner>();
  private readonly outgoing = new Map<string, OutgoingRunner>();
  readonly ledger: MigrationLedger;
  /** What a switch-over costs here beyond the engine's prediction, learned from every commit. */
  private readonly switchOver = new SwitchOverEstimator();

  constructor(
    private readonly vms: VmManager,
    private readonly config: Pick<AgentConfig, 'host' | 'advertiseAddress' | 'agentPlane' | 'switchoverHoldMs'>,
    private readonly log: Logger,
  ) {
    this.ledger = new MigrationLedger(vms.store);
    for (const end of this.ledger.markUnsettledLost()) {
      this.log.warn({ migrationId: end.migrationId, vmId: end.vmId, role: end.role, was: end.state }, 'migration end lost with the previous agent process');
    }
  }

  async prepareIncoming(request: agent.PrepareIncomingRequest): Promise<agent.PrepareIncomingResponse> {
    requireId('migration_id', request.migrationId);
    requireToken(request.token);
    const existing = this.incoming.get(request.migrationId);
    if (existing && existing.state !== 'discarded') {
      if (existing.state === 'committed') throw new MigrationStepError(request.migrationId, 'already committed');
      // A retry, possibly while the first call is still opening the listener.
      return { dataAddress: await existing.open() };
    }
    // Before a commit another incoming copy is harmless (it is paused and not the VM); after one it is not.
    const remembered = this.ledger.get(request.migrationId);
    if (remembered && (remembered.state === 'COMMITTED' || remembered.state === 'RESUMED')) {
      throw new MigrationStepError(request.migrationId, `cannot prepare again: this node's end is ${remembered.state}`);
    }
    if (request.spec) this.vms.assertRoomFor(request.spec.vmId, Number(request.spec.memoryMib));
    const policy = toEnginePolicy(request.policy);
    // Checked before anything is made (InvalidPolicyError: INVALID_ARGUMENT), as StartOutgoing's.
    if (request.spec) resolvePolicy(policy, Number(request.spec.memoryMib) * 1024 * 1024);
    const entry = this.vms.create(request.spec ?? undefined, { incoming: true });
    const migrationId = request.migrationId;
    const runner: IncomingRunner = this.vms.hypervisor.incoming({
      migrationId,
      token: request.token,
      tls: dataPlaneTls(this.config.agentPlane, request.sourceNodeId),
      policy,
      entry,
      bindHost: this.config.host,
      advertiseHost: parseAddress(this.config.advertiseAddress).host,
      log: this.log,
      onState: (state) => this.ledger.record({ migrationId, vmId: entry.vm.id, role: 'target', state: TARGET_LEDGER_STATE[state], fencingEpoch: 0 }),
      onDiscard: () => {
        if (this.vms.get(entry.vm.id) === entry) this.vms.delete(entry.vm.id);
        // A discarded end answers every later call from the ledger alone (prepare again, commit:
        // INCOMING_LOST): it is not kept, nor the VM it made (its page tables, its bitmaps).
        if (this.incoming.get(migrationId) === runner) this.incoming.delete(migrationId);
      },
    });
    this.ledger.record({ migrationId, vmId: entry.vm.id, role: 'target', state: 'RECEIVING', fencingEpoch: 0 });
    this.incoming.set(migrationId, runner);
    try {
      const dataAddress = await runner.open();
      this.log.info({ migrationId, vmId: entry.vm.id, dataAddress }, 'incoming migration prepared');
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
    const migrationId = request.migrationId;
    const existing = this.outgoing.get(migrationId);
    if (existing?.state === 'ready') return new Observable((s) => (s.next(finalMessage(existing, undefined)), s.complete()));
    if (request.reattach) {
      const end = this.ledger.get(migrationId);
      throw new MigrationStepError(migrationId, `cannot re-attach: this node's end is ${existing?.state ?? end?.state ?? 'unknown'}`);
    }
    if (existing?.state === 'sending') throw new VmBusyError(existing.vmId, `migration ${migrationId} is in flight`);
    // A transfer that rolled back may start again (the VM runs here); a released or lost one may not.
    const remembered = this.ledger.get(migrationId);
    if (remembered && remembered.state !== 'ABORTED') throw new MigrationStepError(migrationId, `cannot start again: this node's end is ${remembered.state}`);
    const entry = this.vms.require(request.vmId);
    if (entry.role !== 'none') throw new VmBusyError(request.vmId, 'it is already migrating');
    if (entry.vm.state === 'stopped') throw new VmBusyError(request.vmId, 'it is stopped');
    if (entry.leasePaused) throw new VmBusyError(request.vmId, 'it is paused: its lease with the controller expired');

    const progress$ = new ReplaySubject<agent.MigrationProgress>();
    let last: agent.MigrationProgress | undefined;
    let pauseForwarded = false;
    const record = (state: OutgoingState) =>
      this.ledger.record({ migrationId, vmId: entry.vm.id, role: 'source', state: SOURCE_LEDGER_STATE[state], fencingEpoch: entry.fencingEpoch });
    const runner: OutgoingRunner = this.vms.hypervisor.outgoing({
      migrationId,
      entry,
      targetDataAddress: request.targetDataAddress,
      token: request.token,
      tls: dataPlaneTls(this.config.agentPlane, request.targetNodeId),
      policy: toEnginePolicy(request.policy),
      log: this.log,
      switchOverOverheadMs: this.switchOver.overheadMs,
      gateSwitchover: request.gateSwitchover === true,
      switchoverHoldMs: this.config.switchoverHoldMs,
      onState: record,
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
    record('sending');
    entry.role = 'outgoing';
    entry.migrationId = migrationId;
    this.outgoing.set(migrationId, runner);
    this.log.info({ migrationId, vmId: request.vmId, target: request.targetDataAddress }, 'outgoing migration started');
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
        // The controller went away mid-transfer: roll back rather than leave the VM in limbo. A source
        // that is ready (paused, verified) waits for the controller's decision instead: it may have committed.
        if (runner.state === 'sending') runner.abort('the StartOutgoing call was cancelled');
      };
    });
  }

  /**
   * The controller committed: the target resumes the VM under `fencing_epoch`. Idempotent: a target
   * that already runs the VM at that epoch answers as committed.
   * @throws IncomingLostError when the incoming copy is gone for good (the controller may resume the source's)
   * @throws MigrationNotFoundError when this node never held (or forgot) the migration and does not run the VM
   */
  async commitIncoming(request: agent.CommitIncomingRequest): Promise<agent.CommitIncomingResponse> {
    requireId('migration_id', request.migrationId);
    const epoch = requireEpoch(request.fencingEpoch);
    const migrationId = request.migrationId;
    const runner = this.incoming.get(migrationId);
    if (runner?.state === 'receiving' || runner?.state === 'listening') {
      await Promise.race([runner.settled, new Promise((resolve) => setTimeout(resolve, COMMIT_WAIT_MS).unref())]);
    }
    const remembered = this.ledger.get(migrationId);
    const vmId = runner?.vmId ?? remembered?.vmId ?? request.vmId;
    const running = vmId ? this.vms.get(vmId) : undefined;
    if (running && running.role === 'none' && running.fencingEpoch === epoch) {
      return { resumedAtMs: runner?.resumedAtMs ?? 0 };
    }
    if (remembered && remembered.fencingEpoch > 0 && remembered.fencingEpoch !== epoch) {
      throw new DecisionConflictError(migrationId, `a commit at epoch ${remembered.fencingEpoch}`, `a commit at epoch ${epoch}`);
    }
    if (!runner || runner.state === 'discarded') {
      if (remembered) throw new IncomingLostError(migrationId, `this node's end is ${remembered.state}`);
      throw new MigrationNotFoundError(migrationId);
    }
    if (runner.state !== 'ready' && runner.state !== 'committed') {
      throw new MigrationStepError(migrationId, `cannot commit: incoming migration is ${runner.state}`);
    }
    const entry = this.vms.get(runner.vmId);
    if (!entry) throw new IncomingLostError(migrationId, 'its VM is gone');
    if (epoch < entry.fencingEpoch) throw new VmFencedError(runner.vmId, epoch, entry.fencingEpoch);
    this.vms.fences.check(runner.vmId, epoch);
    // COMMITTED reaches the ledger (with the epoch) before the VM resumes: a restart in between
    // reports the end LOST, never a VM that ran here unknown to the controller.
    this.ledger.record({ migrationId, vmId: runner.vmId, role: 'target', state: 'COMMITTED', fencingEpoch: epoch });
    const resumedAtMs = await runner.commit();
    this.vms.adoptIncoming(entry, epoch);
    this.ledger.record({ migrationId, vmId: runner.vmId, role: 'target', state: 'RESUMED', fencingEpoch: epoch });
    this.retire(this.incoming, migrationId, runner);
    this.log.info({ migrationId, vmId: runner.vmId, fencingEpoch: epoch, resumedAtMs }, 'incoming migration committed; VM resumed');
    return { resumedAtMs };
  }

  /**
   * The VM runs on the target at `fencing_epoch`: the source's copy is destroyed and its id fenced.
   * Without a known migration (an empty id, or one this node forgot) a copy below the epoch is destroyed.
   * @throws DecisionConflictError when this node already resumed its copy for the migration
   */
  releaseOutgoing(request: agent.ReleaseOutgoingRequest): agent.ReleaseOutgoingResponse {
    requireId('vm_id', request.vmId);
    const epoch = requireEpoch(request.fencingEpoch);
    const migrationId = request.migrationId;
    const runner = migrationId ? this.outgoing.get(migrationId) : undefined;
    const remembered = migrationId ? this.ledger.get(migrationId) : undefined;
    if ((runner && runner.vmId !== request.vmId) || (remembered && remembered.vmId !== request.vmId)) {
      throw new InvalidRequestError('vm_id', `migration ${migrationId} moves ${runner?.vmId ?? remembered?.vmId}, not ${request.vmId}`);
    }
    if (remembered?.role === 'source' && remembered.state === 'ABORTED') {
      throw new DecisionConflictError(migrationId, `a resume at epoch ${remembered.fencingEpoch}`, `a release at epoch ${epoch}`);
    }
    if (remembered?.role === 'source' && remembered.state === 'RELEASED') return {};
    const entry = this.vms.get(request.vmId);
    if (runner) {
      runner.assertReleasable();
    } else if (entry && entry.fencingEpoch >= epoch) {
      throw new VmFencedError(request.vmId, entry.fencingEpoch, epoch);
    } else if (entry) {
      this.log.warn({ migrationId, vmId: request.vmId, copyEpoch: entry.fencingEpoch, fencingEpoch: epoch }, 'release of a VM with no outgoing migration: destroying the stale copy');
    }
    // The fence is durable before the copy goes and before the call is answered.
    this.vms.fenceAndDestroy(request.vmId, epoch);
    if (runner) {
      if (runner.state === 'ready' && runner.committingSentAt > 0) this.switchOver.observeCommit(performance.now() - runner.committingSentAt);
      runner.release();
      this.retire(this.outgoing, migrationId, runner);
    } else if (remembered?.role === 'source') {
      this.ledger.record({ ...remembered, state: 'RELEASED', fencingEpoch: epoch });
    }
    this.log.info({ migrationId, vmId: request.vmId, fencingEpoch: epoch }, 'outgoing migration released; VM fenced');
    return {};
  }

  /**
   * The migration did not move the VM: the source resumes its copy under `fencing_epoch` (0: its own),
   * the target discards its copy. Unknown migration ids are fine (nothing to undo).
   * @throws DecisionConflictError when the source released its copy or the target resumed the VM
   * @throws VmFencedError when the source's id is fenced above `fencing_epoch`
   */
  abortMigration(request: agent.AbortMigrationRequest): agent.AbortMigrationResponse {
    requireId('migration_id', request.migrationId);
    const epoch = requireEpoch(request.fencingEpoch ?? 0, true);
    const reason = request.reason || 'aborted by the controller';
    const migrationId = request.migrationId;
    const remembered = this.ledger.get(migrationId);
    const source = this.outgoing.get(migrationId);
    const target = this.incoming.get(migrationId);
    if (remembered?.role === 'source') this.resumeSource(migrationId, remembered, source, epoch, reason);
    if (remembered?.role === 'target') {
      if (remembered.state === 'COMMITTED' || remembered.state === 'RESUMED') {
        throw new DecisionConflictError(migrationId, `a commit at epoch ${remembered.fencingEpoch}`, 'an abort');
      }
      target?.abort(reason);
    }
    return {};
  }

  private resumeSource(migrationId: string, remembered: PersistedMigrationEnd, runner: OutgoingRunner | undefined, epoch: number, reason: string): void {
    if (remembered.state === 'RELEASED') throw new DecisionConflictError(migrationId, `a release at epoch ${remembered.fencingEpoch}`, 'a resume');
    if (remembered.state === 'LOST') return;
    const entry = this.vms.get(remembered.vmId);
    if (epoch > 0) this.vms.fences.check(remembered.vmId, epoch);
    if (runner && (runner.state === 'sending' || runner.state === 'ready')) {
      runner.abort(reason);
      // A ready copy resumed at once; a sending one rolls back in the engine and settles in run().
      if ((runner.state as OutgoingState) === 'rolled-back') this.settleRolledBack(runner);
    }
    // A resume under a newer epoch (a revert) takes the copy's epoch with it.
    if (entry && epoch > entry.fencingEpoch && (entry.role === 'none' || entry.migrationId === migrationId)) {
      this.vms.resumeOutgoing(entry, epoch);
      this.ledger.record({ ...remembered, state: 'ABORTED', fencingEpoch: epoch });
    }
  }

  /**
   * UpdateMigration on the source: a new downtime limit or bandwidth, or force the switch-over, from
   * the transfer's next round (the controller checked the values; the engine checks them again).
   * @throws MigrationNotFoundError when this node sends no such migration
   * @throws MigrationStepError once the transfer is past pre-copy (switching over, ready, settled)
   */
  async updateOutgoing(request: agent.UpdateOutgoingRequest): Promise<agent.UpdateOutgoingResponse> {
    requireId('migration_id', request.migrationId);
    const runner = this.outgoing.get(request.migrationId);
    if (!runner) throw new MigrationNotFoundError(request.migrationId);
    await runner.update({
      downtimeLimitMs: request.downtimeLimitMs === undefined || request.downtimeLimitMs === null ? undefined : Number(request.downtimeLimitMs),
      maxBandwidthMibPerSec: request.maxBandwidthMibPerSec ?? undefined,
      forceComplete: request.forceComplete === true,
    });
    return {};
  }

  /**
   * The controller lets a source that holds at the switch-over send its last pages.
   * @throws MigrationNotFoundError when this node sends no such migration
   * @throws MigrationStepError where the source does not hold (see OutgoingRunner.continueSwitchover)
   */
  continueSwitchover(request: agent.ContinueSwitchoverRequest): agent.ContinueSwitchoverResponse {
    requireId('migration_id', request.migrationId);
    const runner = this.outgoing.get(request.migrationId);
    if (!runner) throw new MigrationNotFoundError(request.migrationId);
    if (request.vmId && request.vmId !== runner.vmId) {
      throw new InvalidRequestError('vm_id', `migration ${request.migrationId} moves ${runner.vmId}, not ${request.vmId}`);
    }
    runner.continueSwitchover();
    return {};
  }

  /** A directive from a report ack about one end of a migration (the answer to the agent's report). */
  applyDirective(d: agent.Directive): void {
    const request = { migrationId: d.migrationId, vmId: d.vmId, fencingEpoch: Number(d.fencingEpoch), reason: d.reason };
    switch (d.action) {
      case agent.DirectiveAction.DIRECTIVE_ACTION_RESUME_SOURCE:
        this.abortMigration(request);
        return;
      case agent.DirectiveAction.DIRECTIVE_ACTION_RELEASE_SOURCE:
        this.releaseOutgoing(request);
        return;
      case agent.DirectiveAction.DIRECTIVE_ACTION_DISCARD_INCOMING:
        this.incoming.get(d.migrationId)?.abort(d.reason || 'the controller no longer expects this copy');
        return;
      default:
        return;
    }
  }

  /** The lease ran out: outgoing migrations of guarded VMs that are still sending roll back (the VM then pauses). */
  abortSendingOf(entry: ManagedVm, reason: string): void {
    const runner = this.outgoing.get(entry.migrationId);
    if (runner?.state === 'sending') runner.abort(reason);
  }

  /** Before DeleteVm: a VM that is migrating stops migrating first (rolled back on both ends). */
  abortForVm(vmId: string, reason: string): void {
    for (const runner of this.outgoing.values()) if (runner.vmId === vmId && runner.state === 'sending') runner.abort(reason);
    for (const runner of this.incoming.values()) if (runner.vmId === vmId && runner.state !== 'committed') runner.abort(reason);
  }

  /** Shutdown: rolls back every transfer still sending or receiving; a ready source keeps its paused copy for the decision. */
  abortAll(reason: string): void {
    for (const runner of this.outgoing.values()) if (runner.state === 'sending') runner.abort(reason);
    for (const runner of this.incoming.values()) if (runner.state !== 'committed' && runner.state !== 'discarded') runner.abort(reason);
  }

  private settleRolledBack(runner: OutgoingRunner): void {
    const entry = this.vms.get(runner.vmId);
    if (entry && entry.role === 'outgoing' && entry.migrationId === runner.migrationId) {
      entry.role = 'none';
      entry.migrationId = '';
    }
    this.retire(this.outgoing, runner.migrationId, runner);
  }

  private retire<T>(map: Map<string, T>, migrationId: string, runner: T): void {
    setTimeout(() => {
      if (map.get(migrationId) === runner) map.delete(migrationId);
    }, RETAIN_RUNNER_MS).unref();
  }
}
