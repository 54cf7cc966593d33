import { cluster } from '@vmm/proto';
import { describe, expect, it } from 'vitest';
import { UsageError } from './errors.js';
import { parseRate, parseWorkload, workloadLabel } from './workload.js';

const K = cluster.WorkloadKind;

describe('parseWorkload', () => {
  it.each<[string, cluster.Workload]>([
    ['idle', { kind: K.WORKLOAD_KIND_IDLE, dirtyRatePagesPerSec: 0, workingSetMib: 0, seed: 0 }],
    ['uniform:2000', { kind: K.WORKLOAD_KIND_UNIFORM, dirtyRatePagesPerSec: 2000, workingSetMib: 0, seed: 0 }],
    ['hotcold:8k:256', { kind: K.WORKLOAD_KIND_HOTCOLD, dirtyRatePagesPerSec: 8000, workingSetMib: 256, seed: 0 }],
    ['Sequential:1.5k:64:7', { kind: K.WORKLOAD_KIND_SEQUENTIAL, dirtyRatePagesPerSec: 1500, workingSetMib: 64, seed: 7 }],
    ['uniform:1M', { kind: K.WORKLOAD_KIND_UNIFORM, dirtyRatePagesPerSec: 1e6, workingSetMib: 0, seed: 0 }],
  ])('%s', (spec, expected) => expect(parseWorkload(spec)).toEqual(expected));

  it.each([
    ['random:100', /unknown workload kind "random"/],
    ['', /unknown workload kind ""/],
    ['uniform', /needs a rate/],
    ['idle:500', /idle workload writes nothing/],
    ['uniform:-5', /non-negative number/],
    ['uniform:fast', /non-negative number/],
    ['uniform:100:1.5', /working set.*whole number/],
    ['uniform:100:64:-1', /seed.*whole number/],
    ['uniform:1:2:3:4', /kind\[:rate/],
  ])('rejects %j', (spec, message) => {
    expect(() => parseWorkload(spec)).toThrow(UsageError);
    expect(() => parseWorkload(spec)).toThrow(message);
  });
});

describe('parseRate', () => {
  it('accepts k and M suffixes', () => expect([parseRate('20k'), parseRate('2M'), parseRate('0')]).toEqual([20000, 2e6, 0]));
});

describe('workloadLabel', () => {
  const fmt = (r: number) => `${r / 1000}k/s`;
  it('shows kind@rate, and the bare kind for idle', () => {
    expect(workloadLabel(parseWorkload('hotcold:8000'), fmt)).toBe('hotcold@8k/s');
    expect(workloadLabel(parseWorkload('idle'), fmt)).toBe('idle');
    expect(workloadLabel(undefined, fmt)).toBe('—');
  });
});
