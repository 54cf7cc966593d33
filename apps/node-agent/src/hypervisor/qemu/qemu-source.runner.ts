import {
  applyPolicyUpdate,
  checkPolicyUpdate,
  ConnectionLostError,
  isEmptyPolicyUpdate,
  DigestMismatchError,
  MigrationCancelledError as EngineCancelledError,
  parseAddress,
  resolvePolicy,
  SwitchOverHoldTimeoutError,
  type MigrationProgress,
  type CheckedPolicyUpdate,
  type OutgoingResult,
  type PolicyUpdate,
  type SenderStats,
} from '@vmm/migration';
import { InvalidGuestStateError, MigrationCancelledError, MigrationFailedError, type OutgoingMigration, type QemuDriver, type RamDigest } from '@vmm/qemu';
import { MigrationStepError } from '../../errors.js';
import type { OutgoingRunner, OutgoingState, SourceRunnerOptions } from '../../migration/source.runner.js';
import type { QemuVm } from './qemu-vm.js';
import { dialVerifyChannel, type VerifyChannel } from './verify-channel.js';

const allowed: Record<OutgoingState, readonly OutgoingState[]> = {
  sending: ['ready', 'rolled-back'],
  ready: ['released', 'rolled-back'],
  released: [],
  'rolled-back': [],
};

/** Reaching the target agent's verify channel, and each answer on it before the digest, ms. */
const CHANNEL_TIMEOUT_MS = 10_000;
/** The target's digest (pmemsave + hash of a paused guest, under load): per GiB of guest memory, ms. */
const DIGEST_TIMEOUT_MS_PER_GIB = 60_000;

/**
 * The source end of a QEMU migration, in the states of the emulator's SourceRunner:
 * sending (QEMU pre-copy: PREPARING, PRECOPY; the gate at pre-switchover: STOP_AND_COPY, held until the
 * controller's ContinueSwitchover; migrate-continue; `completed`; both ends' RAM digests) → ready (the source stopped in postmigrate, the target paused,
 * the digests equal: COMMITTING goes to the controller) → released; any failure or abort before the
 * commit → rolled-back, the source running on (migrate_cancel before the switch-over, `cont` after it).
 * Unequal digests are DIGEST_MISMATCH: the source resumes at once and the controller discards the target.
 * The hold is bounded (SWITCHOVER_HOLD_MS): the guest is stopped while it lasts, so a controller that
 * does not answer (frozen, partitioned) costs a bounded pause and a rollback, SWITCHOVER_TIMEOUT.
 */
export class QemuSourceRunner implements OutgoingRunner {
  private current: OutgoingState = 'sending';
  private currentPhase = 'PREPARING';
  private out: OutgoingMigration | undefined;
  private channel: VerifyChannel | undefined;
  private abortReason: Error | undefined;
  private throttleMax = 0;
  /** Every UpdateMigration so far, merged: applied to QEMU once its migration exists, and to the result's policy. */
  private updates: CheckedPolicyUpdate = { forceComplete: false };
  /** Set while the source holds at the switch-over, waiting for ContinueSwitchover. */
  private held: { resolve: () => void; reject: (error: Error) => void } | undefined;
  private continued = false;
  result: OutgoingResult | undefined;
  error: (Error & { code?: string }) | undefined;
  readonly startedAtMs = Date.now();
  committingSentAt = 0;

  constructor(
    private readonly driver: QemuDriver,
    private readonly vm: QemuVm,
    private readonly opts: SourceRunnerOptions,
  ) {
    // The policy is checked here, before anything starts, as the engine's constructor does.
    resolvePolicy(opts.policy, vm.memoryMib * 1024 * 1024);
  }

  get migrationId(): string {
    return this.opts.migrationId;
  }

  get vmId(): string {
    return this.vm.id;
  }

  get state(): OutgoingState {
    return this.current;
  }

  get phase(): string {
    return this.currentPhase;
  }

