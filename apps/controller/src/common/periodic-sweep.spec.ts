import { describe, expect, it, vi } from 'vitest';
import type { Logger } from './logger.js';
import { PeriodicSweep } from './periodic-sweep.js';

function fakeLogger(): { logger: Logger; error: ReturnType<typeof vi.fn> } {
  const error = vi.fn();
  return { logger: { error } as unknown as Logger, error };
}

describe('PeriodicSweep', () => {
  it('does not start a second pass while one runs; the second call returns []', async () => {
    const { logger } = fakeLogger();
    const sweep = new PeriodicSweep<string>('test', logger);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let passes = 0;
    const first = sweep.run(async (out) => {
      passes++;
      out.push('a');
      await gate;
    });
    expect(await sweep.run(async (out) => void (passes++, out.push('b')))).toEqual([]);
    release();
    expect(await first).toEqual(['a']);
    expect(passes).toBe(1);
    // The guard is released after a pass.
    expect(await sweep.run(async (out) => void out.push('c'))).toEqual(['c']);
  });

  it('logs a failed pass as "<name> sweep failed" and returns what it collected before the failure', async () => {
    const { logger, error } = fakeLogger();
    const sweep = new PeriodicSweep<string>('drain', logger);
    const boom = new Error('redis down');
    const out = await sweep.run(async (o) => {
      o.push('m1');
      throw boom;
    });
    expect(out).toEqual(['m1']);
    expect(error).toHaveBeenCalledWith({ err: boom }, 'drain sweep failed');
    expect(await sweep.run(async (o) => void o.push('m2'))).toEqual(['m2']);
  });

  it('runs the tick on its interval until stopped', async () => {
    vi.useFakeTimers();
    try {
      const sweep = new PeriodicSweep<string>('test', fakeLogger().logger);
      const tick = vi.fn(async () => undefined);
      sweep.start(100, tick);
      await vi.advanceTimersByTimeAsync(250);
      expect(tick).toHaveBeenCalledTimes(2);
      sweep.stop();
      await vi.advanceTimersByTimeAsync(500);
      expect(tick).toHaveBeenCalledTimes(2);
    } finally {
      vi.useRealTimers();
    }
  });
});
