import { beforeAll, describe, expect, it } from 'vitest';
import { nextSetBit, popcount } from './bitmap.js';
import { initHashing } from './digest.js';
import { InvalidArgumentError } from './errors.js';
import { FramePool } from './frame-pool.js';
import { GuestMemory } from './guest-memory.js';
import { MAX_ADVANCE_SEC, MAX_BACKLOG_SEC, VcpuWorkload, type WorkloadConfig, type WorkloadKind } from './vcpu-workload.js';

beforeAll(async () => {
  await initHashing();
});

function workload(config: Partial<WorkloadConfig>, pageCount = 4096, salt = 1) {
  const mem = new GuestMemory(new FramePool(), pageCount);
  const log = mem.createDirtyLog();
  const w = new VcpuWorkload(mem, { kind: 'uniform', dirtyRatePagesPerSec: 1000, workingSetPages: 0, seed: 7, ...config }, salt);
  return { mem, log, w };
}

function lastSetBit(bits: Uint32Array, pageCount: number): number {
  let last = -1;
  for (let p = nextSetBit(bits, 0, pageCount); p !== -1; p = nextSetBit(bits, p + 1, pageCount)) last = p;
  return last;
}

describe('VcpuWorkload.step', () => {
  it.each<WorkloadKind>(['uniform', 'hotcold', 'sequential'])('%s is deterministic for a config and salt', (kind) => {
    const a = workload({ kind });
    const b = workload({ kind });
    expect(a.w.step(5000)).toBe(5000);
    b.w.step(2000);
    b.w.step(3000);
    expect(b.mem.digest()).toBe(a.mem.digest());
    expect(b.w.writes).toBe(5000);
    expect(b.log.sync()).toEqual(a.log.sync());
  });

  it('writes data unique to the VM (salt) and to the seed', () => {
    const a = workload({ kind: 'sequential' }, 64, 1);
    const b = workload({ kind: 'sequential' }, 64, 2);
    const c = workload({ kind: 'sequential', seed: 8 }, 64, 1);
    for (const x of [a, b, c]) x.w.step(64);
    expect(a.mem.digest()).not.toBe(b.mem.digest());
    expect(a.mem.digest()).not.toBe(c.mem.digest());
  });

  it.each([
    { kind: 'uniform', ws: 1000 },
    { kind: 'hotcold', ws: 1000 },
    { kind: 'sequential', ws: 1000 },
    { kind: 'uniform', ws: 0 },
  ] as const)('$kind writes only inside a working set of $ws pages', ({ kind, ws }) => {
    const { w, log } = workload({ kind, workingSetPages: ws });
    w.step(20_000);
    const bits = log.sync();
    const limit = ws === 0 ? 4096 : ws;
    expect(lastSetBit(bits, 4096)).toBe(limit - 1);
    expect(popcount(bits)).toBeGreaterThan(limit * 0.9);
  });

  it('uniform spreads writes evenly', () => {
    const { w, mem } = workload({ kind: 'uniform', workingSetPages: 100 });
    const counts = new Uint32Array(100);
    const log = mem.createDirtyLog();
    for (let i = 0; i < 20_000; i++) {
      w.step(1);
      counts[nextSetBit(log.sync(), 0, 4096)]++;
    }
    expect(Math.min(...counts)).toBeGreaterThan(120);
    expect(Math.max(...counts)).toBeLessThan(280);
  });

  it('hotcold skews writes toward a hot set', () => {
    const { w, mem } = workload({ kind: 'hotcold', workingSetPages: 1000 });
    const log = mem.createDirtyLog();
    let hot = 0;
    const n = 20_000;
    for (let i = 0; i < n; i++) {
      w.step(1);
      if (nextSetBit(log.sync(), 0, 4096) < 100) hot++;
    }
    expect(hot / n).toBeGreaterThan(0.4); // 10% of the pages take ~46% of the writes
    expect(hot / n).toBeLessThan(0.55);
  });

  it('sequential sweeps the working set in order and wraps', () => {
    const { w, mem } = workload({ kind: 'sequential', workingSetPages: 10 });
    const log = mem.createDirtyLog();
    const order: number[] = [];
    for (let i = 0; i < 25; i++) {
      w.step(1);
      order.push(nextSetBit(log.sync(), 0, 4096));
    }
    expect(order).toEqual([...Array(25).keys()].map((i) => i % 10));
    expect(w.sweepPage).toBe(5);
  });

  it('idle writes nothing', () => {
    const { w, mem } = workload({ kind: 'idle' });
    expect(w.step(100)).toBe(0);
    expect(mem.residentPages).toBe(0);
  });
});

describe('VcpuWorkload.advance (pacing, with a given clock)', () => {
  it.each([
    { rate: 1000, steps: Array(10).fill(100), writes: 1000 },
    { rate: 15, steps: Array(10).fill(100), writes: 15 }, // fractions carry over
    { rate: 100_000, steps: Array(100).fill(10), writes: 100_000 },
    { rate: 1000, steps: [5000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], writes: 1000 * MAX_BACKLOG_SEC + 1 }, // ≤ ~1 s caught up
    { rate: 1000, steps: [5000], writes: 1000 * MAX_ADVANCE_SEC }, // over several advances
    { rate: 1000, steps: [0, -5], writes: 0 },
  ])('rate $rate over $steps ms makes $writes writes', ({ rate, steps, writes }) => {
    const { w } = workload({ dirtyRatePagesPerSec: rate });
    let now = 10_000;
    w.resetClock(now);
    for (const dt of steps) w.advance((now += dt));
    expect(w.writes).toBe(writes);
  });

  it('throttle scales the rate; idle makes none', () => {
    const { w } = workload({ dirtyRatePagesPerSec: 1000 });
    w.setThrottle(40);
    expect(w.effectiveRatePagesPerSec).toBe(600);
    w.resetClock(0);
    for (let t = 100; t <= 1000; t += 100) w.advance(t);
    expect(w.writes).toBe(600);
    expect(workload({ kind: 'idle' }).w.effectiveRatePagesPerSec).toBe(0);
  });

  it.each([-1, 100, Number.NaN])('rejects throttle %s', (p) => {
    expect(() => workload({}).w.setThrottle(p)).toThrow(InvalidArgumentError);
  });
});

describe('workload config validation', () => {
  it.each([
    ['unknown kind', { kind: 'busy' as WorkloadKind }],
    ['negative rate', { dirtyRatePagesPerSec: -1 }],
    ['infinite rate', { dirtyRatePagesPerSec: Infinity }],
    ['working set larger than memory', { workingSetPages: 5000 }],
    ['fractional working set', { workingSetPages: 1.5 }],
    ['fractional seed', { seed: 0.5 }],
  ])('rejects %s', (_name, config) => {
    expect(() => workload(config)).toThrow(InvalidArgumentError);
  });
});