  async run(): Promise<void> {
    const { migrationId, log } = this.opts;
    // From the switch-over on the source is stopped: a failure then must `cont` it.
    let stopped = false;
    this.vm.migrating = true;
    try {
      const { host, port } = parseAddress(this.opts.targetDataAddress);
      const { channel, qemuPort } = await dialVerifyChannel(host, port, migrationId, this.opts.token, CHANNEL_TIMEOUT_MS, this.opts.tls);
      this.channel = channel;
      void channel.closed.then(() => {
        if (this.current === 'sending' && !stopped) this.abort('the target agent closed the verify channel');
      });
      this.throwIfAborted();
      const out = await this.driver.startOutgoing(this.vmId, { migrationId, host, port: qemuPort, policy: this.opts.policy });
      this.out = out;
      // Updates that came while the verify channel was being dialled.
      if (!isEmptyPolicyUpdate(this.updates)) await out.update(this.updates);
      out.on('progress', (p: MigrationProgress) => this.forward(p));
      if (this.abortReason) await out.cancel();
      const gate = await out.switchoverReady();
      stopped = true;
      this.vm.observed('paused');
      this.throwIfAborted();
      // The VM is down from here: watchers see it as it happens.
      this.currentPhase = 'STOP_AND_COPY';
      if (this.opts.gateSwitchover) {
        // The switch-over is the controller's to allow: the hold is in place before it hears of it.
        const holdMs = this.opts.switchoverHoldMs;
        const hold = this.holdForController(holdMs);
        const heldFrom = performance.now();
        // QEMU giving up while it holds (its target gone) ends the hold at once, not after it.
        void out.settled().then((state) => {
          if (state === 'failed' || state === 'cancelled') this.held?.reject(new ConnectionLostError(migrationId, `QEMU's migration ${state} while it held at the switch-over`));
        });
        this.opts.onProgress({ ...gate, phase: 'STOP_AND_COPY', awaitingSwitchover: true, switchoverHoldMs: holdMs });
        await hold;
        this.throwIfAborted();
        log.info({ migrationId, vmId: this.vmId, heldMs: Math.round(performance.now() - heldFrom) }, 'switch-over continued by the controller');
      } else {
        // A controller that does not answer a hold (it predates ContinueSwitchover): go on at once.
        this.continued = true;
        this.opts.onProgress({ ...gate, phase: 'STOP_AND_COPY' });
      }
      const done = await out.continueSwitchover();
      // Aborted while QEMU finished: roll back now rather than keep the guest down through the digests.
      this.throwIfAborted();
      const pausedAtMs = gate.pausedAtMs ?? Date.now();
      const digestTimeoutMs = CHANNEL_TIMEOUT_MS + Math.ceil((this.vm.memoryMib / 1024) * DIGEST_TIMEOUT_MS_PER_GIB);
      channel.send({ type: 'digest' });
      const [source, target] = await Promise.all([this.driver.digest(this.vmId), this.targetDigest(channel, digestTimeoutMs)]);
      this.throwIfAborted();
      if (source.digest !== target.digest) throw new DigestMismatchError(migrationId, source.digest, target.digest);
      const stats = this.stats(done.progress, pausedAtMs, gate.expectedDowntimeMs);
      this.result = {
        migrationId,
        sourceDigest: source.digest,
        targetDigest: target.digest,
        pausedAtMs,
        totalTimeMs: Date.now() - this.startedAtMs,
        policy: applyPolicyUpdate(resolvePolicy(this.opts.policy, this.vm.memoryMib * 1024 * 1024), this.updates),
        stats,
        commit: () => {},
        abort: () => this.resumeSource(),
      };
      if (!this.transition('ready')) {
        this.resumeSource();
        return;
      }
      log.info(
        { migrationId, vmId: this.vmId, rounds: stats.rounds, bytesSent: stats.bytesSent, digest: source.digest, qemuDowntimeMs: done.downtimeMs, digestMs: digestMs(source) },
        'outgoing qemu migration completed, digests equal; source stopped until commit',
      );
    } catch (err) {
      this.error = reasonOf(migrationId, this.abortReason ?? err);
      if (this.out && (this.out.state === 'starting' || this.out.state === 'precopy' || this.out.state === 'switchover-ready')) {
        await this.out.cancel().catch(() => {});
      }
      if (stopped) this.resumeSource();
      else {
        this.vm.migrating = false;
        if (this.vm.state !== 'stopped') this.vm.observed('running');
      }
      this.transition('rolled-back');
      log.warn({ migrationId, vmId: this.vmId, code: this.error.code, reason: this.error.message }, 'outgoing qemu migration failed; source runs on');
    } finally {
      this.channel?.close();
    }
  }

