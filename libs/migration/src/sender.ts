/**
 * The source end of a pre-copy migration. Knows nothing of gRPC: give it a Duplex to the receiver.
 *
 * PREPARING (HELLO, wait for HELLO_ACK) → PRECOPY (round 0: every page; round n: pages dirtied during
 * round n-1) → STOP_AND_COPY (pause, last dirty pages, device state, COMPLETE, wait for VERIFIED) →
 * ready to commit. Any failure before commit rolls back: the source resumes (if it was running).
 */
import type { Duplex } from 'node:stream';
import { initHashing, type VirtualMachine } from '@vmm/emulator';
import { AutoConverge } from './convergence.js';
import { DEFAULT_IDLE_TIMEOUT_MS, checkTimeoutOption, switchOverTimeoutMsFor } from './data-plane-limits.js';
import { MigrationStateError } from './errors.js';
import { assertTransition, type MigrationPhase } from './phase.js';
import {
  applyPolicyUpdate,
  bandwidthBytesPerSec,
  checkPolicyUpdate,
  resolvePolicy,
  type MigrationPolicy,
  type PartialMigrationPolicy,
  type PolicyUpdate,
} from './policy.js';
import type { MigrationProgress, SenderStats } from './progress.js';
import { ReadyToCommit } from './ready-result.js';
import { calibrateHashMsPerPage } from './sender/hash-calibration.js';
import { OutgoingStream } from './sender/outgoing-stream.js';
import { runPrecopy, type PrecopyOutcome, type ProgressFields } from './sender/precopy.js';
import { stopAndCopy, type PausedCopy } from './sender/stop-and-copy.js';
import { trace } from './trace.js';
import { MIN_PROTOCOL_VERSION, PAGE_SIZE, PROTOCOL_VERSION, type HelloPayload } from './wire/frame.js';

/**
 * Device state, COMPLETE/VERIFIED round trip and the target's resume, in ms, when the caller knows no
 * better. Through a control plane the switch-over also waits for the commit (agents, controller): the
 * agent passes what it measured as `switchOverOverheadMs`.
 */
export const DEFAULT_SWITCH_OVER_OVERHEAD_MS = 5;

export interface SenderOptions {
  vm: VirtualMachine;
  migrationId: string;
  token: string;
  policy?: PartialMigrationPolicy;
  /** Cancels the migration in any phase before commit. */
  signal?: AbortSignal;
  onProgress?: (progress: MigrationProgress) => void;
  /**
   * Fixed cost of the switch-over beyond sending the last pages and the two digests (device state, the
   * VERIFIED round trip, the commit through the control plane, the target's resume), in ms. Counted in
   * the expected downtime. Default DEFAULT_SWITCH_OVER_OVERHEAD_MS (an in-process commit).
   */
  switchOverOverheadMs?: number;
  /**
   * No byte either way on the connection for this long after HELLO_ACK fails the migration with
   * CONNECTION_IDLE, in ms; 0 = no bound. Default DEFAULT_IDLE_TIMEOUT_MS (30 s).
   */
  idleTimeoutMs?: number;
  /**
   * The source stays paused at most this long, in ms, before the target's VERIFIED; then the sender
   * rolls back (SWITCHOVER_TIMEOUT) and the source resumes. Once VERIFIED arrived the source never
   * resumes by itself. Default switchOverTimeoutMsFor(downtime limit): 10 s, or 10× the limit if longer.
   */
  switchOverTimeoutMs?: number;
}

/** Ready to commit: the target holds a verified copy; the source is paused, not destroyed. */
export interface OutgoingResult {
  migrationId: string;
  sourceDigest: string;
  targetDigest: string;
  /** Epoch ms when the source paused: downtime runs from here to the target's resume. */
  pausedAtMs: number;
  /** Start → ready to commit. */
  totalTimeMs: number;
  policy: MigrationPolicy;
  stats: SenderStats;
  /** After the cluster committed: the source VM is destroyed; it can never run again. */
  commit(): void;
  /** Before commit: the source VM resumes where it paused. */
  abort(): void;
}

export class MigrationSender {
  /** Mutated in place by update(): runPrecopy holds this object and reads it at every round. */
  private readonly currentPolicy: MigrationPolicy;
  private phase: MigrationPhase = 'PREPARING';
  private lastProgress: MigrationProgress | null = null;
  /** The data connection while run() streams (for a bandwidth change to pace it at once). */
  private stream: OutgoingStream | undefined;
  /** UpdateMigration's force_complete: the next round's decision switches over. */
  private forced = false;

