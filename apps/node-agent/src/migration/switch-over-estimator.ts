/**
 * Learns what a switch-over costs on this node beyond what the engine predicts itself, so that the
 * sender's expected downtime (and so its decision to pause) includes the real commit path: the source's
 * COMMITTING message, the controller's commit scripts, CommitIncoming on the target, then the release
 * (6–95 ms measured under load, against the engine's in-process 5 ms).
 *
 * overhead = commit latency + how much the paused copy and digests overran their prediction, each an
 * asymmetric EWMA that rises fast on a worse sample and decays slowly, so that a loaded machine keeps
 * the estimate conservative.
 */

/** Before anything was observed: the middle of the measured commit latencies, rounded up. */
export const INITIAL_SWITCH_OVER_OVERHEAD_MS = 40;
/** Never less than the engine's own fixed cost (device state, VERIFIED round trip, resume). */
const MIN_OVERHEAD_MS = 5;
/** A bound that still lets a 300 ms downtime limit converge after one pathological sample. */
const MAX_OVERHEAD_MS = 200;
const ALPHA_UP = 0.5;
const ALPHA_DOWN = 0.1;

function ewma(current: number, sample: number): number {
  return current + (sample > current ? ALPHA_UP : ALPHA_DOWN) * (sample - current);
}

export class SwitchOverEstimator {
  private commitMs: number;
  private copyOverrunMs = 0;

  constructor(initialMs = INITIAL_SWITCH_OVER_OVERHEAD_MS) {
    this.commitMs = initialMs;
  }

  /** What to pass as the sender's switchOverOverheadMs. */
  get overheadMs(): number {
    return Math.min(MAX_OVERHEAD_MS, Math.max(MIN_OVERHEAD_MS, this.commitMs + this.copyOverrunMs));
  }

  /** COMMITTING sent → ReleaseOutgoing received: an upper bound of the commit's share of the downtime. */
  observeCommit(latencyMs: number): void {
    if (Number.isFinite(latencyMs) && latencyMs >= 0) this.commitMs = ewma(this.commitMs, latencyMs);
  }

  /** The paused copy and digests as measured against the sender's prediction at the switch-over. */
  observeStopAndCopy(actualMs: number, predictedMs: number): void {
    if (!Number.isFinite(actualMs) || !Number.isFinite(predictedMs) || predictedMs <= 0) return;
    this.copyOverrunMs = ewma(this.copyOverrunMs, Math.max(0, actualMs - predictedMs));
  }
}