  assertReleasable(): void {
    if (this.current === 'released') return;
    if (this.current !== 'ready' || !this.result) {
      throw new MigrationStepError(this.migrationId, `cannot release: outgoing migration is ${this.current}`);
    }
  }

  /** After the commit: the VM manager destroys the stopped source copy (QemuVm.stop). */
  release(): void {
    this.assertReleasable();
    if (this.current === 'released') return;
    this.transition('released');
  }

  abort(reason: string): void {
    if (this.current === 'released') throw new MigrationStepError(this.migrationId, 'cannot abort: the source copy was released');
    if (this.current === 'sending') {
      this.abortReason ??= new EngineCancelledError(this.migrationId, reason);
      this.held?.reject(this.abortReason);
      const out = this.out;
      // Before the switch-over QEMU cancels and the source runs on; after it, run() rolls back at its next step.
      if (out && (out.state === 'starting' || out.state === 'precopy' || out.state === 'switchover-ready')) void out.cancel().catch(() => {});
      return;
    }
    if (this.current === 'ready') {
      this.transition('rolled-back');
      this.resumeSource();
      this.opts.log.info({ migrationId: this.migrationId, vmId: this.vmId, reason }, 'outgoing qemu migration aborted; source resumed');
    }
  }

  /**
   * UpdateMigration on QEMU: migrate-set-parameters on the running migration (OutgoingMigration.update);
   * force_complete as the largest downtime-limit QEMU accepts, so that its next iteration switches over
   * (held at pre-switchover, where the switch-over is bounded as for any QEMU migration).
   */
  async update(update: PolicyUpdate): Promise<void> {
    const checked = checkPolicyUpdate(update);
    if (this.current !== 'sending' || this.currentPhase === 'STOP_AND_COPY') {
      throw new MigrationStepError(this.migrationId, `cannot update: outgoing qemu migration is ${this.current === 'sending' ? this.currentPhase : this.current}`);
    }
    const merged: CheckedPolicyUpdate = {
      downtimeLimitMs: checked.downtimeLimitMs ?? this.updates.downtimeLimitMs,
      maxBandwidthMibPerSec: checked.maxBandwidthMibPerSec ?? this.updates.maxBandwidthMibPerSec,
      forceComplete: checked.forceComplete || this.updates.forceComplete,
    };
    try {
      await this.out?.update(checked);
    } catch (error) {
      if (error instanceof InvalidGuestStateError) throw new MigrationStepError(this.migrationId, `cannot update: ${error.message}`);
      throw error;
    }
    this.updates = merged;
    this.opts.log.info({ migrationId: this.migrationId, vmId: this.vmId, ...checked }, 'outgoing qemu migration updated (migrate-set-parameters)');
  }

  /**
   * ContinueSwitchover: the held source sends its last pages. Idempotent once continued (until a rollback).
   * @throws MigrationStepError before the hold, or once the migration rolled back
   */
  continueSwitchover(): void {
    if (this.continued && this.current !== 'rolled-back') return;
    if (this.current !== 'sending' || !this.held) {
      throw new MigrationStepError(this.migrationId, `cannot continue the switch-over: outgoing qemu migration is ${this.current === 'sending' ? `in ${this.currentPhase}, not holding` : this.current}`);
    }
    this.continued = true;
    this.held.resolve();
  }

