import { describe, expect, it } from 'vitest';
import { InvalidPolicyError } from './errors.js';
import { bandwidthBytesPerSec, defaultCompletionTimeoutMs, resolvePolicy } from './policy.js';

const GIB = 1024 ** 3;

describe('resolvePolicy', () => {
  it('fills QEMU/KubeVirt defaults', () => {
    expect(resolvePolicy(undefined, GIB)).toEqual({
      downtimeLimitMs: 300,
      maxBandwidthMibPerSec: 0,
      maxRounds: 30,
      autoConverge: false,
      xbzrle: false,
      completionTimeoutMs: 150_000,
      xbzrleCacheMib: 64,
    });
  });

  it('treats proto3 zeros as unset except bandwidth (0 = unlimited)', () => {
    const p = resolvePolicy({ downtimeLimitMs: 0, maxRounds: 0, completionTimeoutMs: 0, maxBandwidthMibPerSec: 0 }, GIB);
    expect(p.downtimeLimitMs).toBe(300);
    expect(p.maxRounds).toBe(30);
    expect(bandwidthBytesPerSec(p)).toBe(Infinity);
  });

  it('keeps explicit values', () => {
    const p = resolvePolicy({ downtimeLimitMs: 50, maxBandwidthMibPerSec: 128, autoConverge: true, xbzrleCacheMib: 256 }, GIB);
    expect(p).toMatchObject({ downtimeLimitMs: 50, maxBandwidthMibPerSec: 128, autoConverge: true, xbzrleCacheMib: 256 });
    expect(bandwidthBytesPerSec(p)).toBe(128 * 1024 * 1024);
  });

  it.each([
    [256 * 1024 * 1024, 60_000],
    [GIB, 150_000],
    [4 * GIB, 600_000],
  ])('scales the completion timeout for %d bytes to %d ms', (bytes, ms) => {
    expect(defaultCompletionTimeoutMs(bytes)).toBe(ms);
  });

  it.each([
    [{ downtimeLimitMs: -1 }, 'downtimeLimitMs'],
    [{ maxRounds: 2.5 }, 'maxRounds'],
    [{ maxBandwidthMibPerSec: Number.NaN }, 'maxBandwidthMibPerSec'],
  ])('rejects %j', (partial, field) => {
    expect(() => resolvePolicy(partial, GIB)).toThrow(InvalidPolicyError);
    try {
      resolvePolicy(partial, GIB);
    } catch (e) {
      expect((e as InvalidPolicyError).code).toBe('INVALID_POLICY');
      expect((e as InvalidPolicyError).field).toBe(field);
    }
  });
});
