import { bitmapWords, popcount, type DirtyLog } from '@vmm/emulator';

/** Reports OR-ed together for the working-set estimate (~10 s at the default 1 s interval). */
export const WORKING_SET_WINDOW_REPORTS = 10;

/** One report's worth of dirty-page facts about a VM. `bitmap` is reused by the next sample. */
export interface DirtySample {
  /** Pages written since the previous sample, 1 bit per page. */
  bitmap: Uint32Array;
  dirtyPages: number;
  /** Distinct pages dirtied per second of wall time since the previous sample. */
  dirtyRatePagesPerSec: number;
  /** Distinct pages dirtied over the last WORKING_SET_WINDOW_REPORTS samples. */
  workingSetPages: number;
  elapsedMs: number;
}

/** What the reports sample on a VM each interval, whichever driver runs it. */
export interface DirtySampler {
  /** The facts since the previous sample; the bitmap stays valid until the next one. */
  sample(nowMs: number): DirtySample;
  /** Forgets what was logged so far (a committed migration target's transfer writes), restarting the clock at `nowMs`. */
  reset(nowMs: number): void;
  /** Stops logging; later samples report nothing. */
  dispose(): void;
}

/**
 * The agent's own dirty-memory client on a VM (a migration uses a separate one, as QEMU's clients do).
 * Keeps the last few bitmaps in a ring, preallocated, so that a sample allocates nothing.
 */
export class DirtyTracker implements DirtySampler {
  private readonly ring: Uint32Array[];
  private readonly union: Uint32Array;
  private next = 0;
  private filled = 0;
  private lastSampleMs: number;

  constructor(
    private readonly log: DirtyLog,
    readonly pageCount: number,
    nowMs: number,
    readonly windowReports = WORKING_SET_WINDOW_REPORTS,
  ) {
    const words = bitmapWords(pageCount);
    this.ring = Array.from({ length: windowReports }, () => new Uint32Array(words));
    this.union = new Uint32Array(words);
    this.lastSampleMs = nowMs;
  }

  /** Syncs (and so clears) the dirty log; the returned bitmap stays valid until the next sample. */
  sample(nowMs: number): DirtySample {
    const bitmap = this.ring[this.next];
    if (this.log.enabled) this.log.sync(bitmap);
    else bitmap.fill(0);
    this.next = (this.next + 1) % this.windowReports;
    this.filled = Math.min(this.filled + 1, this.windowReports);

    this.union.set(bitmap);
    for (let slot = 0; slot < this.filled; slot++) {
      const other = this.ring[slot];
      if (other === bitmap) continue;
      for (let w = 0; w < other.length; w++) this.union[w] |= other[w];
    }

    const elapsedMs = Math.max(nowMs - this.lastSampleMs, 1);
    this.lastSampleMs = nowMs;
    const dirtyPages = popcount(bitmap);
    return {
      bitmap,
      dirtyPages,
      dirtyRatePagesPerSec: (dirtyPages * 1000) / elapsedMs,
      workingSetPages: popcount(this.union),
      elapsedMs,
    };
  }

  /**
   * Forgets what was logged so far without reporting it (a migration target's log holds every page
   * the transfer wrote, which is not guest activity). Restarts the rate clock at `nowMs`.
   */
  reset(nowMs: number): void {
    if (this.log.enabled) this.log.sync(this.union);
    this.union.fill(0);
    this.lastSampleMs = nowMs;
  }

  /** Stops logging; later samples report no dirty pages. */
  dispose(): void {
    this.log.disable();
  }
}
