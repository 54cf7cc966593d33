import { resolvePolicy } from '@vmm/migration';
import { describe, expect, it } from 'vitest';
import {
  migrationCapabilities,
  migrationUri,
  QEMU_MAX_DOWNTIME_LIMIT_MS,
  sourceMigrationParameters,
  targetMigrationParameters,
  UNLIMITED_BANDWIDTH_BYTES_PER_SEC,
  updateMigrationParameters,
} from './migration-params.js';
import { incomingPortOf, phaseOfQemuStatus, toMigrationProgress } from './migration-progress.js';
import { canMoveIncoming, canMoveOutgoing, isOutgoingFinal } from './migration-state.js';

const MIB = 1024 * 1024;
const caps = (list: Array<{ capability: string; state: boolean }>) => Object.fromEntries(list.map((c) => [c.capability, c.state]));

describe('migration parameters', () => {
  it('always gates the switch-over, and maps the policy onto capabilities', () => {
    const plain = caps(migrationCapabilities(resolvePolicy({}, 256 * MIB)));
    expect(plain).toEqual({ 'pause-before-switchover': true, events: true, 'auto-converge': false, xbzrle: false, multifd: false });
    const all = caps(migrationCapabilities(resolvePolicy({ autoConverge: true, xbzrle: true }, 256 * MIB)));
    expect(all).toMatchObject({ 'auto-converge': true, xbzrle: true, multifd: false });
    expect(caps(migrationCapabilities(resolvePolicy({ multifdChannels: 2 }, 256 * MIB)))).toMatchObject({ xbzrle: false, multifd: true });
  });

  it('UpdateMigration as migrate-set-parameters: only what is set; force_complete as the largest downtime-limit', () => {
    expect(updateMigrationParameters({ forceComplete: false })).toEqual({});
    expect(updateMigrationParameters({ downtimeLimitMs: 500, maxBandwidthMibPerSec: 0, forceComplete: false })).toEqual({
      'downtime-limit': 500,
      'max-bandwidth': UNLIMITED_BANDWIDTH_BYTES_PER_SEC,
    });
    expect(updateMigrationParameters({ downtimeLimitMs: 500, maxBandwidthMibPerSec: 16, forceComplete: true })).toEqual({
      'downtime-limit': QEMU_MAX_DOWNTIME_LIMIT_MS,
      'max-bandwidth': 16 * MIB,
    });
  });

  it('converts units: downtime ms, bandwidth MiB/s to bytes/s (0 = unlimited), XBZRLE cache in bytes', () => {
    expect(sourceMigrationParameters(resolvePolicy({ downtimeLimitMs: 500, maxBandwidthMibPerSec: 128 }, 256 * MIB), 256 * MIB)).toEqual({
      'downtime-limit': 500,
      'max-bandwidth': 128 * MIB,
    });
    const p = sourceMigrationParameters(resolvePolicy({ xbzrle: true, xbzrleCacheMib: 32 }, 256 * MIB), 256 * MIB);
    expect(p).toEqual({ 'downtime-limit': 300, 'max-bandwidth': UNLIMITED_BANDWIDTH_BYTES_PER_SEC, 'xbzrle-cache-size': 32 * MIB });
    expect(sourceMigrationParameters(resolvePolicy({ multifdChannels: 4 }, 256 * MIB), 256 * MIB)).toMatchObject({ 'multifd-channels': 4 });
    expect(targetMigrationParameters(resolvePolicy({ multifdChannels: 4 }, 256 * MIB))).toEqual({ 'multifd-channels': 4 });
    expect(targetMigrationParameters(resolvePolicy({}, 256 * MIB))).toEqual({});
  });

  it('spells TCP URIs, IPv6 in brackets', () => {
    expect(migrationUri('127.0.0.1', 4444)).toBe('tcp:127.0.0.1:4444');
    expect(migrationUri('::1', 4444)).toBe('tcp:[::1]:4444');
  });
});

describe('query-migrate as MigrationProgress', () => {
  it.each([
    ['setup', 'PREPARING'],
    ['active', 'PRECOPY'],
    ['pre-switchover', 'STOP_AND_COPY'],
    ['device', 'STOP_AND_COPY'],
    ['completed', 'STOP_AND_COPY'],
    ['cancelling', 'CANCELLED'],
    ['cancelled', 'CANCELLED'],
    ['failed', 'FAILED'],
  ] as const)('QEMU %s is %s', (status, phase) => {
    expect(phaseOfQemuStatus(status)).toBe(phase);
  });

  it('maps rounds, pages, bytes, rates, throttle and expected downtime', () => {
    const p = toMigrationProgress(
      'm1',
      {
        status: 'active',
        'expected-downtime': 42,
        'cpu-throttle-percentage': 30,
        ram: { transferred: 9e7, remaining: 4096 * 10, total: 256 * MIB, normal: 20_000, duplicate: 40_000, 'dirty-pages-rate': 2048, 'dirty-sync-count': 3, mbps: 800, 'page-size': 4096 },
        'xbzrle-cache': { pages: 5 },
      },
      1234,
    );
    expect(p).toEqual({
      migrationId: 'm1',
      phase: 'PRECOPY',
      round: 3,
      pagesTotal: 65536,
      pagesSent: 60_005,
      bytesSent: 9e7,
      dirtyPagesRemaining: 10,
      dirtyRatePagesPerSec: 2048,
      throughputBytesPerSec: 100_000_000,
      expectedDowntimeMs: 42,
      throttlePercent: 30,
      pausedAtMs: 1234,
    });
    expect(toMigrationProgress('m1', {})).toMatchObject({ phase: 'PREPARING', round: 0, bytesSent: 0, throttlePercent: 0 });
  });

  it('reads the incoming port from socket-address', () => {
    expect(incomingPortOf({ 'socket-address': [{ type: 'inet', host: '127.0.0.1', port: '40123' }] })).toBe(40123);
    expect(incomingPortOf({})).toBeNull();
  });
});

describe('migration state machines', () => {
  it('outgoing: cancel or fail only before the switch-over is let go; final states have no way out', () => {
    expect(canMoveOutgoing('precopy', 'switchover-ready')).toBe(true);
    expect(canMoveOutgoing('switchover-ready', 'cancelled')).toBe(true);
    expect(canMoveOutgoing('switching', 'cancelled')).toBe(false);
    expect(canMoveOutgoing('switching', 'failed')).toBe(true);
    expect(canMoveOutgoing('completed', 'failed')).toBe(false);
    expect(isOutgoingFinal('completed')).toBe(true);
    expect(isOutgoingFinal('switching')).toBe(false);
  });

  it('incoming: commit only what was received', () => {
    expect(canMoveIncoming('listening', 'committed')).toBe(false);
    expect(canMoveIncoming('received', 'committed')).toBe(true);
    expect(canMoveIncoming('committed', 'aborted')).toBe(false);
  });
});
