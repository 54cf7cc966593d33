/**
 * The receiver's pass over its memory that fills the per-frame hash cache between socket reads,
 * trailing the pages written so far.
 *
 * Hashing every page as it arrives would slow a receiver-bound stream; hashing everything in one go at
 * a ROUND frame blocks the event loop (the next round's pages, a COMPLETE) for the whole pass. This
 * does the pass in steps of STEP_PAGES pages, one per event-loop turn (setImmediate runs after the
 * turn's I/O), so frames keep flowing. The digest at COMPLETE hashes whatever the pass has not reached
 * or what was written behind it: correctness never depends on the pass.
 *
 * While data flows, a turn that read from the socket skips its step (noteRead): on a receiver-bound
 * stream hashing would take the CPU from receiving (0.25 of the 0.7 CPU-s a GiB cost the receiver);
 * a turn without a read (a bandwidth cap, a slower sender: the receiver has idle time) takes a small
 * step. What the pass did not reach by the end of round 0 is hashed before ROUND_ACK (whenCaughtUp),
 * while the source waits for it, so the digest under pause still only hashes the last round.
 */
import type { GuestMemory } from '@vmm/emulator';

/** Pages walked per step: at most that many 4 KiB hashes (a few ms), usually far fewer. */
export const STEP_PAGES = 4096;
/**
 * Pages per step while a stream flows (a turn in which nothing was read): about one read buffer's
 * worth (~60 µs), so that the socket buffer does not fill up and stall the sender meanwhile.
 */
export const IN_STREAM_STEP_PAGES = 64;
/** A stream counts as flowing for this long after a read: steps stay small meanwhile. */
const STREAM_QUIET_MS = 2;

export class BackgroundHasher {
  private cursor = 0;
  private limit = 0; // pages below were written at some point: the pass never walks beyond
  private stopped = false;
  private timer: NodeJS.Immediate | null = null;
  private readSinceStep = false;
  private lastReadMs = -Infinity;
  private caughtUp: (() => void) | null = null;

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

  /**
   * A socket read of `bytes` arrived (`fullBytes`: the read buffer's size; kept for callers, the pass
   * yields on any read): this turn's step is skipped.
   */
  noteRead(bytes: number, fullBytes: number): void {
    void bytes;
    void fullBytes;
    this.readSinceStep = true;
    this.lastReadMs = performance.now();
  }

  /** Starts the pass over from page 0 (a new round's pages may lie behind it). */
  restart(): void {
    this.cursor = 0;
    this.schedule();
  }

  /**
   * Calls `done` once the pass has reached every page written so far (at once if it has). Steps are
   * not skipped for a backlog meanwhile: the caller waits for this. A stopped hasher never calls it.
   */
  whenCaughtUp(done: () => void): void {
    this.caughtUp?.();
    this.caughtUp = done;
    this.schedule();
    this.settle();
  }

  private settle(): void {
    if (this.caughtUp === null || this.stopped || this.cursor < Math.min(this.limit, this.memory.pageCount)) return;
    const done = this.caughtUp;
    this.caughtUp = null;
    done();
  }

  /** Ends the pass for good. Idempotent. */
  stop(): void {
    this.stopped = true;
    this.caughtUp = null;
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
    if (this.caughtUp === null && this.readSinceStep) {
      // Data came in this turn: receiving comes first. A turn without a read (the receiver outpaces
      // the sender) takes a small step, a quiet connection whole ones; the rest waits for whenCaughtUp.
      this.readSinceStep = false;
      this.timer = setImmediate(this.step);
      return;
    }
    const flowing = this.caughtUp === null && performance.now() - this.lastReadMs < STREAM_QUIET_MS;
    const stepPages = flowing ? IN_STREAM_STEP_PAGES : STEP_PAGES;
    const end = Math.min(this.limit, memory.pageCount, this.cursor + stepPages);
    if (end > this.cursor) memory.cachePageHashRange(this.cursor, end - this.cursor);
    this.cursor = Math.max(this.cursor, end);
    this.timer = null;
    this.schedule();
    this.settle();
  };
}
