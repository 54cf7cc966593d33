import type { KsmScanner } from './ksm-scanner.js';

/**
 * The ksmd thread: a batch of `pages_to_scan` pages, then `sleep_millisecs` of sleep, for as long as it
 * is started. Knobs are re-read before every batch; with run≠1 it idles (Linux: ksmd waits on run).
 * The timer is unref'd: a running ksmd does not keep the process alive on its own.
 */
export class Ksmd {
  private timer: NodeJS.Timeout | null = null;
  private batches = 0;

  constructor(
    readonly scanner: KsmScanner,
    private readonly onError: (err: unknown) => void = () => {},
  ) {}

  get running(): boolean {
    return this.timer !== null;
  }

  /** Batches run since start(). */
  get batchCount(): number {
    return this.batches;
  }

  start(): void {
    if (this.timer !== null) return;
    this.schedule(0);
  }

  stop(): void {
    if (this.timer === null) return;
    clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(this.tick, delayMs);
    this.timer.unref();
  }

  private readonly tick = (): void => {
    try {
      if (this.scanner.knobs.run === 1) {
        this.scanner.scanBatch();
        this.batches++;
      }
    } catch (err) {
      this.onError(err); // a failed batch must not stop ksmd: the next one starts from the next page
    }
    if (this.timer !== null) this.schedule(this.scanner.knobs.sleep_millisecs);
  };
}
