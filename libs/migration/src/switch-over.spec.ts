import { describe, expect, it } from 'vitest';
import { DIRTY_MARGIN, decideRound, needsDigestWalk, pausedCopyMs, type RoundFacts } from './switch-over.js';

const base: RoundFacts = {
  dirtyPages: 0,
  pagesPerSec: 100_000,
  downtimeLimitMs: 300,
  digestWalkMs: 0,
  hashMsPerPage: 0,
  switchOverOverheadMs: 0,
  roundsDone: 1,
  maxRounds: 30,
};

describe('pausedCopyMs', () => {
  it('is dirty pages × margin at the measured pace', () => {
    expect(pausedCopyMs(80_000, 100_000)).toBe(1000); // 100,000 pages with the margin, at 100,000 pages/s
    expect(pausedCopyMs(8, 100)).toBe(8 * DIRTY_MARGIN * 10);
    expect(pausedCopyMs(0, 100_000)).toBe(0);
  });
});

describe('decideRound', () => {
  it.each<[string, Partial<RoundFacts>, 'switch-over' | 'continue' | 'give-up', number, number]>([
    // name, facts, decision, expected downtime (ms), expected stop-and-copy (ms)
    ['nothing dirty, no fixed costs: switch at once', {}, 'switch-over', 0, 0],
    ['a copy of 125 ms fits 300', { dirtyPages: 10_000 }, 'switch-over', 125, 125],
    ['a copy of 375 ms does not fit 300: continue, fixed costs not counted', { dirtyPages: 30_000, digestWalkMs: 50, switchOverOverheadMs: 40 }, 'continue', 375, 0],
    ['the copy fits, but the two digest walks push it over', { dirtyPages: 16_000, digestWalkMs: 60 }, 'continue', 320, 320],
    ['the copy fits, but the commit overhead pushes it over', { dirtyPages: 16_000, switchOverOverheadMs: 101 }, 'continue', 301, 200],
    ['the receiver hashing the paused round counts', { dirtyPages: 16_000, hashMsPerPage: 0.0051 }, 'continue', 302, 302],
    ['exactly at the limit switches over', { dirtyPages: 16_000, digestWalkMs: 40, switchOverOverheadMs: 20 }, 'switch-over', 300, 280],
    ['still too much after the last allowed round: give up', { dirtyPages: 30_000, roundsDone: 30 }, 'give-up', 375, 0],
    ['rounds left: continue', { dirtyPages: 30_000, roundsDone: 29 }, 'continue', 375, 0],
    ['a fitting round on the last allowed one still switches over', { dirtyPages: 100, roundsDone: 30 }, 'switch-over', 1.25, 1.25],
    ['a slow link: 1000 pages at 1000 pages/s', { dirtyPages: 1000, pagesPerSec: 1000, downtimeLimitMs: 2000 }, 'switch-over', 1250, 1250],
    ['a tight limit of 1 ms with one dirty page and overhead', { dirtyPages: 1, downtimeLimitMs: 1, switchOverOverheadMs: 5 }, 'continue', 5.0125, 0.0125],
  ])('%s', (_name, facts, decision, expectedDowntimeMs, expectedStopAndCopyMs) => {
    const verdict = decideRound({ ...base, ...facts });
    expect(verdict.decision).toBe(decision);
    expect(verdict.expectedDowntimeMs).toBeCloseTo(expectedDowntimeMs, 6);
    expect(verdict.expectedStopAndCopyMs).toBeCloseTo(expectedStopAndCopyMs, 6);
  });
});

describe('needsDigestWalk', () => {
  it.each([
    [10_000, 100_000, 300, true],
    [24_000, 100_000, 300, true], // 300 ms: at the limit
    [24_001, 100_000, 300, false],
    [0, 1, 1, true],
  ])('%d dirty at %d pages/s, limit %d ms → %s', (dirty, pps, limit, expected) => {
    expect(needsDigestWalk(dirty, pps, limit)).toBe(expected);
  });
});
