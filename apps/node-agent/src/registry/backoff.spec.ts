import { describe, expect, it } from 'vitest';
import { backoffDelayMs } from './backoff.js';

describe('backoffDelayMs', () => {
  const options = (r: number) => ({ baseMs: 200, capMs: 5_000, random: () => r });

  it.each([
    [0, 100, 200],
    [1, 200, 400],
    [2, 400, 800],
    [3, 800, 1_600],
    [4, 1_600, 3_200],
    [5, 2_500, 5_000],
    [12, 2_500, 5_000],
    [1_000, 2_500, 5_000],
  ])('attempt %i stays within [%i, %i]', (attempt, low, high) => {
    expect(backoffDelayMs(attempt, options(0))).toBe(low);
    expect(backoffDelayMs(attempt, options(0.999999))).toBeLessThanOrEqual(high);
    expect(backoffDelayMs(attempt, options(0.999999))).toBeGreaterThan(high * 0.99);
  });

  it('jitters between the bounds with the real random source', () => {
    const delays = new Set(Array.from({ length: 50 }, () => backoffDelayMs(6)));
    expect(delays.size).toBeGreaterThan(5);
    for (const d of delays) expect(d).toBeGreaterThanOrEqual(2_500);
  });

  it('treats a negative attempt as the first', () => {
    expect(backoffDelayMs(-3, options(0))).toBe(100);
  });
});
