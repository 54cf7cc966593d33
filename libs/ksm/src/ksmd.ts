import type { KsmScanner } from './ksm-scanner.js';

/**
 * The one-shot timer ksmd sleeps on between batches. Injectable so that tests (and a host driving ksmd
 * from its own loop) can run the wake-ups by hand, deterministically. clearTimeout is given back whatever
 * setTimeout returned.
 */
export interface KsmdTimers {
  /** Calls `wake` once after `delayMs`; must not keep the process alive by itself. */
  setTimeout(wake: () => void, delayMs: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The production timers: an unref'd setTimeout, so a running ksmd does not keep the process alive on its own. */
export const SYSTEM_KSMD_TIMERS: KsmdTimers = Object.freeze({
  setTimeout: (wake: () => void, delayMs: number) => setTimeout(wake, delayMs).unref(),
  clearTimeout: (handle: unknown) => clearTimeout(handle as NodeJS.Timeout),
});

/**
 * The ksmd thread: a batch of `pages_to_scan` pages, then `sleep_millisecs` of sleep, for as long as it
 * is started. Knobs are re-read before every batch; with run≠1 it idles (Linux: ksmd waits on run), waking
 * every sleep_millisecs to look at run again.
 */
export class Ksmd {
  private started = false;
  private scheduled = false; // a wake-up is pending (false while the batch runs)
  private timer: unknown = undefined; // its handle (a timer may use any value, 0 included)
  private batches = 0;

  constructor(
    readonly scanner: KsmScanner,
    private readonly onError: (err: unknown) => void = () => {},
    private readonly timers: KsmdTimers = SYSTEM_KSMD_TIMERS,
  ) {}

  get running(): boolean {
    return this.started;
  }

  /** Batches run since start(). */
  get batchCount(): number {
    return this.batches;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.schedule(0);
  }

  stop(): void {
    if (!this.started) return;
    this.started = false;
    if (this.scheduled) this.timers.clearTimeout(this.timer);
    this.scheduled = false;
    this.timer = undefined;
  }

  private schedule(delayMs: number): void {
    this.scheduled = true;
    this.timer = this.timers.setTimeout(this.tick, delayMs);
  }

  private readonly tick = (): void => {
    this.scheduled = false;
    try {
      if (this.scanner.knobs.run === 1) {
        this.scanner.scanBatch();
        this.batches++;
      }
    } catch (err) {
      this.onError(err); // a failed batch must not stop ksmd: the next one starts from the next page
    }
    // The batch or onError may have called stop() (then no further wake-up), or stop() and start() (then
    // start() has scheduled one already: a second would double the scan rate).
    if (this.started && !this.scheduled) this.schedule(this.scanner.knobs.sleep_millisecs);
  };
}
