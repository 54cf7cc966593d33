/**
 * The receiver's pass over its memory that fills the per-frame hash cache between socket reads,
 * trailing the pages written so far.
 *
 * Hashing every page as it arrives would slow a receiver-bound stream; hashing everything in one go at
 * a ROUND frame blocks the event loop (the next round's pages, a COMPLETE) for the whole pass. This
 * does the pass in steps of STEP_PAGES pages, one per event-loop turn (setImmediate runs after the
 * turn's I/O), so frames keep flowing. The digest at COMPLETE hashes whatever the pass has not reached
 * or what was written behind it: correctness never depends on the pass.
 */
import type { GuestMemory } from '@vmm/emulator';

/** Pages walked per step: at most that many 4 KiB hashes (a few ms), usually far fewer. */
export const STEP_PAGES = 4096;

export class BackgroundHasher {
  private cursor = 0;
  private limit = 0; // pages below were written at some point: the pass never walks beyond
  private stopped = false;
  private timer: NodeJS.Immediate | null = null;

  constructor(private readonly memory: GuestMemory) {}

  /** True while a pass is under way. */
  get running(): boolean {
    return this.timer !== null;
  }

  /**
   * Pages up to `page` were (or are being) written: the pass follows up to there. Called once per
   * batch with its highest page, so that round 0, which arrives in page order, is hashed as it comes.
   */
  noteWritten(page: number): void {
    if (page + 1 > this.limit) this.limit = page + 1;
    this.schedule();
  }

  /** Starts the pass over from page 0 (a new round's pages may lie behind it). */
  restart(): void {
    this.cursor = 0;
    this.schedule();
  }

  /** Ends the pass for good. Idempotent. */
  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearImmediate(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    if (this.timer === null && !this.stopped && this.cursor < this.limit) this.timer = setImmediate(this.step);
  }

  private readonly step = (): void => {
    const memory = this.memory;
    if (memory.isReleased) {
      this.timer = null;
      return;
    }
    const end = Math.min(this.limit, memory.pageCount, this.cursor + STEP_PAGES);
    if (end > this.cursor) memory.cachePageHashRange(this.cursor, end - this.cursor);
    this.cursor = Math.max(this.cursor, end);
    this.timer = null;
    this.schedule();
  };
}
