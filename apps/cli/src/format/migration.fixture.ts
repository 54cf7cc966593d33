import { cluster } from '@vmm/proto';

/** A completed migration with a matching digest; tests override what they need. */
export function migration(overrides: Partial<cluster.Migration> = {}): cluster.Migration {
  return cluster.Migration.fromPartial({
    migrationId: '7c1f0e2a-1111-2222-3333-444455556666',
    vmId: 'a1b2c3d4-0000-0000-0000-000000000000',
    sourceNodeId: 'node-1',
    targetNodeId: 'node-2',
    phase: cluster.MigrationPhase.MIGRATION_PHASE_COMPLETED,
    round: 4,
    pagesTotal: 262144,
    pagesSent: 300000,
    bytesSent: 629145600,
    dirtyPagesRemaining: 0,
    dirtyRatePagesPerSec: 2000,
    throughputBytesPerSec: 1073741824,
    expectedDowntimeMs: 12,
    downtimeMs: 23.4,
    totalTimeMs: 1840,
    throttlePercent: 0,
    sourceDigest: '9f3c5a7e11d2b4c0',
    targetDigest: '9f3c5a7e11d2b4c0',
    error: '',
    policy: { downtimeLimitMs: 300, maxBandwidthMibPerSec: 0, maxRounds: 30, autoConverge: false, xbzrle: false, completionTimeoutMs: 0, xbzrleCacheMib: 0 },
    reason: 'user',
    createdAtMs: 0,
    finishedAtMs: 0,
    ...overrides,
  });
}
