/**
 * What the reconciler does next with one migration, decided from its record and what this process and
 * the agents observed, with no side effects (KubeVirt's migration controller, without the patches in
 * the switch). The orchestrator carries the step out, each side effect idempotent, and asks again: a
 * restarted controller finds every open migration in its recorded phase and goes on from there.
 *
 * The commit is the point of no return:
 * - before it every path ends in `rollback` (Redis first: nothing can commit after it), then the
 *   agents are told to resume the source at N and discard the target;
 * - after it every path ends in `complete` (the target resumed N+1, the source is released), or in
 *   `revert` when the target lost its copy before resuming it (Redis first, then the source resumes
 *   its verified paused copy at N+2). The source is never told to resume at N after the commit.
 */
import { isFinal } from '@vmm/migration/phase';
import type { MigrationRecord } from './migration-record.js';

/** Why a migration failed, as the stable codes of Migration.error_reason. */
export const FAILURE_REASONS = {
  CONTROLLER_RESTARTED: 'CONTROLLER_RESTARTED',
  AGENT_UNAVAILABLE: 'AGENT_UNAVAILABLE',
  AGENT_REJECTED: 'AGENT_REJECTED',
  DIGEST_MISMATCH: 'DIGEST_MISMATCH',
  TARGET_LOST: 'TARGET_LOST',
  VM_GONE: 'VM_GONE',
  CANCELLED: 'CANCELLED',
  SHUTDOWN: 'CONTROLLER_SHUTDOWN',
  INTERNAL: 'INTERNAL',
} as const;
export type FailureReason = (typeof FAILURE_REASONS)[keyof typeof FAILURE_REASONS];

export type Step =
  /** PENDING: take an in-flight slot, then PREPARING. */
  | { kind: 'admit' }
  /** PREPARING: the target makes its paused incoming VM and data listener (idempotent), then PRECOPY. */
  | { kind: 'prepare-target' }
  /** PRECOPY/STOP_AND_COPY, started by this process: stream the VM from the source until it is verified. */
  | { kind: 'stream' }
  /** PRECOPY/STOP_AND_COPY found after a restart: ask the source for a verified copy it may hold. */
  | { kind: 'reattach' }
  /** COMMITTING, target not yet seen running: CommitIncoming at the committed epoch. */
  | { kind: 'commit-target' }
  /** COMMITTING, target running: release the source, then COMPLETED. */
  | { kind: 'complete' }
  /** Final: tell the agents what Redis says (best effort: reports reconcile the rest), then stop. */
  | { kind: 'settle' };

/**
 * The next step for a migration record. `streaming`: this process started (and holds) the source's
 * progress stream for it; without it, a migration in PRECOPY or STOP_AND_COPY was left by another
 * controller process.
 */
export function nextStep(m: Pick<MigrationRecord, 'phase' | 'targetResumedAtMs'>, streaming: boolean): Step {
  if (isFinal(m.phase)) return { kind: 'settle' };
  switch (m.phase) {
    case 'PENDING':
      return { kind: 'admit' };
    case 'PREPARING':
      return { kind: 'prepare-target' };
    case 'PRECOPY':
    case 'STOP_AND_COPY':
      return streaming ? { kind: 'stream' } : { kind: 'reattach' };
    case 'COMMITTING':
      return m.targetResumedAtMs > 0 ? { kind: 'complete' } : { kind: 'commit-target' };
    case 'COMPLETED':
    case 'FAILED':
    case 'CANCELLED':
      return { kind: 'settle' };
    default: {
      // A phase added to phase.ts without a step here fails to compile.
      const unknown: never = m.phase;
      throw new Error(`no step for phase ${String(unknown)}`);
    }
  }
}

/** The answer to a source that holds at the switch-over, its guest stopped (ContinueSwitchover or not). */
export type SwitchoverVerdict = { kind: 'continue' } | { kind: 'refuse'; error: string; errorReason: string };

/**
 * Whether a source holding at the switch-over may send its last pages: only once the migration is
 * recorded in STOP_AND_COPY (a CancelMigration or a failure that won the race left it in another phase,
 * and the write fails), and only to a target that is READY. A refusal rolls back: the source runs on.
 */
