import { MIGRATION_PHASES, resolvePolicy } from '@vmm/migration';
import { cluster } from '@vmm/proto';
import { describe, expect, it } from 'vitest';
import { toEnginePolicy, toProtoPhase } from './migration-progress.js';

describe('migration progress mapping', () => {
  it('maps every engine phase to a cluster.v1 phase', () => {
    const protoPhases = new Set(Object.values(cluster.MigrationPhase));
    for (const phase of MIGRATION_PHASES) expect(protoPhases.has(toProtoPhase(phase))).toBe(true);
  });

  it('passes every policy field to the engine, and 0 / missing as defaults', () => {
    const policy: cluster.MigrationPolicy = {
      downtimeLimitMs: 50,
      maxBandwidthMibPerSec: 100,
      maxRounds: 7,
      autoConverge: true,
      xbzrle: true,
      completionTimeoutMs: 90_000,
      xbzrleCacheMib: 16,
    };
    expect(resolvePolicy(toEnginePolicy(policy), 1 << 30)).toEqual(policy);
    const defaults = resolvePolicy({}, 1 << 30);
    expect(resolvePolicy(toEnginePolicy(undefined), 1 << 30)).toEqual(defaults);
    expect(resolvePolicy(toEnginePolicy(null), 1 << 30)).toEqual(defaults);
    const zeros = { ...policy, downtimeLimitMs: 0, maxRounds: 0, completionTimeoutMs: 0, xbzrleCacheMib: 0, maxBandwidthMibPerSec: 0, autoConverge: false, xbzrle: false };
    expect(resolvePolicy(toEnginePolicy(zeros), 1 << 30)).toEqual(defaults);
  });
});
