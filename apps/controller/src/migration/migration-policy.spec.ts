import { describe, expect, it } from 'vitest';
import { DEFAULT_POLICY } from '@vmm/migration/policy';
import { resolveRequestPolicy } from './migration-policy.js';
import { DRAIN_POLICY } from './drain-policy.js';

describe('resolveRequestPolicy', () => {
  it('fills unset fields from the configured defaults, scaling the completion timeout per GiB', () => {
    const defaults = { ...DEFAULT_POLICY, downtimeLimitMs: 500, maxBandwidthMibPerSec: 256, completionTimeoutPerGibMs: 800_000 };
    expect(resolveRequestPolicy({ maxRounds: 5 }, 1024, defaults)).toEqual({
      downtimeLimitMs: 500, maxBandwidthMibPerSec: 256, maxRounds: 5, autoConverge: false, xbzrle: false, completionTimeoutMs: 800_000, xbzrleCacheMib: 64, multifdChannels: 1,
    });
  });

  it('keeps auto-converge of the drain policy over a default that says otherwise', () => {
    expect(resolveRequestPolicy(DRAIN_POLICY, 512, { ...DEFAULT_POLICY, autoConverge: false }).autoConverge).toBe(true);
  });

  it('refuses a bad field as INVALID_ARGUMENT naming policy.<cluster.v1 field>', () => {
    expect(() => resolveRequestPolicy({ maxBandwidthMibPerSec: -1 }, 512, DEFAULT_POLICY)).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT', field: 'policy.max_bandwidth_mib_per_sec' }),
    );
  });
});
