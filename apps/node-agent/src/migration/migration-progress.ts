import type { MigrationPhase, MigrationProgress } from '@vmm/migration';
import { agent, cluster } from '@vmm/proto';
import type { OutgoingRunner } from './source.runner.js';

export function toProtoPhase(phase: MigrationPhase): cluster.MigrationPhase {
  return `MIGRATION_PHASE_${phase}` as cluster.MigrationPhase;
}

const EMPTY: agent.MigrationProgress = {
  phase: cluster.MigrationPhase.MIGRATION_PHASE_PREPARING,
  round: 0,
  pagesTotal: 0,
  pagesSent: 0,
  bytesSent: 0,
  dirtyPagesRemaining: 0,
  dirtyRatePagesPerSec: 0,
  throughputBytesPerSec: 0,
  expectedDowntimeMs: 0,
  downtimeMs: 0,
  totalTimeMs: 0,
  throttlePercent: 0,
  sourceDigest: '',
  targetDigest: '',
  error: '',
  pausedAtMs: 0,
  errorReason: '',
  awaitingSwitchover: false,
  switchoverHoldMs: 0,
};

/** One engine progress event (after each round, at each phase change) as sent to the controller. */
export function progressMessage(progress: MigrationProgress, startedAtMs: number): agent.MigrationProgress {
  return {
    ...EMPTY,
    phase: toProtoPhase(progress.phase),
    round: progress.round,
    pagesTotal: progress.pagesTotal,
    pagesSent: progress.pagesSent,
    bytesSent: progress.bytesSent,
    dirtyPagesRemaining: progress.dirtyPagesRemaining,
    dirtyRatePagesPerSec: progress.dirtyRatePagesPerSec,
    throughputBytesPerSec: progress.throughputBytesPerSec,
    expectedDowntimeMs: progress.expectedDowntimeMs,
    totalTimeMs: Date.now() - startedAtMs,
    throttlePercent: progress.throttlePercent,
    pausedAtMs: progress.pausedAtMs ?? 0,
    awaitingSwitchover: progress.awaitingSwitchover === true,
    switchoverHoldMs: progress.switchoverHoldMs ?? 0,
  };
}

/**
 * The stream's last message: COMMITTING with both digests once the target verified its copy, or
 * FAILED / CANCELLED with the error as `CODE: message` (the code is the engine's stable code).
 */
export function finalMessage(runner: Pick<OutgoingRunner, 'state' | 'result' | 'error' | 'startedAtMs'>, last: agent.MigrationProgress | undefined): agent.MigrationProgress {
  // The hold, if there was one, is over by the last message.
  const base = { ...EMPTY, ...last, awaitingSwitchover: false, switchoverHoldMs: 0, totalTimeMs: Date.now() - runner.startedAtMs };
  const result = runner.result;
  if (runner.state === 'ready' || runner.state === 'released') {
    if (!result) throw new Error('a ready outgoing migration holds its result');
    return {
      ...base,
      phase: cluster.MigrationPhase.MIGRATION_PHASE_COMMITTING,
      round: result.stats.rounds - 1,
      pagesTotal: result.stats.pagesTotal,
      pagesSent: result.stats.pagesSent,
      bytesSent: result.stats.bytesSent,
      dirtyPagesRemaining: 0,
      expectedDowntimeMs: 0,
      downtimeMs: result.stats.stopAndCopyMs,
      totalTimeMs: result.totalTimeMs,
      throttlePercent: result.stats.throttlePercentMax,
      sourceDigest: result.sourceDigest,
      targetDigest: result.targetDigest,
      pausedAtMs: result.pausedAtMs,
    };
  }
  const error = runner.error;
  const code = error?.code ?? 'INTERNAL';
  // A digest mismatch found by the source (QEMU's driver) carries both digests for the record.
  const digests = error as { sourceDigest?: unknown; targetDigest?: unknown } | undefined;
  return {
    ...base,
    ...(code === 'DIGEST_MISMATCH' && typeof digests?.sourceDigest === 'string' && typeof digests.targetDigest === 'string'
      ? { sourceDigest: digests.sourceDigest, targetDigest: digests.targetDigest }
      : {}),
    phase:
      code === 'CANCELLED' ? cluster.MigrationPhase.MIGRATION_PHASE_CANCELLED : cluster.MigrationPhase.MIGRATION_PHASE_FAILED,
    error: error?.message ?? 'unknown failure',
    errorReason: code,
  };
}
