import {
  connectOutgoing,
  MigrationSender,
  MigrationStateError,
  type DataPlaneTls,
  type MigrationProgress,
  type OutgoingResult,
  type PartialMigrationPolicy,
  type PolicyUpdate,
} from '@vmm/migration';
import type { Logger } from 'pino';
import { MigrationStepError } from '../errors.js';
import { asEmulated } from '../hypervisor/emulated-vm.js';
import type { ManagedVm } from '../vm/vm-manager.js';

/** Connect attempts before a migration fails: the target's few pre-HELLO slots may be held by others for a moment. */
const CONNECT_ATTEMPTS = 4;
const CONNECT_RETRY_MS = 750;

/** Retries a refused or reset connect (nothing was sent yet), unless the migration was aborted. */
async function connectWithRetries<T>(connect: () => Promise<T>, signal: AbortSignal): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await connect();
    } catch (err) {
      if (attempt >= CONNECT_ATTEMPTS || signal.aborted) throw err;
      await new Promise((resolve) => setTimeout(resolve, CONNECT_RETRY_MS * attempt));
    }
  }
}

/**
 * The source end of one migration on this node:
 * sending → ready → released; sending or ready → rolled-back (final; the VM runs on here).
 * `ready` = the target verified its copy and the source VM is paused, waiting for the controller's
 * verdict: it never resumes by itself from there, since the controller may already have committed.
 */
export type OutgoingState = 'sending' | 'ready' | 'released' | 'rolled-back';

const allowed: Record<OutgoingState, readonly OutgoingState[]> = {
  sending: ['ready', 'rolled-back'],
  ready: ['released', 'rolled-back'],
  released: [],
  'rolled-back': [],
};

export interface SourceRunnerOptions {
  migrationId: string;
  entry: ManagedVm;
  targetDataAddress: string;
  token: string;
  /** Mutual TLS of the data connection (only the target node's certificate); undefined: plain TCP. */
  tls?: DataPlaneTls;
  policy: PartialMigrationPolicy;
  log: Logger;
  onProgress: (progress: MigrationProgress) => void;
  /** The switch-over's cost beyond the engine's own prediction (commit path), learned by the agent. */
  switchOverOverheadMs?: number;
  /** The controller answers a held switch-over (StartOutgoingRequest.gate_switchover). */
  gateSwitchover: boolean;
  /** How long a driver that holds at the switch-over waits for ContinueSwitchover (SWITCHOVER_HOLD_MS). */
  switchoverHoldMs: number;
  /**
   * Told synchronously on every state change, before anyone hears of it (the ledger makes it durable):
   * `ready` is on disk before the COMMITTING message goes to the controller.
   */
  onState: (state: OutgoingState) => void;
}

/**
 * The source end of one migration as MigrationService drives it, whichever driver moves the VM (the
 * emulator's engine here, QEMU's migrate in hypervisor/qemu/): the same states, the same result shape.
 */
export interface OutgoingRunner {
  readonly migrationId: string;
  readonly vmId: string;
  readonly state: OutgoingState;
  /** The driver's phase while sending (PREPARING, PRECOPY, STOP_AND_COPY, …). */
  readonly phase: string;
  readonly startedAtMs: number;
  /** Set once ready: both digests, the pause, the figures. */
  readonly result: OutgoingResult | undefined;
  /** Why it rolled back; `code` is the stable reason (NOT_CONVERGED, CONNECTION_LOST, DIGEST_MISMATCH, …). */
  readonly error: (Error & { code?: string }) | undefined;
  /** performance.now() when the COMMITTING message went out (0 = not yet). */
  committingSentAt: number;
  /** Runs the transfer to ready-to-commit; never rejects (a failure rolls back, see `error`). */
  run(): Promise<void>;
  /** @throws MigrationStepError unless ready (or already released) */
  assertReleasable(): void;
  release(): void;
  /** Before the commit: stops the transfer (or leaves ready) and the source runs on. */
  abort(reason: string): void;
  /**
   * UpdateMigration: a new downtime limit or bandwidth, or force the switch-over, from the next round.
   * @throws MigrationStepError unless still sending pre-copy rounds
   * @throws InvalidPolicyError for a value out of its range (nothing changes)
   * @throws NotImplementedError where the driver cannot apply it
   */
  update(update: PolicyUpdate): Promise<void>;
  /**
   * ContinueSwitchover: a source holding at the switch-over point (it sent STOP_AND_COPY with
   * `awaitingSwitchover`) sends the last pages. Idempotent once continued.
   * @throws MigrationStepError where it does not hold (not there yet, rolled back, a driver that never holds)
   */
  continueSwitchover(): void;
}