  /** Resolves on ContinueSwitchover; rejects on an abort, or after `holdMs` without an answer. */
  private holdForController(holdMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => end(() => reject(new SwitchOverHoldTimeoutError(this.migrationId, holdMs))), holdMs);
      const end = (settle: () => void) => {
        clearTimeout(timer);
        this.held = undefined;
        settle();
      };
      this.held = { resolve: () => end(resolve), reject: (error) => end(() => reject(error)) };
    });
  }

  private forward(p: MigrationProgress): void {
    this.throttleMax = Math.max(this.throttleMax, p.throttlePercent);
    // Only pre-copy figures go out from here: STOP_AND_COPY is sent once, at the gate, by run().
    if (p.phase !== 'PREPARING' && p.phase !== 'PRECOPY') return;
    this.currentPhase = p.phase;
    this.opts.onProgress(p);
  }

  private async targetDigest(channel: VerifyChannel, timeoutMs: number): Promise<RamDigest> {
    const answer = await channel.next(timeoutMs);
    if (answer.type === 'digest' && typeof answer.digest === 'string') {
      return { digest: answer.digest, pages: 0, dumpMs: answer.dumpMs ?? 0, hashMs: answer.hashMs ?? 0 };
    }
    const detail = answer.type === 'error' ? `${answer.code}: ${answer.message}` : `unexpected ${answer.type}`;
    throw new ConnectionLostError(this.migrationId, `the target could not digest its copy (${detail})`);
  }

  /** The stopped source runs again (`cont` from postmigrate or finish-migrate). */
  private resumeSource(): void {
    this.vm.migrating = false;
    if (this.vm.state === 'stopped') return;
    this.vm.observed('paused');
    try {
      this.vm.resume();
    } catch (err) {
      this.opts.log.error({ err, vmId: this.vmId }, 'resuming the qemu source failed');
    }
  }

  private stats(last: MigrationProgress, pausedAtMs: number, expectedDowntimeMs: number): SenderStats {
    return {
      // QEMU's dirty-sync count is the rounds including the last one (the engine counts the paused pass too).
      rounds: last.round + 1,
      pagesTotal: this.vm.memory.pageCount,
      pagesSent: last.pagesSent,
      pagesRaw: 0,
      pagesWithoutCopy: 0,
      pagesZero: 0,
      pagesXbzrle: 0,
      pagesUnchanged: 0,
      xbzrleCacheHits: 0,
      xbzrleCacheMisses: 0,
      xbzrleOverflows: 0,
      bytesSent: last.bytesSent,
      throttlePercentMax: this.throttleMax,
      stopAndCopyPages: 0,
      stopAndCopyMs: Date.now() - pausedAtMs,
      expectedStopAndCopyMs: expectedDowntimeMs,
      maxBufferedBytes: 0,
    };
  }

  private throwIfAborted(): void {
    if (this.abortReason) throw this.abortReason;
  }

  private transition(next: OutgoingState): boolean {
    if (!allowed[this.current].includes(next)) return false;
    this.opts.onState(next);
    this.current = next;
    return true;
  }
}

function digestMs(d: RamDigest): number {
  return Math.round(d.dumpMs + d.hashMs);
}

/**
 * QEMU's failures under the engine's stable reasons, so that the controller reports them alike:
 * a cancel is CANCELLED, a migration QEMU failed (the target or the link died) is CONNECTION_LOST.
 */
function reasonOf(migrationId: string, err: unknown): Error & { code?: string } {
  if (err instanceof MigrationCancelledError) return new EngineCancelledError(migrationId, err.message);
  if (err instanceof MigrationFailedError) return new ConnectionLostError(migrationId, err.message);
  return err instanceof Error ? err : new Error(String(err));
}
