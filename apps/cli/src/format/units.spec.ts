import { describe, expect, it } from 'vitest';
import {
  formatBytes,
  formatCount,
  formatDuration,
  formatMib,
  formatPageRate,
  formatPages,
  formatRatio,
  shortId,
  stripEnumPrefix,
} from './units.js';

describe('sizes', () => {
  it.each([
    [0, '0 B'],
    [512, '512 B'],
    [4096, '4 KiB'],
    [1536 * 1024, '1.5 MiB'],
    [1024 ** 3, '1 GiB'],
    [1023.99 * 1024 ** 2, '1 GiB'],
    [12.34 * 1024 ** 3, '12.3 GiB'],
    [300 * 1024 ** 3, '300 GiB'],
  ])('formatBytes(%d) = %s', (bytes, text) => expect(formatBytes(bytes)).toBe(text));

  it.each([
    [512, '512 MiB'],
    [1024, '1 GiB'],
    [1536, '1.5 GiB'],
    [8192, '8 GiB'],
    [3.25, '3.3 MiB'],
  ])('formatMib(%d) = %s', (mib, text) => expect(formatMib(mib)).toBe(text));

  it('counts pages as 4 KiB each', () => expect(formatPages(262144)).toBe('1 GiB'));
});

describe('rates and counts', () => {
  it.each([
    [0, '0 pages/s'],
    [850, '850 pages/s'],
    [2000, '2k pages/s'],
    [8123, '8.1k pages/s'],
    [20000, '20k pages/s'],
    [150000, '150k pages/s'],
    [1_250_000, '1.3M pages/s'],
  ])('formatPageRate(%d) = %s', (rate, text) => expect(formatPageRate(rate)).toBe(text));

  it('formats counts compactly', () => expect([formatCount(999), formatCount(12345), formatCount(2.5e6)]).toEqual(['999', '12.3k', '2.5M']));
  it('formats ratios without noise', () => expect([formatRatio(4), formatRatio(1.5), formatRatio(1.3333)]).toEqual(['4', '1.5', '1.33']));
});

describe('durations', () => {
  it.each([
    [0.4, '0.4 ms'],
    [3, '3 ms'],
    [230.4, '230 ms'],
    [4312, '4.31 s'],
    [42_500, '42.5 s'],
    [125_000, '2m 05s'],
    [3_720_000, '1h 02m'],
    [-1, '—'],
  ])('formatDuration(%d) = %s', (ms, text) => expect(formatDuration(ms)).toBe(text));
});

describe('ids and enums', () => {
  it.each([
    ['0f1e2d3c-aaaa-4bbb-8ccc-123456789abc', '0f1e2d3c'],
    ['vm-0mwpvq1x2-1a2b3c4d5e', '1a2b3c4d5e'],
    ['node-1', 'node-1'],
    ['abcdefghijklmnopqrstuvwxyz', 'stuvwxyz'],
  ])('shortId(%s) = %s', (id, short) => expect(shortId(id)).toBe(short));
  it('strips enum prefixes for display', () => {
    expect(stripEnumPrefix('VM_STATE_RUNNING', 'VM_STATE_')).toBe('RUNNING');
    expect(stripEnumPrefix('UNRECOGNIZED', 'VM_STATE_')).toBe('UNRECOGNIZED');
  });
});
