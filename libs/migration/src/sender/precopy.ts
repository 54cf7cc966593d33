/**
 * PRECOPY: round 0 sends every page, each later round the pages dirtied during the one before, until
 * the switch-over decision (switch-over.ts) says stop now, or gives up (NOT_CONVERGED).
 */
import type { VirtualMachine } from '@vmm/emulator';
import { BandwidthEstimator } from '../bandwidth.js';
import type { AutoConverge } from '../convergence.js';
import { ConvergenceError } from '../errors.js';
import { bandwidthBytesPerSec, type MigrationPolicy } from '../policy.js';
import type { MigrationProgress } from '../progress.js';
import { decideRound, needsDigestWalk } from '../switch-over.js';
import { trace } from '../trace.js';
import { PAGE_SIZE } from '../wire/frame.js';
import { hashPass, measureDigestWalkMs } from './hash-calibration.js';
import type { OutgoingStream } from './outgoing-stream.js';

export type ProgressFields = Omit<MigrationProgress, 'migrationId' | 'phase'>;

export interface PrecopyContext {
  stream: OutgoingStream;
  vm: VirtualMachine;
  migrationId: string;
  policy: MigrationPolicy;
  converge: AutoConverge;
  /** One page hash's cost in ms (calibrated before HELLO). */
  hashMsPerPage: number;
  switchOverOverheadMs: number;
  /**
   * Read at every round's decision: UpdateMigration's force_complete (switch over whatever the
   * prediction). `policy` itself is read there too, so that a new downtime limit or bandwidth
   * (MigrationSender.update) counts from the next round on.
   */
  forceComplete(): boolean;
  /** Reports a round's figures (the sender adds the id and phase). */
  report(progress: ProgressFields): void;
}

export interface PrecopyOutcome {
  /** The last pre-copy round (the pause sends round + 1). */
  round: number;
  /** The switch-over's prediction of the paused copy and both digests (SenderStats.expectedStopAndCopyMs). */
  expectedStopAndCopyMs: number;
}

/**
 * Runs pre-copy rounds until the expected downtime fits the limit, or until a round's decision finds
 * force_complete set.
 * @throws ConvergenceError after max_rounds rounds that did not fit
 */
export async function runPrecopy(ctx: PrecopyContext): Promise<PrecopyOutcome> {
  const { stream, vm, migrationId, policy, converge } = ctx;
  const memory = vm.memory;
  let capBytesPerSec = bandwidthBytesPerSec(policy);
  const bandwidth = new BandwidthEstimator(capBytesPerSec);
  let lastSyncMs = performance.now();
  let digestWalkMs = 0;
  let walkMeasured = false;
  for (let round = 0; ; round++) {
    // A bandwidth changed by UpdateMigration: the stream is paced at once, the estimate from this round.
    if (bandwidthBytesPerSec(policy) !== capBytesPerSec) {
      capBytesPerSec = bandwidthBytesPerSec(policy);
      bandwidth.setCap(capBytesPerSec);
    }
    const unlimited = !Number.isFinite(capBytesPerSec);
    const roundStart = performance.now();
    const bytesBefore = stream.bytesWritten;
    const nonZeroBefore = stream.nonZeroPages;
    // Round 0 at unlimited bandwidth: move the pages first, hash them while the receiver finishes its
    // own hashing before ROUND_ACK (hashing on copy is a third of the sender's CPU per page, and on a
    // CPU-bound stream it sets the pace). Under a bandwidth cap the sender idles anyway.
    const hashAfter = round === 0 && unlimited;
    stream.hashOnCopy = !hashAfter;
    await stream.sendRound(round, round === 0 ? 'all' : 'dirty', false);
    if (hashAfter) {
      await hashPass(memory, stream.session.signal);
      stream.hashOnCopy = true;
    }
    // A round ends when the receiver has applied it, not when the socket took it: kernel buffers hold
    // thousands of XBZRLE deltas, and the downtime estimate needs the end-to-end pace.
    await stream.roundApplied(round);
    const roundBytes = stream.bytesWritten - bytesBefore;
    bandwidth.sample(roundBytes, stream.nonZeroPages - nonZeroBefore, performance.now() - roundStart);
    const dirty = stream.syncDirty();
    const now = performance.now();
    // Measured once, at the first round near the switch-over. (Measuring again after each near round
    // that continued hashes that round's dirty pages on the source each time: in bench:migration
    // r150000-xbzrle-bw128 it doubled the median rounds, 5.5 → 10.)
    const forceComplete = ctx.forceComplete();
    if (!walkMeasured && (forceComplete || needsDigestWalk(dirty, bandwidth.pagesPerSec, policy.downtimeLimitMs))) {
      digestWalkMs = measureDigestWalkMs(memory, ctx.hashMsPerPage);
      walkMeasured = true;
    }
    const verdict = decideRound({
      dirtyPages: dirty,
      pagesPerSec: bandwidth.pagesPerSec,
      downtimeLimitMs: policy.downtimeLimitMs,
      digestWalkMs,
      hashMsPerPage: ctx.hashMsPerPage,
      switchOverOverheadMs: ctx.switchOverOverheadMs,
      roundsDone: round + 1,
      maxRounds: policy.maxRounds,
      forceComplete,
    });
    const throttle = converge.onSync(dirty * PAGE_SIZE, roundBytes);
    if (throttle >= 0) vm.setThrottle(throttle);
    ctx.report({
      round,
      pagesTotal: memory.pageCount,
      pagesSent: stream.pagesSent,
      bytesSent: stream.bytesWritten,
      dirtyPagesRemaining: dirty,
      dirtyRatePagesPerSec: (dirty * 1000) / Math.max(1, now - lastSyncMs),
      throughputBytesPerSec: bandwidth.bytesPerSec,
      expectedDowntimeMs: verdict.expectedDowntimeMs,
      throttlePercent: converge.throttlePercent,
    });
    lastSyncMs = now;
    const expectedMs = verdict.expectedDowntimeMs;
    trace(migrationId, () => `round ${round}: ${dirty} dirty, expected downtime ${expectedMs.toFixed(1)} ms, throttle ${converge.throttlePercent}% → ${verdict.decision}${forceComplete ? ' (forced)' : ''}`);
    if (verdict.decision === 'switch-over') return { round, expectedStopAndCopyMs: verdict.expectedStopAndCopyMs };
    if (verdict.decision === 'give-up') {
      throw new ConvergenceError(migrationId, round + 1, dirty, expectedMs, policy.maxRounds, policy.downtimeLimitMs);
    }
  }
}
