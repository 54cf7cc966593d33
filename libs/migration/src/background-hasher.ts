/**
 * The receiver's pass over its memory that fills the per-frame hash cache in the gaps of the stream,
 * trailing the pages written so far.
 *
 * Hashing every page as it arrives would slow a receiver-bound stream; hashing everything in one go at
 * a ROUND frame blocks the event loop (the next round's pages, a COMPLETE) for the whole pass. This
 * does the pass in steps between socket reads, so frames keep flowing. The digest at COMPLETE hashes
 * whatever the pass has not reached or what was written behind it: correctness never depends on it.
 *
 * While data flows (a read less than STREAM_QUIET_MS ago) the pass does nothing and checks again on a
 * timer: on two cores a full-speed stream needs every cycle of both ends, and turns without a read
 * there are moments when the receiver outpaces a CPU-bound sender, not idle time. (Re-polling with
 * setImmediate instead would also keep the event loop from ever blocking in epoll: a busy loop.) A
 * stream with gaps (a bandwidth cap, later rounds) gets its pages hashed in the gaps. What the pass did
 * not reach by the end of round 0 is hashed before ROUND_ACK (whenCaughtUp), in whole steps, while the
 * source waits for it and hashes its own pages: the two passes run side by side on the two cores, and
 * the digest under pause still only hashes the last round.
 */
import type { GuestMemory } from '@vmm/emulator';

/** Pages per step while the source waits (whenCaughtUp): a few ms of hashing per event-loop turn. */
export const STEP_PAGES = 4096;
/** Pages per step in a gap of the stream: about 1.5 ms, so that the next data waits little. */
export const GAP_STEP_PAGES = 1024;
/** A stream counts as flowing for this long after a read: no hashing meanwhile. */
export const STREAM_QUIET_MS = 2;

export class BackgroundHasher {
  private cursor = 0;
  private limit = 0; // pages below were written at some point: the pass never walks beyond
  private stopped = false;
  private immediate: NodeJS.Immediate | null = null;
  private timeout: NodeJS.Timeout | null = null;
  private lastReadMs = -Infinity;
  private caughtUp: (() => void) | null = null;

  constructor(private readonly memory: GuestMemory) {}

  /** True while a pass is under way. */
  get running(): boolean {
    return this.immediate !== null || this.timeout !== null;
  }

  /**
   * Pages up to `page` were (or are being) written: the pass follows up to there. Called once per
   * batch with its highest page, so that round 0, which arrives in page order, is hashed as it comes.
   */
  noteWritten(page: number): void {
    if (page + 1 > this.limit) this.limit = page + 1;
    this.schedule();
  }

  /** Data arrived from the socket: the pass waits until the stream has been quiet for STREAM_QUIET_MS. */
  noteRead(): void {
    this.lastReadMs = performance.now();
  }

  /** Starts the pass over from page 0 (a new round's pages may lie behind it). */
  restart(): void {
    this.cursor = 0;
    this.schedule();
  }

  /**
   * Calls `done` once the pass has reached every page written so far (at once if it has). The pass
   * no longer waits for quiet meanwhile: the caller waits for this. A stopped hasher never calls it.
   */
  whenCaughtUp(done: () => void): void {
    this.caughtUp?.();
    this.caughtUp = done;
    if (this.timeout !== null) {
      clearTimeout(this.timeout);
      this.timeout = null;
    }
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
    if (this.immediate !== null) clearImmediate(this.immediate);
    if (this.timeout !== null) clearTimeout(this.timeout);
    this.immediate = null;
    this.timeout = null;
  }

  private schedule(): void {
    if (this.running || this.stopped || this.cursor >= this.limit) return;
    const flowingForMs = this.caughtUp === null ? STREAM_QUIET_MS - (performance.now() - this.lastReadMs) : 0;
    if (flowingForMs > 0) {
      this.timeout = setTimeout(this.step, Math.ceil(flowingForMs));
      this.timeout.unref();
    } else {
      this.immediate = setImmediate(this.step);
    }
  }

  private readonly step = (): void => {
    this.immediate = null;
    this.timeout = null;
    const memory = this.memory;
    if (memory.isReleased || this.stopped) return;
    const waiting = this.caughtUp !== null;
    if (!waiting && performance.now() - this.lastReadMs < STREAM_QUIET_MS) {
      this.schedule(); // data came in meanwhile: wait for the next gap
      return;
    }
    const end = Math.min(this.limit, memory.pageCount, this.cursor + (waiting ? STEP_PAGES : GAP_STEP_PAGES));
    try {
      if (end > this.cursor) memory.cachePageHashRange(this.cursor, end - this.cursor);
    } catch {
      // A timer callback must not throw (it would end the process). The pass is only a head start:
      // the digest hashes whatever it left, so give up on it and let the ack go out.
      this.cursor = Number.MAX_SAFE_INTEGER;
      const done = this.caughtUp;
      this.stop();
      done?.();
      return;
    }
    this.cursor = Math.max(this.cursor, end);
    this.schedule();
    this.settle();
  };
}
