import { describe, expect, it } from 'vitest';
import {
  MIGRATION_PHASES,
  InvalidPhaseTransitionError,
  assertTransition,
  canTransition,
  isCancellable,
  isFinal,
  isMigrationPhase,
  type MigrationPhase,
} from './phase.js';

const ALLOWED: [MigrationPhase, MigrationPhase[]][] = [
  ['PENDING', ['PREPARING', 'FAILED', 'CANCELLED']],
  ['PREPARING', ['PRECOPY', 'FAILED', 'CANCELLED']],
  ['PRECOPY', ['STOP_AND_COPY', 'FAILED', 'CANCELLED']],
  ['STOP_AND_COPY', ['COMMITTING', 'FAILED', 'CANCELLED']],
  ['COMMITTING', ['COMPLETED', 'FAILED']],
  ['COMPLETED', []],
  ['FAILED', []],
  ['CANCELLED', []],
];

describe('migration phase table', () => {
  it.each(ALLOWED)('%s allows exactly %j', (from, targets) => {
    for (const to of MIGRATION_PHASES) {
      expect(canTransition(from, to)).toBe(targets.includes(to));
    }
    expect(isFinal(from)).toBe(targets.length === 0);
    expect(isCancellable(from)).toBe(targets.includes('CANCELLED'));
  });

  it('walks the happy path', () => {
    let p: MigrationPhase = 'PENDING';
    for (const next of ['PREPARING', 'PRECOPY', 'STOP_AND_COPY', 'COMMITTING', 'COMPLETED'] as const) {
      p = assertTransition(p, next);
    }
    expect(p).toBe('COMPLETED');
  });

  it.each([
    ['COMMITTING', 'CANCELLED'],
    ['COMPLETED', 'FAILED'],
    ['PRECOPY', 'PREPARING'],
    ['PENDING', 'COMPLETED'],
  ] as [MigrationPhase, MigrationPhase][])('refuses %s -> %s with a stable code', (from, to) => {
    try {
      assertTransition(from, to);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(InvalidPhaseTransitionError);
      expect((e as InvalidPhaseTransitionError).code).toBe('INVALID_PHASE_TRANSITION');
      expect((e as InvalidPhaseTransitionError).from).toBe(from);
    }
  });

  it('recognises phase strings', () => {
    expect(isMigrationPhase('PRECOPY')).toBe(true);
    expect(isMigrationPhase('toString')).toBe(false);
    expect(isMigrationPhase(3)).toBe(false);
  });
});
