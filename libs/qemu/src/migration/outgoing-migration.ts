import { EventEmitter } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import type { CheckedPolicyUpdate, MigrationPolicy, MigrationProgress } from '@vmm/migration';
import {
  InvalidGuestStateError,
  MigrationCancelledError,
  MigrationFailedError,
  MigrationNotConvergedError,
} from '../errors.js';
import type { QemuGuest } from '../guest/qemu-guest.js';
import { canMoveOutgoing, isOutgoingFinal, type OutgoingState } from './migration-state.js';
import { updateMigrationParameters } from './migration-params.js';
import { toMigrationProgress, type QemuMigrationInfo } from './migration-progress.js';

/** How often query-migrate is polled, ms. QMP answers in well under a millisecond. */
export const MIGRATION_POLL_MS = 50;
/** A progress event at least this often while nothing changes, ms. */
const PROGRESS_HEARTBEAT_MS = 500;

export interface OutgoingCompletion {
  /** QEMU's total-time and downtime, ms (downtime includes the time held at the gate). */
  totalTimeMs: number;
  downtimeMs: number;
  /** Time the source was held at pre-switchover before continueSwitchover(), ms. */
  gateHeldMs: number;
  progress: MigrationProgress;
}

/**
 * The source end of one QEMU migration (see migration-state.ts for its states). Polls query-migrate,
 * emits 'progress' (MigrationProgress) on every change of status or round and at least every 500 ms,
 * 'state' (OutgoingState) on every transition. Enforces the policy's maxRounds and completionTimeoutMs
 * (QEMU has neither) by cancelling with MigrationNotConvergedError.
 */
export class OutgoingMigration extends EventEmitter {
  private current: OutgoingState = 'starting';
  private readonly startedAtMs = Date.now();
  private pausedAtMs: number | undefined;
  private lastProgress: MigrationProgress;
  private lastEmitMs = 0;
  private failure: Error | null = null;
  private stopReason: Error | null = null;
  private readonly gate: Promise<MigrationProgress>;
  private readonly finished: Promise<QemuMigrationInfo>;
  private resolveGate!: (p: MigrationProgress) => void;
  private rejectGate!: (e: Error) => void;

  constructor(
    readonly migrationId: string,
    private readonly guest: QemuGuest,
    private readonly policy: MigrationPolicy,
  ) {
    super();
    this.lastProgress = toMigrationProgress(migrationId, {});
    this.gate = new Promise((resolve, reject) => {
      this.resolveGate = resolve;
      this.rejectGate = reject;
    });
    this.gate.catch(() => {}); // awaited by callers that want it; an unobserved failure is no crash
    this.finished = this.pollUntilFinal();
    this.finished.catch(() => {});
  }

  get vmId(): string {
    return this.guest.vmId;
  }

  get state(): OutgoingState {
    return this.current;
  }

  get progress(): MigrationProgress {
    return this.lastProgress;
  }

  /** Why the migration failed or was cancelled; null otherwise. */
  get error(): Error | null {
    return this.failure;
  }

  /**
   * Resolves when the source reached pre-switchover: stopped, waiting for continueSwitchover().
   * @throws MigrationFailedError, MigrationCancelledError, MigrationNotConvergedError
   */
  switchoverReady(): Promise<MigrationProgress> {
    return this.gate;
  }

  /**
   * Lets the switch-over go on (migrate-continue) and resolves when QEMU completed: the source is
   * stopped (postmigrate) and the target paused. Compare the digests next.
   */
  async continueSwitchover(): Promise<OutgoingCompletion> {
    await this.gate;
    this.moveTo('switching');
    const gateHeldMs = Date.now() - (this.pausedAtMs ?? Date.now());
    await this.guest.qmp.execute('migrate-continue', { state: 'pre-switchover' });
    const info = await this.finished;
    return {
      totalTimeMs: info['total-time'] ?? Date.now() - this.startedAtMs,
      downtimeMs: info.downtime ?? 0,
      gateHeldMs,
      progress: this.lastProgress,
    };
  }

  /**
   * UpdateMigration on a running QEMU migration: migrate-set-parameters with the new downtime-limit
   * and max-bandwidth, which QEMU applies from its next iteration (the bandwidth at once);
   * force_complete sets the largest downtime-limit (see QEMU_MAX_DOWNTIME_LIMIT_MS). The round limit
   * enforced here follows the new downtime limit too.
   * @throws InvalidGuestStateError once the switch-over has begun (or the migration ended)
   */
  async update(update: CheckedPolicyUpdate): Promise<void> {
    if (this.current !== 'starting' && this.current !== 'precopy') {
      throw new InvalidGuestStateError(this.vmId, `migrating (${this.current})`, 'update the migration after pre-copy');
    }
    const params = updateMigrationParameters(update);
    if (Object.keys(params).length > 0) await this.guest.qmp.execute('migrate-set-parameters', params);
    if (update.downtimeLimitMs !== undefined) this.policy.downtimeLimitMs = update.downtimeLimitMs;
    if (update.maxBandwidthMibPerSec !== undefined) this.policy.maxBandwidthMibPerSec = update.maxBandwidthMibPerSec;
    // Forced: the switch-over comes at QEMU's next iteration, the round limit must not cancel it first.
    if (update.forceComplete) this.policy.maxRounds = Number.MAX_SAFE_INTEGER;
  }

