import { describe, expect, it } from 'vitest';
import { InvalidPolicyError } from './errors.js';
import {
  DEFAULT_POLICY,
  MAX_COMPLETION_TIMEOUT_MS,
  POLICY_KNOBS,
  POLICY_PROTO_FIELDS,
  bandwidthBytesPerSec,
  defaultCompletionTimeoutMs,
  maxXbzrleCacheMib,
  resolvePolicy,
  streamDeadlineMs,
  validatePolicyDefaults,
  type PartialMigrationPolicy,
} from './policy.js';

const MIB = 1024 ** 2;
const GIB = 1024 ** 3;

function rejection(run: () => unknown): InvalidPolicyError {
  try {
    run();
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidPolicyError);
    return e as InvalidPolicyError;
  }
  throw new Error('expected InvalidPolicyError');
}

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
      multifdChannels: 1,
    });
  });

  it('treats null (proto-loader) like undefined: unset', () => {
    const nulls = Object.fromEntries(POLICY_KNOBS.map((k) => [k, null])) as PartialMigrationPolicy;
    expect(resolvePolicy(nulls, GIB)).toEqual(resolvePolicy({}, GIB));
  });

  it('keeps explicit values, 0 and false included where they mean something', () => {
    const p = resolvePolicy({ downtimeLimitMs: 50, maxBandwidthMibPerSec: 0, autoConverge: false, xbzrle: false, xbzrleCacheMib: 0 }, GIB, {
      ...DEFAULT_POLICY,
      maxBandwidthMibPerSec: 128,
      autoConverge: true,
      xbzrle: true,
    });
    expect(p).toMatchObject({ downtimeLimitMs: 50, maxBandwidthMibPerSec: 0, autoConverge: false, xbzrle: false, xbzrleCacheMib: 0 });
    expect(bandwidthBytesPerSec(p)).toBe(Infinity);
    expect(bandwidthBytesPerSec(resolvePolicy({ maxBandwidthMibPerSec: 128.5 }, GIB))).toBe(128.5 * MIB);
  });

  it('takes unset fields from configured defaults, the completion timeout scaled per GiB', () => {
    const defaults = { ...DEFAULT_POLICY, downtimeLimitMs: 500, maxRounds: 8, autoConverge: true, completionTimeoutPerGibMs: 800_000 };
    expect(resolvePolicy({ maxRounds: 3 }, 2 * GIB, defaults)).toMatchObject({ downtimeLimitMs: 500, maxRounds: 3, autoConverge: true, completionTimeoutMs: 1_600_000 });
  });

  it('caps the default XBZRLE cache at a quarter of the VM', () => {
    expect(resolvePolicy({ xbzrle: true }, 128 * MIB).xbzrleCacheMib).toBe(32);
    expect(resolvePolicy({ xbzrle: true }, 2 * MIB).xbzrleCacheMib).toBe(1); // at least 1 MiB
    expect(resolvePolicy({ xbzrle: true, xbzrleCacheMib: 256 }, GIB).xbzrleCacheMib).toBe(256);
  });

  it.each([
    [256 * MIB, 60_000],
    [GIB, 150_000],
    [4 * GIB, 600_000],
    [1024 * GIB, MAX_COMPLETION_TIMEOUT_MS],
  ])('scales the default completion timeout for %d bytes to %d ms (between 60 s and 24 h)', (bytes, ms) => {
    expect(defaultCompletionTimeoutMs(bytes)).toBe(ms);
    expect(resolvePolicy({}, bytes).completionTimeoutMs).toBe(ms);
  });

  it.each<[string, PartialMigrationPolicy, keyof typeof POLICY_PROTO_FIELDS, RegExp]>([
    ['explicit 0 downtime', { downtimeLimitMs: 0 }, 'downtimeLimitMs', /in 1\.\.60000/],
    ['negative downtime', { downtimeLimitMs: -1 }, 'downtimeLimitMs', /in 1\.\.60000/],
    ['a pause of hours', { downtimeLimitMs: 3_600_000 }, 'downtimeLimitMs', /in 1\.\.60000/],
    ['fractional downtime', { downtimeLimitMs: 2.5 }, 'downtimeLimitMs', /whole number/],
    ['explicit 0 rounds', { maxRounds: 0 }, 'maxRounds', /in 1\.\.10000/],
    ['a million rounds', { maxRounds: 1_000_000 }, 'maxRounds', /in 1\.\.10000/],
    ['fractional rounds', { maxRounds: 2.5 }, 'maxRounds', /whole number/],
    ['NaN bandwidth', { maxBandwidthMibPerSec: Number.NaN }, 'maxBandwidthMibPerSec', /finite/],
    ['infinite bandwidth', { maxBandwidthMibPerSec: Infinity }, 'maxBandwidthMibPerSec', /finite/],
    ['negative bandwidth', { maxBandwidthMibPerSec: -8 }, 'maxBandwidthMibPerSec', /0 \(unlimited\) or in 1\.\./],
    ['a trickle of bandwidth', { maxBandwidthMibPerSec: 0.5 }, 'maxBandwidthMibPerSec', /0 \(unlimited\) or in 1\.\./],
    ['bandwidth beyond any link', { maxBandwidthMibPerSec: 1e12 }, 'maxBandwidthMibPerSec', /in 1\.\.1048576/],
    ['explicit 0 completion timeout', { completionTimeoutMs: 0 }, 'completionTimeoutMs', /in 1000\.\.86400000/],
    ['a timeout past a Node timer (2^31 ms)', { completionTimeoutMs: 2 ** 31 }, 'completionTimeoutMs', /in 1000\.\.86400000/],
    ['a timeout of a day and a second', { completionTimeoutMs: MAX_COMPLETION_TIMEOUT_MS + 1000 }, 'completionTimeoutMs', /86400000/],
    ['no XBZRLE cache with xbzrle on', { xbzrle: true, xbzrleCacheMib: 0 }, 'xbzrleCacheMib', /at least 1 MiB when xbzrle is on/],
    ['an XBZRLE cache above a quarter of the VM', { xbzrleCacheMib: 257 }, 'xbzrleCacheMib', /quarter of the VM's memory \(256 MiB\)/],
    ['a negative XBZRLE cache', { xbzrleCacheMib: -64 }, 'xbzrleCacheMib', /0 \(no cache/],
    ['no stream at all (0 multifd channels)', { multifdChannels: 0 }, 'multifdChannels', /in 1\.\.16/],
    ['more multifd channels than 16', { multifdChannels: 17 }, 'multifdChannels', /in 1\.\.16/],
    ['a fraction of a channel', { multifdChannels: 2.5 }, 'multifdChannels', /whole number/],
    ['multifd with xbzrle', { multifdChannels: 2, xbzrle: true }, 'multifdChannels', /1 with xbzrle on/],
    ['a string where a boolean goes', { xbzrle: 'yes' as unknown as boolean }, 'xbzrle', /true or false/],
    ['a string where a number goes', { maxRounds: '3' as unknown as number }, 'maxRounds', /finite number/],
  ])('refuses %s, naming the field', (_what, partial, field, reason) => {
    const e = rejection(() => resolvePolicy(partial, GIB));
    expect(e.code).toBe('INVALID_POLICY');
    expect(e.field).toBe(field);
    expect(e.protoField).toBe(POLICY_PROTO_FIELDS[field]);
    expect(e.message).toContain(POLICY_PROTO_FIELDS[field]);
    expect(e.message).toMatch(reason);
  });

  it('a quarter of the VM is the cache bound, at least 1 MiB', () => {
    expect(maxXbzrleCacheMib(GIB)).toBe(256);
    expect(maxXbzrleCacheMib(MIB)).toBe(1);
  });
});

