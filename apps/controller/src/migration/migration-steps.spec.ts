import { describe, expect, it } from 'vitest';
import type { MigrationPhase } from '@vmm/migration/phase';
import { afterCommitAttempt, afterStream, COMMIT_RETRY_MS, nextStep, type CommitAttempt, type Step } from './migration-steps.js';

describe('nextStep', () => {
  it.each([
    ['PENDING', false, 0, 'admit'],
    ['PREPARING', false, 0, 'prepare-target'],
    ['PRECOPY', true, 0, 'stream'],
    ['PRECOPY', false, 0, 'reattach'],
    ['STOP_AND_COPY', true, 0, 'stream'],
    ['STOP_AND_COPY', false, 0, 'reattach'],
    ['COMMITTING', false, 0, 'commit-target'],
    ['COMMITTING', true, 0, 'commit-target'],
    ['COMMITTING', false, 17, 'complete'],
    ['COMPLETED', false, 17, 'settle'],
    ['FAILED', true, 0, 'settle'],
    ['CANCELLED', false, 0, 'settle'],
  ] as [MigrationPhase, boolean, number, Step['kind']][])('%s (streaming %s, resumed at %s) → %s', (phase, streaming, targetResumedAtMs, kind) => {
    expect(nextStep({ phase, targetResumedAtMs }, streaming).kind).toBe(kind);
  });
});

describe('afterCommitAttempt: after the commit, only the target resuming or losing its copy ends the wait', () => {
  const now = 100_000;
  const lease = 5_000;
  it.each([
    [{ kind: 'resumed', resumedAtMs: 5 }, now, { kind: 'resumed', resumedAtMs: 5 }],
    [{ kind: 'lost', detail: 'INCOMING_LOST' }, now, { kind: 'revert', silentBeforeMs: 0, detail: 'INCOMING_LOST' }],
    // Silent, but for less than twice the lease: the target may run the VM partitioned; wait.
    [{ kind: 'unreachable', detail: 'down' }, now - 2 * lease, { kind: 'retry', afterMs: COMMIT_RETRY_MS }],
    [{ kind: 'unreachable', detail: 'down' }, now - 1_000, { kind: 'retry', afterMs: COMMIT_RETRY_MS }],
    // Silent for longer: its lease guard has paused any copy it resumed; revert, checked against its last report.
    [{ kind: 'unreachable', detail: 'down' }, now - 2 * lease - 1, { kind: 'revert', silentBeforeMs: now - 2 * lease, detail: 'down' }],
    [{ kind: 'refused', detail: 'MIGRATION_STATE' }, 0, { kind: 'retry', afterMs: COMMIT_RETRY_MS }],
  ] as [CommitAttempt, number, object][])('%j with the last report at %d → %j', (attempt, lastReportMs, expected) => {
    expect(afterCommitAttempt(attempt, lastReportMs, now, lease)).toEqual(expected);
  });
});

describe('afterStream: only a verified copy is committed', () => {
  const v = { sourceDigest: 'ab', targetDigest: 'ab', error: '', errorReason: '', lastPhase: 'COMMITTING' };
  it.each([
    [{ ...v, phase: 'COMMITTING' }, { kind: 'commit' }],
    [{ ...v, phase: 'COMMITTING', targetDigest: 'cd' }, { kind: 'rollback', phase: 'FAILED', errorReason: 'DIGEST_MISMATCH' }],
    [{ ...v, phase: 'COMMITTING', sourceDigest: '', targetDigest: '' }, { kind: 'rollback', phase: 'FAILED', errorReason: 'DIGEST_MISMATCH' }],
    [{ ...v, phase: 'FAILED', error: 'did not converge', errorReason: 'NOT_CONVERGED' }, { kind: 'rollback', phase: 'FAILED', error: 'did not converge', errorReason: 'NOT_CONVERGED' }],
    [{ ...v, phase: 'CANCELLED', errorReason: '' }, { kind: 'rollback', phase: 'CANCELLED', errorReason: 'CANCELLED' }],
    [{ ...v, phase: 'NONE', lastPhase: 'PRECOPY' }, { kind: 'rollback', phase: 'FAILED', error: expect.stringMatching(/in PRECOPY/), errorReason: 'AGENT_REJECTED' }],
  ] as const)('%j → %j', (verdict, expected) => {
    expect(afterStream(verdict)).toMatchObject(expected);
  });
});
