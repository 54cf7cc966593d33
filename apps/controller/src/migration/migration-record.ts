/**
 * A migration as the controller keeps it (Redis hash `mig:<id>`), its wire shape, and the mapping
 * between the shared phase model (@vmm/migration/phase) and the proto enum.
 */
import { cluster } from '@vmm/proto';
import { allowedTransitions, MIGRATION_PHASES, type MigrationPhase } from '@vmm/migration/phase';
// Type only (erased): the controller must not load the engine or the emulator at run time.
import type { MigrationProgress } from '@vmm/migration/progress';

/**
 * The engine's progress (id, phase, round, pages, bytes, rates, expected downtime, throttle), as the
 * source agent forwards it, plus what the controller keeps beside it.
 */
export interface MigrationRecord extends MigrationProgress {
  vmId: string;
  sourceNodeId: string;
  targetNodeId: string;
  /** Not in the engine's progress: the source agent reports them, the controller sets the final values when the migration completes. */
  downtimeMs: number;
  totalTimeMs: number;
  sourceDigest: string;
  targetDigest: string;
  error: string;
  policy: cluster.MigrationPolicy;
  reason: string;
  createdAtMs: number;
  finishedAtMs: number;
  /** One-time secret the source presents on the target's data connection. */
  token: string;
  /** 0 until the source paused (the engine's progress leaves it out until then). */
  pausedAtMs: number;
  /** Room reserved on the target while the migration runs. */
  vcpus: number;
  memoryMib: number;
  antiAffinityGroup: string;
  reserved: boolean;
  committed: boolean;
  fencingEpoch: number;
  /** Bumped by every change; WatchMigration emits each revision once. */
  rev: number;
}

/** Progress fields copied from the source agent's MigrationProgress messages. */
export const PROGRESS_FIELDS = [
  'round',
  'pagesTotal',
  'pagesSent',
  'bytesSent',
  'dirtyPagesRemaining',
  'dirtyRatePagesPerSec',
  'throughputBytesPerSec',
  'expectedDowntimeMs',
  'downtimeMs',
  'totalTimeMs',
  'throttlePercent',
] as const;

export function toProtoPhase(phase: MigrationPhase): cluster.MigrationPhase {
  return `MIGRATION_PHASE_${phase}` as cluster.MigrationPhase;
}

export function fromProtoPhase(phase: cluster.MigrationPhase | string): MigrationPhase | undefined {
  const name = String(phase).replace(/^MIGRATION_PHASE_/, '');
  return (MIGRATION_PHASES as readonly string[]).includes(name) ? (name as MigrationPhase) : undefined;
}

/** Phases from which `to` may be reached in one step (the CAS list for the Lua scripts), as proto names. */
export function phasesLeadingTo(to: MigrationPhase, includeSelf = false): string[] {
  const from = MIGRATION_PHASES.filter((p) => allowedTransitions(p).includes(to) || (includeSelf && p === to));
  return from.map(toProtoPhase);
}

export function toProtoMigration(m: MigrationRecord): cluster.Migration {
  return {
    migrationId: m.migrationId,
    vmId: m.vmId,
    sourceNodeId: m.sourceNodeId,
    targetNodeId: m.targetNodeId,
    phase: toProtoPhase(m.phase),
    round: m.round,
    pagesTotal: m.pagesTotal,
    pagesSent: m.pagesSent,
    bytesSent: m.bytesSent,
    dirtyPagesRemaining: m.dirtyPagesRemaining,
    dirtyRatePagesPerSec: m.dirtyRatePagesPerSec,
    throughputBytesPerSec: m.throughputBytesPerSec,
    expectedDowntimeMs: m.expectedDowntimeMs,
    downtimeMs: m.downtimeMs,
    totalTimeMs: m.totalTimeMs,
    throttlePercent: m.throttlePercent,
    sourceDigest: m.sourceDigest,
    targetDigest: m.targetDigest,
    error: m.error,
    policy: m.policy,
    reason: m.reason,
    createdAtMs: m.createdAtMs,
    finishedAtMs: m.finishedAtMs,
  };
}

const num = (v: string | undefined): number => {
  const n = Number(v);
  return v === undefined || v === '' || !Number.isFinite(n) ? 0 : n;
};

export function hashToMigration(h: Record<string, string>): MigrationRecord | undefined {
  if (!h.migrationId) return undefined;
  const phase = fromProtoPhase(h.phase ?? '') ?? 'FAILED';
  let policy: cluster.MigrationPolicy;
  try {
    policy = JSON.parse(h.policy ?? '{}') as cluster.MigrationPolicy;
  } catch {
    policy = {} as cluster.MigrationPolicy;
  }
  return {
    migrationId: h.migrationId,
    vmId: h.vmId ?? '',
    sourceNodeId: h.sourceNodeId ?? '',
    targetNodeId: h.targetNodeId ?? '',
    phase,
    round: num(h.round),
    pagesTotal: num(h.pagesTotal),
    pagesSent: num(h.pagesSent),
    bytesSent: num(h.bytesSent),
    dirtyPagesRemaining: num(h.dirtyPagesRemaining),
    dirtyRatePagesPerSec: num(h.dirtyRatePagesPerSec),
    throughputBytesPerSec: num(h.throughputBytesPerSec),
    expectedDowntimeMs: num(h.expectedDowntimeMs),
    downtimeMs: num(h.downtimeMs),
    totalTimeMs: num(h.totalTimeMs),
    throttlePercent: num(h.throttlePercent),
    sourceDigest: h.sourceDigest ?? '',
    targetDigest: h.targetDigest ?? '',
    error: h.error ?? '',
    policy,
    reason: h.reason ?? '',
    createdAtMs: num(h.createdAtMs),
    finishedAtMs: num(h.finishedAtMs),
    token: h.token ?? '',
    pausedAtMs: num(h.pausedAtMs),
    vcpus: num(h.vcpus),
    memoryMib: num(h.memoryMib),
    antiAffinityGroup: h.antiAffinityGroup ?? '',
    reserved: h.reserved === '1',
    committed: h.committed === '1',
    fencingEpoch: num(h.fencingEpoch),
    rev: num(h.rev),
  };
}