  constructor(private readonly opts: SenderOptions) {
    this.currentPolicy = resolvePolicy(opts.policy, opts.vm.memory.pageCount * PAGE_SIZE);
    const overhead = opts.switchOverOverheadMs ?? DEFAULT_SWITCH_OVER_OVERHEAD_MS;
    if (!Number.isFinite(overhead) || overhead < 0) throw new MigrationStateError(`switchOverOverheadMs must be ≥ 0, got ${overhead}`);
    this.switchOverOverheadMs = overhead;
    this.idleTimeoutMs = checkTimeoutOption('idleTimeoutMs', opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS, true);
    if (opts.switchOverTimeoutMs !== undefined) checkTimeoutOption('switchOverTimeoutMs', opts.switchOverTimeoutMs, false);
  }

  private readonly switchOverOverheadMs: number;
  private readonly idleTimeoutMs: number;

  /** The policy in force: the resolved one, with UpdateMigration's changes applied. */
  get policy(): MigrationPolicy {
    return this.currentPolicy;
  }

  /** The bound on the paused time before VERIFIED, from the downtime limit in force at the pause. */
  private get switchOverTimeoutMs(): number {
    return this.opts.switchOverTimeoutMs ?? switchOverTimeoutMsFor(this.currentPolicy.downtimeLimitMs);
  }

  /** True once force_complete was asked for. */
  get forceComplete(): boolean {
    return this.forced;
  }

  /**
   * UpdateMigration on the source (QEMU's migrate-set-parameters on a running migration): a new
   * downtime limit counts from the next round's decision, a new bandwidth paces the stream at once
   * (and caps the estimate from the next round), force_complete makes the next round's decision
   * switch over whatever the predicted downtime. The paused time stays bounded by the switch-over
   * timeout. Allowed while PREPARING or PRECOPY.
   * @returns the policy in force after the change
   * @throws InvalidPolicyError for a value out of its range (nothing changes)
   * @throws MigrationStateError once the switch-over has begun, or after the end
   */
  update(update: PolicyUpdate): MigrationPolicy {
    const checked = checkPolicyUpdate(update);
    if (this.phase !== 'PREPARING' && this.phase !== 'PRECOPY') {
      throw new MigrationStateError(`migration ${this.opts.migrationId} is ${this.phase}: only a migration in pre-copy can be updated`);
    }
    const before = bandwidthBytesPerSec(this.currentPolicy);
    Object.assign(this.currentPolicy, applyPolicyUpdate(this.currentPolicy, checked));
    if (checked.forceComplete) this.forced = true;
    const after = bandwidthBytesPerSec(this.currentPolicy);
    if (after !== before) this.stream?.setBandwidth(after);
    const p = this.currentPolicy;
    trace(this.opts.migrationId, () => `update: downtime limit ${p.downtimeLimitMs} ms, bandwidth ${p.maxBandwidthMibPerSec} MiB/s${this.forced ? ', force complete' : ''}`);
    return { ...p };
  }

  get currentPhase(): MigrationPhase {
    return this.phase;
  }

  /** Streams the VM to the receiver at the other end of `connection`, up to ready-to-commit. */
  async run(connection: Duplex): Promise<OutgoingResult> {
    const { vm, migrationId } = this.opts;
    const startMs = performance.now();
    if (vm.state === 'stopped') {
      connection.destroy();
      throw new MigrationStateError(`migration ${migrationId}: source VM ${vm.id} is stopped`);
    }
    const wasRunning = vm.state === 'running';
    // The stream's session listens for 'error' from here on: nothing may await before it is attached.
    const stream = new OutgoingStream(connection, vm.memory, this.policy, migrationId, this.opts.signal);
    this.stream = stream;
    const converge = new AutoConverge(this.policy.autoConverge);
    try {
      await initHashing();
      const hashMsPerPage = calibrateHashMsPerPage(vm.memory);
      this.setPhase('PREPARING');
      const version = await stream.handshake(this.hello(), this.idleTimeoutMs);
      trace(migrationId, () => `HELLO_ACK (protocol version ${version}) after ${(performance.now() - startMs).toFixed(1)} ms`);

      this.setPhase('PRECOPY');
      const report = (p: ProgressFields) => this.emit(p);
      const { switchOverOverheadMs } = this;
      const forceComplete = () => this.forced;
      const precopy = await runPrecopy({ stream, vm, migrationId, policy: this.currentPolicy, converge, hashMsPerPage, switchOverOverheadMs, forceComplete, report });

      this.setPhase('STOP_AND_COPY');
      const paused = await stopAndCopy({
        stream, vm, migrationId, round: precopy.round + 1, switchOverTimeoutMs: this.switchOverTimeoutMs, report: (p) => this.emit({ ...this.lastProgress!, ...p }),
      });
      await stream.finish();
      const stats = this.stats(stream, converge, precopy, paused);
      this.emit({ ...this.lastProgress!, pagesSent: stream.pagesSent, bytesSent: stream.bytesWritten, dirtyPagesRemaining: 0, expectedDowntimeMs: 0, throttlePercent: 0 });
      return this.readyResult(paused, performance.now() - startMs, stats, wasRunning);
    } catch (err) {
      throw this.rollBack(stream, err, wasRunning);
    } finally {
      // The transfer is over: a settled sender (kept a while by its caller for retries) keeps neither
      // the connection nor the XBZRLE cache, which may be a quarter of the VM.
      this.stream = undefined;
    }
  }