/** Streams a VM to the target's data listener with the pre-copy engine. */
export class SourceRunner implements OutgoingRunner {
  private current: OutgoingState = 'sending';
  private readonly abortController = new AbortController();
  private readonly sender: MigrationSender;
  result: OutgoingResult | undefined;
  error: (Error & { code?: string }) | undefined;
  readonly startedAtMs = Date.now();
  /** performance.now() when the COMMITTING message went out (0 = not yet): times the commit path. */
  committingSentAt = 0;

  /** @throws InvalidPolicyError (from the engine) for a bad policy, before anything starts */
  constructor(private readonly opts: SourceRunnerOptions) {
    this.sender = new MigrationSender({
      vm: asEmulated(opts.entry.vm),
      migrationId: opts.migrationId,
      token: opts.token,
      policy: opts.policy,
      signal: this.abortController.signal,
      onProgress: opts.onProgress,
      switchOverOverheadMs: opts.switchOverOverheadMs,
    });
  }

  get migrationId(): string {
    return this.opts.migrationId;
  }

  get vmId(): string {
    return this.opts.entry.vm.id;
  }

  get state(): OutgoingState {
    return this.current;
  }

  /** The engine's phase while sending (PREPARING, PRECOPY, STOP_AND_COPY, …). */
  get phase(): string {
    return this.sender.currentPhase;
  }

  /** Runs the transfer to ready-to-commit; never rejects (a failure rolls back, see `error`). */
  async run(): Promise<void> {
    const { migrationId, targetDataAddress, log } = this.opts;
    try {
      const connection = await connectWithRetries(() => connectOutgoing(targetDataAddress, { signal: this.abortController.signal, migrationId, tls: this.opts.tls }), this.abortController.signal);
      const result = await this.sender.run(connection);
      // An abort that raced the last frame has already resumed the VM through the result's listener.
      if (this.abortController.signal.aborted) {
        result.abort();
        throw this.abortController.signal.reason;
      }
      if (!this.transition('ready')) {
        result.abort();
        return;
      }
      this.result = result;
      log.info(
        { migrationId, vmId: this.vmId, rounds: result.stats.rounds, bytesSent: result.stats.bytesSent, digest: result.sourceDigest },
        'outgoing migration verified by the target; source paused until commit',
      );
    } catch (err) {
      this.error = err instanceof Error ? err : new Error(String(err));
      this.transition('rolled-back');
      log.warn({ migrationId, vmId: this.vmId, code: this.error.code, reason: this.error.message }, 'outgoing migration failed; source runs on');
    }
  }

  /** @throws MigrationStepError unless the transfer is verified (or already released) */
  assertReleasable(): void {
    if (this.current === 'released') return;
    if (this.current !== 'ready' || !this.result) {
      throw new MigrationStepError(this.migrationId, `cannot release: outgoing migration is ${this.current}`);
    }
  }

  /** After the commit: destroys the source copy (if the VM manager has not already). Idempotent. */
  release(): void {
    this.assertReleasable();
    if (this.current === 'released') return;
    this.transition('released');
    this.result!.commit();
  }

  /** Before the commit: stops the transfer (or leaves ready) and resumes the source VM. */
  abort(reason: string): void {
    if (this.current === 'released') {
      throw new MigrationStepError(this.migrationId, 'cannot abort: the source copy was released');
    }
    if (this.current === 'sending') {
      // The engine rolls back (resumes the VM) and run() settles as rolled-back.
      this.abortController.abort(new Error(reason));
      return;
    }
    if (this.current === 'ready' && this.result) {
      this.transition('rolled-back');
      this.result.abort();
      this.opts.log.info({ migrationId: this.migrationId, vmId: this.vmId, reason }, 'outgoing migration aborted; source resumed');
    }
  }

  /** UpdateMigration through the engine (MigrationSender.update): counts from the next round. */
  async update(update: PolicyUpdate): Promise<void> {
    if (this.current !== 'sending') throw new MigrationStepError(this.migrationId, `cannot update: outgoing migration is ${this.current}`);
    try {
      const policy = this.sender.update(update);
      this.opts.log.info(
        { migrationId: this.migrationId, vmId: this.vmId, downtimeLimitMs: policy.downtimeLimitMs, maxBandwidthMibPerSec: policy.maxBandwidthMibPerSec, forceComplete: this.sender.forceComplete },
        'outgoing migration updated',
      );
    } catch (error) {
      if (error instanceof MigrationStateError) throw new MigrationStepError(this.migrationId, `cannot update: ${error.message}`);
      throw error;
    }
  }

  /** The engine switches over on its own (its pause is bounded by the target's VERIFIED): it never holds. */
  continueSwitchover(): void {
    throw new MigrationStepError(this.migrationId, 'cannot continue the switch-over: the emulator does not hold at it');
  }

  private transition(next: OutgoingState): boolean {
    if (!allowed[this.current].includes(next)) return false;
    this.opts.onState(next);
    this.current = next;
    return true;
  }
}
