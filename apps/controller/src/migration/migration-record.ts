/**
 * A migration as the controller keeps it (Redis hash `mig:<id>`) and its wire shape. The phase model
 * and its proto names belong to @vmm/migration/phase.
 */
import { cluster } from '@vmm/proto';
import { toProtoPhase, type MigrationPhase, type ProtoPhaseName } from '@vmm/migration/phase';
// Type only (erased): the controller must not load the engine or the emulator at run time.
import type { MigrationProgress } from '@vmm/migration/progress';

/**
 * phase.ts's phases and cluster.v1 MigrationPhase name the same set: a phase added on one side only
 * fails to compile here.
 */
type OneSidedPhases =
  | Exclude<ProtoPhaseName, cluster.MigrationPhase>
  | Exclude<cluster.MigrationPhase, ProtoPhaseName | 'MIGRATION_PHASE_UNSPECIFIED' | 'UNRECOGNIZED'>;
const samePhases: [OneSidedPhases] extends [never] ? true : OneSidedPhases = true;
void samePhases;

/** One phase entered, and when (wall clock ms). */
export interface PhaseTransition {
  phase: MigrationPhase;
  timeMs: number;
}

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
  /** Stable code of a failure (NOT_CONVERGED, CONNECTION_LOST, DIGEST_MISMATCH, TARGET_LOST, …). */
  errorReason: string;
  policy: cluster.MigrationPolicy;
  reason: string;
  createdAtMs: number;
  startedAtMs: number;
  finishedAtMs: number;
  /** One-time secret the source presents on the target's data connection. */
  token: string;
  /** The target's data listener, once PrepareIncoming answered. */
  dataAddress: string;
  /** 0 until the source paused (the engine's progress leaves it out until then). */
  pausedAtMs: number;
  /** Room reserved on the target while the migration runs (given back, or become the VM's, at the end). */
  vcpus: number;
  memoryMib: number;
  antiAffinityGroup: string;
  reserved: boolean;
  /** The VM's epoch when the migration was created (N); the commit gives it N+1. */
  sourceEpoch: number;
  /** The epoch the commit gave the VM on the target (N+1); 0 before the commit. */
  fencingEpoch: number;
  committedAtMs: number;
  /** When the target was seen running the VM (its CommitIncoming answer or its report): no revert after it. */
  targetResumedAtMs: number;
  /** A revert gave the VM back to its source under this epoch (N+2); 0 otherwise. */
  revertedEpoch: number;
  transitions: PhaseTransition[];
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
    errorReason: m.errorReason,
    policy: m.policy,
    reason: m.reason,
    createdAtMs: m.createdAtMs,
    finishedAtMs: m.finishedAtMs,
    phaseTransitions: m.transitions.map((t) => ({ phase: toProtoPhase(t.phase), timeMs: t.timeMs })),
  };
}
