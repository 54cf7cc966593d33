import { MIGRATION_PHASES, resolvePolicy } from '@vmm/migration';
import { cluster } from '@vmm/proto';
import { describe, expect, it } from 'vitest';
import { toEnginePolicy } from './engine-policy.js';
import { toProtoPhase } from './migration-progress.js';

describe('migration progress mapping', () => {
  it('maps every engine phase to a cluster.v1 phase', () => {
    const protoPhases = new Set(Object.values(cluster.MigrationPhase));
    for (const phase of MIGRATION_PHASES) expect(protoPhases.has(toProtoPhase(phase))).toBe(true);
  });

  it('passes every policy field to the engine; missing fields take the defaults, an explicit 0 stays 0', () => {
    const policy: cluster.MigrationPolicy = {
      downtimeLimitMs: 50,
      maxBandwidthMibPerSec: 100,
      maxRounds: 7,
      autoConverge: true,
      xbzrle: true,
      completionTimeoutMs: 90_000,
      xbzrleCacheMib: 16,
      multifdChannels: 1,
    };
    expect(resolvePolicy(toEnginePolicy(policy), 1 << 30)).toEqual(policy);
    const defaults = resolvePolicy({}, 1 << 30);
    expect(resolvePolicy(toEnginePolicy(undefined), 1 << 30)).toEqual(defaults);
    expect(resolvePolicy(toEnginePolicy(null), 1 << 30)).toEqual(defaults);
    expect(resolvePolicy(toEnginePolicy({}), 1 << 30)).toEqual(defaults);
    // proto-loader hands unset optional fields over as null or leaves them out
    const nulls = { downtimeLimitMs: null, xbzrle: null } as unknown as cluster.MigrationPolicy;
    expect(resolvePolicy(toEnginePolicy(nulls), 1 << 30)).toEqual(defaults);
    const zeros = { maxBandwidthMibPerSec: 0, autoConverge: false, xbzrle: false, xbzrleCacheMib: 0 };
    expect(resolvePolicy(toEnginePolicy(zeros), 1 << 30)).toMatchObject(zeros);
    expect(() => resolvePolicy(toEnginePolicy({ maxRounds: 0 }), 1 << 30)).toThrow(/max_rounds=0/);
  });
});
