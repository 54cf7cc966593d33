import { FramePool, GuestMemory, PAGE_SIZE, initHashing } from '@vmm/emulator';
import { beforeAll, describe, expect, it } from 'vitest';
import { KsmScanner } from './ksm-scanner.js';
import { Ksmd, type KsmdTimers } from './ksmd.js';

beforeAll(async () => {
  await initHashing();
});

/**
 * setTimeout by hand: time moves only in runFor(), which fires the wake-ups due, in order (those scheduled
 * while it runs too). Delays below 1 ms count as 1 ms, as in Node, so that sleep_millisecs=0 cannot spin.
 * No real time passes, so what ksmd does in a given time is exact on a loaded machine.
 */
class ManualTimers implements KsmdTimers {
  now = 0;
  /** Every delay asked for, in order (the sleeps ksmd chose). */
  readonly delays: number[] = [];
  fired = 0;
  private readonly queue = new Map<number, { at: number; wake: () => void }>();
  private nextId = 1;

  setTimeout(wake: () => void, delayMs: number): unknown {
    this.delays.push(delayMs);
    const id = this.nextId++;
    this.queue.set(id, { at: this.now + Math.max(1, delayMs), wake });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.queue.delete(handle as number);
  }

  get pending(): number {
    return this.queue.size;
  }

  runFor(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      let next: [number, { at: number; wake: () => void }] | undefined;
      for (const e of this.queue) if (e[1].at <= end && (next === undefined || e[1].at < next[1].at)) next = e;
      if (next === undefined) break;
      this.queue.delete(next[0]);
      this.now = next[1].at;
      this.fired++;
      next[1].wake();
    }
    this.now = end;
  }
}

/** Two 64-page memories of identical pages (127 of the 128 can be merged into one frame). */
function setup(knobs: ConstructorParameters<typeof KsmScanner>[0]['knobs']) {
  const pool = new FramePool();
  const mems = [new GuestMemory(pool, 64), new GuestMemory(pool, 64)];
  const page = new Uint8Array(PAGE_SIZE).fill(3);
  for (const m of mems) for (let p = 0; p < 64; p++) m.writePage(p, page);
  const scanner = new KsmScanner({ pool, knobs });
  mems.forEach((m, i) => scanner.addRegion(`vm${i}`, m));
  const timers = new ManualTimers();
  const ksmd = new Ksmd(scanner, undefined, timers);
  return { pool, scanner, timers, ksmd };
}

