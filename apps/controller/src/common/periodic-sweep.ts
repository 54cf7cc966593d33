/**
 * The lifecycle shared by the controller's background sweeps (node readiness, memory pressure,
 * drains): a timer from application bootstrap to module destroy that never keeps the process alive,
 * one pass at a time (a pass still running when the timer fires again, or when a spec calls it, is
 * not doubled: the second call returns no results), and a failed pass logged, never thrown, with
 * whatever it collected before the failure still returned.
 */
import type { Logger } from './logger.js';
import { reconcileSeconds } from './reconcile-metrics.js';

export class PeriodicSweep<T> {
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  /** `name` goes into the failure log line: "<name> sweep failed". */
  constructor(
    private readonly name: string,
    private readonly logger: Logger,
  ) {}

  /** `immediately`: one pass now as well (a sweep whose work may be waiting since before this process started). */
  start(intervalMs: number, tick: () => Promise<unknown>, immediately = false): void {
    this.timer = setInterval(() => void tick(), intervalMs);
    this.timer.unref();
    if (immediately) void tick();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Runs one pass that pushes its results into `out`; [] at once if a pass is already running. */
  async run(pass: (out: T[]) => Promise<void>): Promise<T[]> {
    if (this.running) return [];
    this.running = true;
    const out: T[] = [];
    const stopTimer = reconcileSeconds.startTimer({ loop: this.name });
    try {
      await pass(out);
    } catch (error) {
      this.logger.error({ err: error }, `${this.name} sweep failed`);
    } finally {
      this.running = false;
      stopTimer();
    }
    return out;
  }
}