export function switchoverVerdict(recorded: boolean, targetNodeId: string, targetReady: boolean): SwitchoverVerdict {
  if (!recorded) return { kind: 'refuse', error: 'the migration ended before its switch-over', errorReason: FAILURE_REASONS.CANCELLED };
  if (!targetReady) return { kind: 'refuse', error: `the target node ${targetNodeId} is not ready at the switch-over`, errorReason: FAILURE_REASONS.AGENT_UNAVAILABLE };
  return { kind: 'continue' };
}

/** What a CommitIncoming attempt told us about the target's copy. */
export type CommitAttempt =
  | { kind: 'resumed'; resumedAtMs: number }
  /** The target answered that it does not (and never will) hold the copy: INCOMING_LOST, or NOT_FOUND. */
  | { kind: 'lost'; detail: string }
  /** The target did not answer (down, partitioned, frozen). */
  | { kind: 'unreachable'; detail: string }
  /** The target answered with another refusal (it is alive; try again). */
  | { kind: 'refused'; detail: string };

export type AfterCommitAttempt =
  | { kind: 'resumed'; resumedAtMs: number }
  /** Give the VM back to the source; `silentBeforeMs` > 0: only if the target has not reported since. */
  | { kind: 'revert'; silentBeforeMs: number; detail: string }
  | { kind: 'retry'; afterMs: number };

/** Between CommitIncoming attempts to a target that is alive or may come back. */
export const COMMIT_RETRY_MS = 500;

/**
 * After a CommitIncoming attempt. A target that lost its copy cannot resume it: revert at once. A
 * silent target may have resumed it and be partitioned: its lease guard pauses such a copy once its
 * lease (`leaseMs`) runs out, so the commit is reverted only when the target has been silent for
 * twice the lease (the revert script checks that atomically against the target's last report).
 */
export function afterCommitAttempt(attempt: CommitAttempt, targetLastReportMs: number, nowMs: number, leaseMs: number): AfterCommitAttempt {
  switch (attempt.kind) {
    case 'resumed':
      return attempt;
    case 'lost':
      return { kind: 'revert', silentBeforeMs: 0, detail: attempt.detail };
    case 'unreachable': {
      const silentBeforeMs = nowMs - 2 * leaseMs;
      if (targetLastReportMs < silentBeforeMs) return { kind: 'revert', silentBeforeMs, detail: attempt.detail };
      return { kind: 'retry', afterMs: COMMIT_RETRY_MS };
    }
    case 'refused':
      return { kind: 'retry', afterMs: COMMIT_RETRY_MS };
  }
}

/** The source's final progress message, as far as the commit decision goes. */
export interface SourceVerdict {
  phase: 'COMMITTING' | 'FAILED' | 'CANCELLED' | 'NONE';
  /** The phase of the last message the source sent ('' when it sent none), for the error text. */
  lastPhase: string;
  sourceDigest: string;
  targetDigest: string;
  error: string;
  errorReason: string;
}

export type AfterStream =
  | { kind: 'commit' }
  | { kind: 'rollback'; phase: 'FAILED' | 'CANCELLED'; error: string; errorReason: string };

/** Commit only a verified copy: COMMITTING with both digests present and equal. */
export function afterStream(v: SourceVerdict): AfterStream {
  if (v.phase === 'COMMITTING') {
    if (v.sourceDigest && v.sourceDigest === v.targetDigest) return { kind: 'commit' };
    return {
      kind: 'rollback',
      phase: 'FAILED',
      error: `digest mismatch: source ${v.sourceDigest || '-'} target ${v.targetDigest || '-'}`,
      errorReason: FAILURE_REASONS.DIGEST_MISMATCH,
    };
  }
  if (v.phase === 'CANCELLED') return { kind: 'rollback', phase: 'CANCELLED', error: v.error || 'cancelled', errorReason: v.errorReason || FAILURE_REASONS.CANCELLED };
  return {
    kind: 'rollback',
    phase: 'FAILED',
    error: v.error || `the source ended the migration in ${v.lastPhase || 'no phase'}, without a verified copy`,
    errorReason: v.errorReason || FAILURE_REASONS.AGENT_REJECTED,
  };
}