  /** HELLO: the protocol versions this build speaks, the token, and the VM spec the target checks. */
  private hello(): HelloPayload {
    const { vm, migrationId, token } = this.opts;
    return {
      version: MIN_PROTOCOL_VERSION,
      maxVersion: PROTOCOL_VERSION,
      migrationId,
      token,
      pageCount: vm.memory.pageCount,
      memoryMib: vm.memoryMib,
      image: vm.image,
      vcpus: vm.vcpus,
      residentPages: vm.memory.residentPages,
      completionTimeoutMs: this.policy.completionTimeoutMs,
    };
  }

  private stats(stream: OutgoingStream, converge: AutoConverge, precopy: PrecopyOutcome, paused: PausedCopy): SenderStats {
    return {
      rounds: precopy.round + 2, // the pre-copy rounds and the paused one
      pagesTotal: this.opts.vm.memory.pageCount,
      pagesSent: stream.pagesSent,
      ...stream.counters,
      xbzrleCacheHits: stream.cache?.hits ?? 0,
      xbzrleCacheMisses: stream.cache?.misses ?? 0,
      bytesSent: stream.bytesWritten,
      throttlePercentMax: converge.maxPercent,
      stopAndCopyPages: paused.stopAndCopyPages,
      stopAndCopyMs: performance.now() - paused.pausedAtPerf,
      expectedStopAndCopyMs: precopy.expectedStopAndCopyMs,
      maxBufferedBytes: stream.writer.maxBufferedBytes,
    };
  }

  /** Every failure before ready-to-commit: the source runs again (if it was running), the peer is told. */
  private rollBack(stream: OutgoingStream, err: unknown, wasRunning: boolean): Error {
    const vm = this.opts.vm;
    const error = stream.fail(err);
    const state: string = vm.state;
    if (state !== 'stopped') {
      vm.setThrottle(0);
      if (wasRunning && state === 'paused') vm.resume();
    }
    this.phase = (error as { code?: string }).code === 'CANCELLED' ? 'CANCELLED' : 'FAILED';
    trace(this.opts.migrationId, () => `${this.phase}: ${error.message}; source ${vm.state}`);
    return error;
  }

  private readyResult(paused: PausedCopy, totalTimeMs: number, stats: SenderStats, wasRunning: boolean): OutgoingResult {
    const vm = this.opts.vm;
    const verdict = new ReadyToCommit(
      this.opts.migrationId,
      this.opts.signal,
      () => {
        if (vm.state !== 'stopped') vm.stop();
      },
      () => {
        if (wasRunning && vm.state === 'paused') vm.resume();
      },
    );
    const { sourceDigest, targetDigest, pausedAtMs } = paused;
    return {
      migrationId: this.opts.migrationId, sourceDigest, targetDigest, pausedAtMs, totalTimeMs, policy: { ...this.policy }, stats,
      commit: () => void verdict.commit(),
      abort: verdict.abort,
    };
  }

  private setPhase(next: MigrationPhase): void {
    if (this.phase === next) return;
    trace(this.opts.migrationId, () => `${this.phase} → ${next}`);
    this.phase = assertTransition(this.phase, next);
  }

  /** `fields` may carry an earlier event's migrationId and phase: the current ones win. */
  private emit(fields: ProgressFields): void {
    const progress: MigrationProgress = { ...fields, migrationId: this.opts.migrationId, phase: this.phase };
    this.lastProgress = progress;
    this.opts.onProgress?.(progress);
  }
}
