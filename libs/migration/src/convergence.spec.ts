import { describe, expect, it } from 'vitest';
import { AutoConverge, countDirty, decideAfterRound, expectedDowntimeMs } from './convergence.js';

describe('convergence', () => {
  it('predicts downtime from dirty bytes and bandwidth', () => {
    expect(expectedDowntimeMs(0, 1e9)).toBe(0);
    expect(expectedDowntimeMs(25_600, 100 * 1024 * 1024)).toBeCloseTo(1000, 5);
  });

  it.each([
    [100, 300, 1, 30, 'switch-over'],
    [300, 300, 30, 30, 'switch-over'],
    [301, 300, 29, 30, 'continue'],
    [301, 300, 30, 30, 'give-up'],
  ] as const)('expected %d ms, limit %d, after %d of %d rounds: %s', (ms, limit, done, max, want) => {
    expect(decideAfterRound(ms, limit, done, max)).toBe(want);
  });

  it('auto-converge: 20% after two high syncs, +10% per high sync, capped at 99%', () => {
    const ac = new AutoConverge(true);
    expect(ac.onSync(100, 1000)).toBe(-1); // low: dirtied under half of sent
    expect(ac.onSync(600, 1000)).toBe(-1); // first high sync
    expect(ac.onSync(600, 1000)).toBe(20);
    expect(ac.onSync(600, 1000)).toBe(30);
    const seen: number[] = [];
    for (let i = 0; i < 10; i++) seen.push(ac.onSync(600, 1000));
    expect(seen).toEqual([40, 50, 60, 70, 80, 90, 99, -1, -1, -1]);
    expect(ac.maxPercent).toBe(99);
  });

  it('auto-converge off never throttles', () => {
    const ac = new AutoConverge(false);
    for (let i = 0; i < 5; i++) expect(ac.onSync(1000, 1)).toBe(-1);
    expect(ac.throttlePercent).toBe(0);
  });

  it('counts bitmap bits a word at a time', () => {
    expect(countDirty(Uint32Array.from([0, 1, 0xffffffff, 0x80000001]))).toBe(35);
  });
});
