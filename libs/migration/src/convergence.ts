/**
 * Pure convergence decisions of pre-copy: expected downtime, switch-over, max rounds, auto-converge.
 */
import { PAGE_SIZE } from './wire/frame.js';

/** QEMU cpu-throttle-initial / cpu-throttle-increment / max-cpu-throttle. */
export const THROTTLE_INITIAL_PERCENT = 20;
export const THROTTLE_INCREMENT_PERCENT = 10;
export const THROTTLE_MAX_PERCENT = 99;
/** Throttling starts after this many syncs in which the guest dirtied more than half of what was sent. */
export const HIGH_DIRTY_SYNCS_BEFORE_THROTTLE = 2;

/** Time to send `dirtyPages` at `bytesPerSec`, in ms: what stopping the VM now would cost. */
export function expectedDowntimeMs(dirtyPages: number, bytesPerSec: number, fixedCostMs = 0): number {
  if (dirtyPages === 0) return fixedCostMs;
  return (dirtyPages * PAGE_SIZE * 1000) / bytesPerSec + fixedCostMs;
}

/** Time to get through `dirtyPages` at `pagesPerSec` (the measured pace of the last rounds), in ms. */
export function expectedDowntimeFromPageRateMs(dirtyPages: number, pagesPerSec: number, fixedCostMs = 0): number {
  if (dirtyPages === 0) return fixedCostMs;
  return (dirtyPages * 1000) / pagesPerSec + fixedCostMs;
}

export type RoundDecision = 'switch-over' | 'continue' | 'give-up';

/**
 * After a round's dirty-log sync: switch over when the expected downtime fits the limit; give up when
 * `roundsDone` reached `maxRounds` without that; otherwise run another round.
 */
export function decideAfterRound(expectedMs: number, downtimeLimitMs: number, roundsDone: number, maxRounds: number): RoundDecision {
  if (expectedMs <= downtimeLimitMs) return 'switch-over';
  if (roundsDone >= maxRounds) return 'give-up';
  return 'continue';
}

/**
 * QEMU's auto-converge (migration_trigger_throttle + mig_throttle_guest_down): a sync is "high" when
 * the bytes dirtied since the previous sync exceed 50% of the bytes sent in that period. After
 * HIGH_DIRTY_SYNCS_BEFORE_THROTTLE high syncs the vCPU is throttled to 20%; each later high sync
 * adds 10%, up to 99%. (QEMU re-arms its counter after each step, so it adds 10% every second high
 * sync; stepping every round converges sooner and is what this project's spec asks for.)
 */
export class AutoConverge {
  private highSyncs = 0;
  private percent = 0;
  maxPercent = 0;

  constructor(private readonly enabled: boolean) {}

  get throttlePercent(): number {
    return this.percent;
  }

  /**
   * Records one sync.
   * @returns the new throttle percentage when it changed, otherwise -1.
   */
  onSync(dirtiedBytes: number, sentBytes: number): number {
    if (!this.enabled) return -1;
    if (dirtiedBytes <= sentBytes / 2) return -1;
    this.highSyncs++;
    if (this.percent === 0 && this.highSyncs < HIGH_DIRTY_SYNCS_BEFORE_THROTTLE) return -1;
    const next =
      this.percent === 0 ? THROTTLE_INITIAL_PERCENT : Math.min(THROTTLE_MAX_PERCENT, this.percent + THROTTLE_INCREMENT_PERCENT);
    if (next === this.percent) return -1;
    this.percent = next;
    this.maxPercent = Math.max(this.maxPercent, next);
    return next;
  }
}

/** Set bits of a dirty bitmap, a word at a time. */
export function countDirty(bitmap: Uint32Array, words = bitmap.length): number {
  let n = 0;
  for (let i = 0; i < words; i++) {
    let v = bitmap[i]!;
    if (v === 0) continue;
    v = v - ((v >>> 1) & 0x55555555);
    v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
    n += (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
  }
  return n;
}
