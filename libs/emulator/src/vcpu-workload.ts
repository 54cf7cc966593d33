import { InvalidArgumentError } from './errors.js';
import { PAGE_SIZE } from './frame-pool.js';
import type { GuestMemory } from './guest-memory.js';
import { mix32, Xoshiro128 } from './prng.js';

export type WorkloadKind = 'idle' | 'uniform' | 'hotcold' | 'sequential';
export const WORKLOAD_KINDS: readonly WorkloadKind[] = ['idle', 'uniform', 'hotcold', 'sequential'];

/** What a VM's vCPUs do to memory: `dirtyRatePagesPerSec` 8-byte stores, each into one page of the working set. */
export interface WorkloadConfig {
  kind: WorkloadKind;
  dirtyRatePagesPerSec: number;
  /** Pages [0, workingSetPages) receive the writes; 0 = the whole memory. */
  workingSetPages: number;
  seed: number;
}

/**
 * The highest dirty rate a workload takes: above it the emulated vCPU could not keep pace and would
 * starve the event loop (each tick makes up to rate × MAX_ADVANCE_SEC writes). CreateVm's bound, and
 * a migration target's for the device state it loads.
 */
export const MAX_DIRTY_RATE_PAGES_PER_SEC = 10_000_000;

/** Backlog the pacer catches up after an event-loop stall, in seconds of writes. */
export const MAX_BACKLOG_SEC = 1;
/**
 * Writes one advance() makes at most, in seconds of writes: a backlog is caught up over several timer
 * ticks (at up to 20× the rate with 5 ms ticks), so the event loop keeps serving I/O in between.
 */
export const MAX_ADVANCE_SEC = 0.1;
const WORDS_PER_PAGE_8 = PAGE_SIZE / 8;
// hotcold: page index = ws · u³, a Zipf-like power law: 1% of the pages take ~21% of the writes, 10% ~46%.

export function validateWorkloadConfig(c: WorkloadConfig, pageCount: number): void {
  if (!WORKLOAD_KINDS.includes(c.kind)) throw new InvalidArgumentError('workload.kind', `unknown kind '${String(c.kind)}'`);
  if (!Number.isFinite(c.dirtyRatePagesPerSec) || c.dirtyRatePagesPerSec < 0 || c.dirtyRatePagesPerSec > MAX_DIRTY_RATE_PAGES_PER_SEC) {
    throw new InvalidArgumentError('workload.dirtyRatePagesPerSec', `must be in 0..${MAX_DIRTY_RATE_PAGES_PER_SEC}, got ${c.dirtyRatePagesPerSec}`);
  }
  if (!Number.isInteger(c.workingSetPages) || c.workingSetPages < 0 || c.workingSetPages > pageCount) {
    throw new InvalidArgumentError('workload.workingSetPages', `must be an integer in 0..${pageCount}, got ${c.workingSetPages}`);
  }
  if (!Number.isSafeInteger(c.seed)) throw new InvalidArgumentError('workload.seed', `must be a safe integer, got ${c.seed}`);
}

/**
 * A vCPU workload: a deterministic sequence of 8-byte stores (step) paced by wall-clock time (advance).
 * Its position (RNG state, write counter, sweep position) is device state: restored over a copy of the
 * memory, it continues the identical sequence. The value stored is unique to the VM (its salt) and to
 * the write (its counter).
 */
export class VcpuWorkload {
  readonly config: WorkloadConfig;
  /** The resolved working set (config.workingSetPages, or the whole memory for 0). */
  readonly workingSetPages: number;
  readonly rng: Xoshiro128;
  /** Stores made since the workload began (also the value counter). */
  writes = 0;
  /** Next page of the sequential sweep, relative to the working set. */
  sweepPage = 0;
  private readonly valueKey: number; // mixes salt and seed into every stored value
  private throttle = 0;
  private lastMs = 0;
  private credit = 0; // writes due but not yet made (fractional)

  constructor(
    private readonly memory: GuestMemory,
    config: WorkloadConfig,
    /** Per-VM value salt (from the VM id and seed), so that no two VMs write the same data. */
    readonly salt: number,
  ) {
    validateWorkloadConfig(config, memory.pageCount);
    this.config = { ...config };
    this.workingSetPages = config.workingSetPages === 0 ? memory.pageCount : config.workingSetPages;
    this.rng = new Xoshiro128(config.seed ^ salt);
    this.valueKey = mix32((salt ^ mix32(config.seed >>> 0)) >>> 0);
  }

  get throttlePercent(): number {
    return this.throttle;
  }

  /** Auto-converge: the vCPU runs (100 - percent)% of the time, so it writes that share of its rate. */
  setThrottle(percent: number): void {
    if (!Number.isFinite(percent) || percent < 0 || percent > 99) {
      throw new InvalidArgumentError('throttlePercent', `must be in 0..99, got ${percent}`);
    }
    this.throttle = percent;
  }

  /** Writes per second at the current throttle. */
  get effectiveRatePagesPerSec(): number {
    return this.config.kind === 'idle' ? 0 : (this.config.dirtyRatePagesPerSec * (100 - this.throttle)) / 100;
  }

  /** Makes the next `n` stores of the sequence now; returns how many were made (0 for idle or an empty working set). */
  step(n: number): number {
    const ws = this.workingSetPages;
    if (this.config.kind === 'idle' || ws === 0 || n <= 0) return 0;
    const memory = this.memory;
    const rng = this.rng;
    const key = this.valueKey;
    const kind = this.config.kind;
    for (let i = 0; i < n; i++) {
      let page: number;
      let offset: number;
      if (kind === 'sequential') {
        page = this.sweepPage;
        offset = (Math.floor(this.writes / ws) % WORDS_PER_PAGE_8) * 8;
        if (++this.sweepPage === ws) this.sweepPage = 0;
      } else {
        // Same values as nextFloat() and nextBelow(512), without boxed call results on the hot path.
        const u = (rng.nextInt32() >>> 0) / 4294967296;
        page = kind === 'uniform' ? Math.floor(u * ws) : Math.floor(ws * u * u * u);
        offset = (rng.nextInt32() >>> 23) << 3;
      }
      const count = this.writes;
      let lo = mix32((count >>> 0) ^ key);
      const hi = (Math.floor(count / 4294967296) ^ mix32(key)) >>> 0;
      if ((lo | hi) === 0) lo = 1; // a store of zero would not change a zero page
      memory.writeWord(page, offset, lo, hi);
      this.writes = count + 1;
    }
    return n;
  }

  /** Starts (or restarts after a pause) the pacing clock at `nowMs`, with no backlog. */
  resetClock(nowMs: number): void {
    this.lastMs = nowMs;
    this.credit = 0;
  }

  /**
   * Makes the writes due since the last call: elapsed time × effective rate, plus the carried fraction.
   * After a stall, at most MAX_BACKLOG_SEC of writes are caught up, at most MAX_ADVANCE_SEC of them per
   * call. Returns the writes made.
   */
  advance(nowMs: number): number {
    const dtMs = Math.max(0, nowMs - this.lastMs);
    this.lastMs = Math.max(this.lastMs, nowMs);
    const rate = this.effectiveRatePagesPerSec;
    if (rate === 0) {
      this.credit = 0;
      return 0;
    }
    this.credit = Math.min(this.credit + (dtMs * rate) / 1000, rate * MAX_BACKLOG_SEC + 1);
    const n = Math.min(Math.floor(this.credit), Math.ceil(rate * MAX_ADVANCE_SEC));
    this.credit -= n;
    return this.step(n);
  }
}