  /**
   * migrate_cancel before the switch-over; resolves once QEMU cancelled and the source runs again.
   * @throws InvalidGuestStateError once the switch-over was let go (too late: commit or roll back instead)
   */
  async cancel(): Promise<void> {
    if (this.current === 'cancelled' || this.current === 'failed') return;
    if (this.current === 'switching' || this.current === 'completed') {
      throw new InvalidGuestStateError(this.vmId, `migration ${this.current}`, 'cancel the migration');
    }
    this.stopReason ??= new MigrationCancelledError(this.vmId);
    await this.guest.qmp.execute('migrate_cancel');
    await this.finished.catch(() => {});
  }

  /** Resolves when the migration reached a final state (never rejects); the state says which. */
  async settled(): Promise<OutgoingState> {
    await this.finished.catch(() => {});
    return this.current;
  }

  private moveTo(next: OutgoingState): void {
    if (next === this.current) return;
    if (!canMoveOutgoing(this.current, next)) throw new InvalidGuestStateError(this.vmId, `migration ${this.current}`, `move to ${next}`);
    this.current = next;
    this.emit('state', next);
  }

  private async pollUntilFinal(): Promise<QemuMigrationInfo> {
    for (;;) {
      let info: QemuMigrationInfo;
      try {
        info = await this.guest.qmp.execute<QemuMigrationInfo>('query-migrate');
      } catch (err) {
        return this.fail(new MigrationFailedError(this.vmId, `the source's QMP failed: ${(err as Error).message}`));
      }
      const status = info.status ?? 'none';
      if (status === 'pre-switchover' && this.pausedAtMs === undefined) this.pausedAtMs = Date.now();
      this.report(info);
      if (status === 'active' && this.current === 'starting') this.moveTo('precopy');
      if (status === 'pre-switchover' && (this.current === 'starting' || this.current === 'precopy')) {
        this.moveTo('switchover-ready');
        this.resolveGate(this.lastProgress);
      }
      if (status === 'completed') {
        this.moveTo('completed');
        return this.settledFigures(info);
      }
      if (status === 'cancelled') return this.fail(this.stopReason ?? new MigrationCancelledError(this.vmId), 'cancelled');
      if (status === 'failed') return this.fail(new MigrationFailedError(this.vmId, info['error-desc'] ?? 'QEMU reports failed'));
      if (this.stopReason === null && (this.current === 'starting' || this.current === 'precopy')) this.checkLimits();
      await delay(MIGRATION_POLL_MS);
    }
  }

  /**
   * QEMU 7.2 sets the status `completed` a moment before it records total-time and downtime, so a poll
   * can see `completed` with both 0: ask again briefly until they are there.
   */
  private async settledFigures(info: QemuMigrationInfo): Promise<QemuMigrationInfo> {
    for (let i = 0; i < 20 && !info['total-time']; i++) {
      await delay(10);
      info = await this.guest.qmp.execute<QemuMigrationInfo>('query-migrate').catch(() => info);
    }
    this.report(info);
    return info;
  }

  /** Cancels a migration past its round or time limit (QEMU would go on for ever). */
  private checkLimits(): void {
    const round = this.lastProgress.round;
    const elapsedMs = Date.now() - this.startedAtMs;
    if (round > this.policy.maxRounds || elapsedMs > this.policy.completionTimeoutMs) {
      this.stopReason = new MigrationNotConvergedError(this.vmId, round, elapsedMs);
      this.guest.qmp.execute('migrate_cancel').catch(() => {}); // the next poll sees `cancelled`
    }
  }

  private report(info: QemuMigrationInfo): void {
    const next = toMigrationProgress(this.migrationId, info, this.pausedAtMs);
    const changed = next.phase !== this.lastProgress.phase || next.round !== this.lastProgress.round;
    this.lastProgress = next;
    const now = Date.now();
    if (changed || now - this.lastEmitMs >= PROGRESS_HEARTBEAT_MS) {
      this.lastEmitMs = now;
      this.emit('progress', next);
    }
  }

  /** A failed or cancelled end: the source must run on (QEMU restarts it; make sure of it). */
  private async fail(err: Error, state: 'cancelled' | 'failed' = 'failed'): Promise<never> {
    this.failure = err;
    if (!isOutgoingFinal(this.current)) {
      this.current = canMoveOutgoing(this.current, state) ? state : 'failed';
      this.emit('state', this.current);
    }
    this.rejectGate(err);
    await ensureSourceRuns(this.guest);
    throw err;
  }
}

/**
 * After a failed or cancelled migration QEMU restarts a source that was running; this waits for it and
 * sends `cont` itself if the source stays stopped (a guest that is gone is left to the caller).
 */
async function ensureSourceRuns(guest: QemuGuest): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline) {
    const s = await guest.qemuStatus().catch(() => 'gone');
    if (s === 'running' || s === 'gone') return;
    if (s === 'paused' || s === 'postmigrate') {
      await guest.qmp.execute('cont').catch(() => {});
    }
    await delay(MIGRATION_POLL_MS);
  }
}
