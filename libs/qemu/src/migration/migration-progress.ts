import type { MigrationPhase, MigrationProgress } from '@vmm/migration';

const PAGE_SIZE = 4096;

/** The fields of QEMU's query-migrate (MigrationInfo) the driver reads. */
export interface QemuMigrationInfo {
  status?: string;
  'total-time'?: number;
  'expected-downtime'?: number;
  downtime?: number;
  'setup-time'?: number;
  'cpu-throttle-percentage'?: number;
  'error-desc'?: string;
  ram?: {
    transferred?: number;
    remaining?: number;
    total?: number;
    duplicate?: number;
    normal?: number;
    'dirty-pages-rate'?: number;
    'dirty-sync-count'?: number;
    mbps?: number;
    'page-size'?: number;
  };
  'xbzrle-cache'?: { pages?: number; 'cache-miss'?: number; overflow?: number };
  'socket-address'?: Array<{ type: string; host?: string; port?: string | number }>;
}

/**
 * QEMU's MigrationStatus seen from the source, as the engine's phases. `pre-switchover` (the source
 * stopped, waiting for migrate-continue), `device` and `completed` are STOP_AND_COPY: the digests are
 * still to be compared, and COMMITTING is the controller's to declare.
 */
export function phaseOfQemuStatus(status: string | undefined): MigrationPhase {
  switch (status) {
    case undefined:
    case 'none':
    case 'setup':
      return 'PREPARING';
    case 'active':
    case 'postcopy-active':
    case 'wait-unplug':
      return 'PRECOPY';
    case 'pre-switchover':
    case 'device':
    case 'completed':
      return 'STOP_AND_COPY';
    case 'cancelling':
    case 'cancelled':
      return 'CANCELLED';
    default:
      return 'FAILED'; // failed, colo, postcopy-paused, …
  }
}

/**
 * One query-migrate answer as the engine's MigrationProgress (libs/migration/src/progress.ts), so that
 * the agent reports QEMU migrations exactly as emulator ones: round = dirty-sync count, remaining and
 * dirty rate in pages, throughput from QEMU's mbps (megabits/s), expected downtime in ms.
 */
export function toMigrationProgress(migrationId: string, info: QemuMigrationInfo, pausedAtMs?: number): MigrationProgress {
  const ram = info.ram ?? {};
  const pageSize = ram['page-size'] || PAGE_SIZE;
  const progress: MigrationProgress = {
    migrationId,
    phase: phaseOfQemuStatus(info.status),
    round: ram['dirty-sync-count'] ?? 0,
    pagesTotal: Math.round((ram.total ?? 0) / pageSize),
    pagesSent: (ram.normal ?? 0) + (ram.duplicate ?? 0) + (info['xbzrle-cache']?.pages ?? 0),
    bytesSent: ram.transferred ?? 0,
    dirtyPagesRemaining: Math.round((ram.remaining ?? 0) / pageSize),
    dirtyRatePagesPerSec: ram['dirty-pages-rate'] ?? 0,
    throughputBytesPerSec: Math.round(((ram.mbps ?? 0) * 1e6) / 8),
    expectedDowntimeMs: info['expected-downtime'] ?? info.downtime ?? 0,
    throttlePercent: info['cpu-throttle-percentage'] ?? 0,
  };
  if (pausedAtMs !== undefined) progress.pausedAtMs = pausedAtMs;
  return progress;
}

/** The port QEMU listens on for an incoming migration (query-migrate on the target), or null. */
export function incomingPortOf(info: QemuMigrationInfo): number | null {
  const addr = info['socket-address']?.find((a) => a.type === 'inet');
  const port = addr?.port === undefined ? NaN : Number(addr.port);
  return Number.isInteger(port) && port > 0 ? port : null;
}