describe('Ksmd (manual timers)', () => {
  it('does not scan while run=0, yet wakes every sleep_millisecs to look at run again', () => {
    const { scanner, timers, ksmd } = setup({ run: 0, pages_to_scan: 16, sleep_millisecs: 20 });
    ksmd.start();
    timers.runFor(1000); // wake-ups at 1 (start), 21, 41, …, 981 ms
    expect(timers.fired).toBe(50);
    expect(timers.delays).toEqual([0, ...Array<number>(50).fill(20)]);
    expect(scanner.stats().pages_scanned).toBe(0);
    expect(ksmd.batchCount).toBe(0);
    expect(ksmd.running).toBe(true);
    scanner.configure({ run: 1 });
    timers.runFor(1); // the wake-up at 1001 ms sees run=1
    expect(ksmd.batchCount).toBe(1);
    expect(scanner.stats().pages_scanned).toBe(16);
    ksmd.stop();
  });

  it('runs one batch of pages_to_scan pages per wake-up, sleep_millisecs apart', () => {
    const { scanner, timers, ksmd } = setup({ run: 1, pages_to_scan: 16, sleep_millisecs: 20 });
    ksmd.start();
    expect(ksmd.batchCount).toBe(0); // start() schedules the first batch, it does not run it
    timers.runFor(1);
    expect(ksmd.batchCount).toBe(1);
    expect(scanner.stats().pages_scanned).toBe(16);
    timers.runFor(19); // asleep until 21 ms
    expect(ksmd.batchCount).toBe(1);
    timers.runFor(1);
    expect(ksmd.batchCount).toBe(2);
    timers.runFor(20 * 5);
    expect(ksmd.batchCount).toBe(7);
    expect(scanner.stats().pages_scanned).toBe(7 * 16);
    expect(timers.pending).toBe(1); // exactly one wake-up outstanding at any time
    ksmd.stop();
  });

  it('re-reads the knobs before every batch: sleep_millisecs, pages_to_scan, run', () => {
    const { scanner, timers, ksmd } = setup({ run: 1, pages_to_scan: 16, sleep_millisecs: 20 });
    ksmd.start();
    timers.runFor(1); // batch 1 at 1 ms, next at 21
    scanner.configure({ sleep_millisecs: 50, pages_to_scan: 8 });
    timers.runFor(20); // batch 2 at 21 ms with 8 pages, then a 50 ms sleep
    expect(scanner.stats().pages_scanned).toBe(16 + 8);
    timers.runFor(49);
    expect(ksmd.batchCount).toBe(2);
    timers.runFor(1); // batch 3 at 71 ms
    expect(ksmd.batchCount).toBe(3);
    expect(timers.delays).toEqual([0, 20, 50, 50]);
    scanner.configure({ run: 0 });
    timers.runFor(500);
    expect(ksmd.batchCount).toBe(3);
    expect(scanner.stats().pages_scanned).toBe(16 + 8 + 8);
    ksmd.stop();
  });

  it('merges the identical pages over its batches until stopped; after stop() nothing runs', () => {
    const { pool, scanner, timers, ksmd } = setup({ run: 1, pages_to_scan: 16, sleep_millisecs: 1 });
    ksmd.start();
    // 128 pages in batches of 16, 1 ms apart: a full scan every 8 ms; three within 30 ms.
    timers.runFor(30);
    expect(scanner.stats().full_scans).toBeGreaterThanOrEqual(3);
    expect(scanner.stats().pages_sharing).toBe(127);
    expect(pool.framesInUse).toBe(1);
    ksmd.stop();
    expect(ksmd.running).toBe(false);
    expect(timers.pending).toBe(0);
    const batches = ksmd.batchCount;
    timers.runFor(1000);
    expect(ksmd.batchCount).toBe(batches);
    ksmd.start(); // and start() after stop() resumes
    timers.runFor(1);
    expect(ksmd.batchCount).toBe(batches + 1);
    ksmd.stop();
  });

  it('reports a failing batch and keeps running', () => {
    const scanner = new KsmScanner({ pool: new FramePool(), knobs: { run: 1, sleep_millisecs: 1 } });
    const errors: unknown[] = [];
    let calls = 0;
    scanner.scanBatch = () => {
      if (++calls === 1) throw new Error('boom');
      return 0;
    };
    const timers = new ManualTimers();
    const ksmd = new Ksmd(scanner, (err) => errors.push(err), timers);
    ksmd.start();
    timers.runFor(3); // wake-ups at 1, 2, 3 ms
    ksmd.stop();
    expect(calls).toBe(3);
    expect(errors).toHaveLength(1);
    expect(ksmd.batchCount).toBe(2); // the failed batch is not counted
  });

  it('stop() from within a batch schedules no further wake-up; stop() and start() there leave exactly one', () => {
    const scanner = new KsmScanner({ pool: new FramePool(), knobs: { run: 1, sleep_millisecs: 10 } });
    const timers = new ManualTimers();
    const ksmd = new Ksmd(scanner, () => {}, timers);
    let restart = false;
    scanner.scanBatch = () => {
      ksmd.stop();
      if (restart) ksmd.start();
      return 0;
    };
    ksmd.start();
    timers.runFor(100);
    expect(timers.fired).toBe(1);
    expect(ksmd.running).toBe(false);
    expect(timers.pending).toBe(0);

    restart = true;
    ksmd.start();
    timers.runFor(1);
    expect(ksmd.running).toBe(true);
    expect(timers.pending).toBe(1); // start()'s, not a second one from the batch's end
    ksmd.stop();
  });
});

describe('Ksmd (system timers)', () => {
  // Only that the default timers are wired (batches happen, stop() ends them): no timing is asserted, the
  // deadline is a generous bound for a loaded machine.
  it('runs batches on the process timers until stopped', async () => {
    const scanner = new KsmScanner({ pool: new FramePool(), knobs: { run: 1, sleep_millisecs: 1 } });
    const ksmd = new Ksmd(scanner);
    ksmd.start();
    try {
      const deadline = Date.now() + 10_000;
      while (ksmd.batchCount < 2) {
        if (Date.now() > deadline) throw new Error('ksmd ran fewer than 2 batches in 10 s');
        await new Promise((r) => setTimeout(r, 5));
      }
    } finally {
      ksmd.stop();
    }
    expect(ksmd.running).toBe(false);
  });
});