describe('validatePolicyDefaults', () => {
  it('accepts the built-in defaults', () => {
    expect(validatePolicyDefaults({ ...DEFAULT_POLICY })).toEqual(DEFAULT_POLICY);
  });

  it.each<[Partial<typeof DEFAULT_POLICY>, string]>([
    [{ downtimeLimitMs: 0 }, 'downtimeLimitMs'],
    [{ maxRounds: 0 }, 'maxRounds'],
    [{ maxBandwidthMibPerSec: -1 }, 'maxBandwidthMibPerSec'],
    [{ xbzrleCacheMib: 0 }, 'xbzrleCacheMib'],
    [{ multifdChannels: 0 }, 'multifdChannels'],
    [{ multifdChannels: 2, xbzrle: true }, 'multifdChannels'],
    [{ completionTimeoutPerGibMs: 2 ** 31 }, 'completionTimeoutPerGibMs'],
    [{ completionTimeoutPerGibMs: 10 }, 'completionTimeoutPerGibMs'],
  ])('refuses %j', (bad, field) => {
    expect(rejection(() => validatePolicyDefaults({ ...DEFAULT_POLICY, ...bad })).field).toBe(field);
  });
});

describe('streamDeadlineMs', () => {
  it('is the completion timeout plus the margin; a stored policy without one gets the default for its size', () => {
    expect(streamDeadlineMs({ completionTimeoutMs: 90_000 }, GIB)).toBe(150_000);
    expect(streamDeadlineMs({ completionTimeoutMs: 0 }, 4 * GIB)).toBe(600_000 + 60_000);
    expect(streamDeadlineMs(undefined, GIB, 5000)).toBe(155_000);
  });
});
