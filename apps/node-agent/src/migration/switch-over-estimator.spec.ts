import { describe, expect, it } from 'vitest';
import { INITIAL_SWITCH_OVER_OVERHEAD_MS, SwitchOverEstimator } from './switch-over-estimator.js';

describe('SwitchOverEstimator', () => {
  it('starts at the initial overhead and rises fast on a slow commit, decays slowly after', () => {
    const e = new SwitchOverEstimator();
    expect(e.overheadMs).toBe(INITIAL_SWITCH_OVER_OVERHEAD_MS);
    e.observeCommit(100);
    expect(e.overheadMs).toBe(70);
    e.observeCommit(10);
    expect(e.overheadMs).toBe(64);
  });

  it('adds how much the paused copy overran its prediction, never less than 5 ms nor more than 200 ms', () => {
    const e = new SwitchOverEstimator(0);
    expect(e.overheadMs).toBe(5);
    e.observeStopAndCopy(80, 40);
    expect(e.overheadMs).toBe(20);
    e.observeStopAndCopy(10, 40); // faster than predicted: decays, never negative
    expect(e.overheadMs).toBe(18);
    for (let i = 0; i < 20; i++) e.observeCommit(10_000);
    expect(e.overheadMs).toBe(200);
  });

  it('ignores meaningless samples', () => {
    const e = new SwitchOverEstimator();
    e.observeCommit(Number.NaN);
    e.observeCommit(-1);
    e.observeStopAndCopy(50, 0);
    expect(e.overheadMs).toBe(INITIAL_SWITCH_OVER_OVERHEAD_MS);
  });
});
