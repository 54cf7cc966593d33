/**
 * The switch-over decision after a pre-copy round, as a pure function of what the sender measured:
 * predict the pause of stopping now, and switch over when it fits the downtime limit.
 *
 *   paused copy  = dirty × DIRTY_MARGIN / pages-per-second
 *   expected     = paused copy + 2 × digest walk + dirty × DIRTY_MARGIN × hash cost + switch-over overhead
 *
 * The fixed costs (both digests, the receiver's hashing of the paused round, the commit path) are
 * counted only once the paused copy alone fits the limit: until then they cannot change the verdict,
 * and the digest walk is measured (once, by running a digest) only when it matters (needsDigestWalk).
 */
import { expectedDowntimeFromPageRateMs, decideAfterRound, type RoundDecision } from './convergence.js';

/**
 * Safety factor on the pages to send under pause: the dirty set grows between the last sync and the
 * pause, and the final round also competes with both digests for the CPU.
 */
export const DIRTY_MARGIN = 1.25;

/** What the sender knows after a round's dirty-log sync. */
export interface RoundFacts {
  /** Pages dirtied during the round just acknowledged: the pages a pause now would send. */
  dirtyPages: number;
  /** Non-zero pages per second the stream got through end to end (the slower of the last rounds). */
  pagesPerSec: number;
  downtimeLimitMs: number;
  /** A digest's cost over cached hashes, in ms (0 until measured: see needsDigestWalk). */
  digestWalkMs: number;
  /** One page hash's cost in ms (the receiver hashes the paused round's pages in its digest). */
  hashMsPerPage: number;
  /** Device state, VERIFIED round trip, commit through the control plane, the target's resume, in ms. */
  switchOverOverheadMs: number;
  /** Pre-copy rounds acknowledged so far, this one included. */
  roundsDone: number;
  maxRounds: number;
  /**
   * UpdateMigration's force_complete (Nova's force-complete): switch over now whatever the prediction
   * (the paused time is still bounded by the sender's switch-over timeout).
   */
  forceComplete?: boolean;
}

export interface RoundVerdict {
  decision: RoundDecision;
  /** The predicted pause of stopping now, fixed costs included once the copy alone fits. */
  expectedDowntimeMs: number;
  /**
   * The predicted paused copy plus both digests (overhead excluded), once the copy alone fits;
   * else 0. Callers compare it with the measured stop-and-copy time to learn the overhead.
   */
  expectedStopAndCopyMs: number;
}

/** The paused copy of `dirtyPages` at the measured pace, with the safety margin, in ms. */
export function pausedCopyMs(dirtyPages: number, pagesPerSec: number): number {
  return expectedDowntimeFromPageRateMs(dirtyPages * DIRTY_MARGIN, pagesPerSec);
}

/** True when the paused copy alone fits the limit: the fixed costs decide, so the digest walk must be known. */
export function needsDigestWalk(dirtyPages: number, pagesPerSec: number, downtimeLimitMs: number): boolean {
  return pausedCopyMs(dirtyPages, pagesPerSec) <= downtimeLimitMs;
}

/**
 * Switch over when the expected downtime fits the limit (or when forced); give up once `maxRounds`
 * rounds ran without that; otherwise run another round.
 */
export function decideRound(f: RoundFacts): RoundVerdict {
  const copyMs = pausedCopyMs(f.dirtyPages, f.pagesPerSec);
  let expectedDowntimeMs = copyMs;
  let expectedStopAndCopyMs = 0;
  if (copyMs <= f.downtimeLimitMs || f.forceComplete) {
    // The source hashed every page as it sent it and the receiver hashed each round before its ack,
    // so under pause each digest walks the cached hashes, and the receiver's also hashes the paused round.
    expectedStopAndCopyMs = copyMs + 2 * f.digestWalkMs + f.dirtyPages * DIRTY_MARGIN * f.hashMsPerPage;
    expectedDowntimeMs = expectedStopAndCopyMs + f.switchOverOverheadMs;
  }
  return {
    decision: f.forceComplete ? 'switch-over' : decideAfterRound(expectedDowntimeMs, f.downtimeLimitMs, f.roundsDone, f.maxRounds),
    expectedDowntimeMs,
    expectedStopAndCopyMs,
  };
}
