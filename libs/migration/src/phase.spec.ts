import { describe, expect, it } from 'vitest';
import {
  MIGRATION_PHASES,
  InvalidPhaseTransitionError,
  assertTransition,
  canTransition,
  isCancellable,
  isFinal,
  isCommitted,
  isMigrationPhase,
  FINAL_PHASES,
  fromProtoPhase,
  OPEN_PHASES,
  pathTo,
  phasesLeadingTo,
  toProtoPhase,
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

  it('derives the final and open sets from the table', () => {
    expect(FINAL_PHASES).toEqual(['COMPLETED', 'FAILED', 'CANCELLED']);
    expect(OPEN_PHASES).toEqual(['PENDING', 'PREPARING', 'PRECOPY', 'STOP_AND_COPY', 'COMMITTING']);
  });

  it.each([
    ['COMMITTING', true],
    ['COMPLETED', true],
    ['STOP_AND_COPY', false],
    ['FAILED', false],
    ['CANCELLED', false],
  ] as [MigrationPhase, boolean][])('isCommitted(%s) is %s', (phase, committed) => {
    expect(isCommitted(phase)).toBe(committed);
  });

  it.each([
    ['STOP_AND_COPY', 'COMMITTING', ['COMMITTING']],
    ['PRECOPY', 'COMMITTING', ['STOP_AND_COPY', 'COMMITTING']],
    ['PENDING', 'COMMITTING', ['PREPARING', 'PRECOPY', 'STOP_AND_COPY', 'COMMITTING']],
    ['COMMITTING', 'COMMITTING', []],
    ['COMMITTING', 'CANCELLED', []],
    ['COMPLETED', 'FAILED', []],
    ['PRECOPY', 'FAILED', ['FAILED']],
  ] as [MigrationPhase, MigrationPhase, MigrationPhase[]][])('pathTo(%s, %s) is %j', (from, to, path) => {
    expect(pathTo(from, to)).toEqual(path);
    for (let i = 0, at = from; i < path.length; at = path[i]!, i++) expect(canTransition(at, path[i]!)).toBe(true);
  });

  it('lists the phases leading to one (the compare-and-set lists of the Redis scripts)', () => {
    expect(phasesLeadingTo('COMMITTING')).toEqual(['STOP_AND_COPY']);
    expect(phasesLeadingTo('PRECOPY', true)).toEqual(['PREPARING', 'PRECOPY']);
    expect(phasesLeadingTo('CANCELLED')).toEqual(['PENDING', 'PREPARING', 'PRECOPY', 'STOP_AND_COPY']);
  });

  it('maps to and from the proto enum names', () => {
    expect(toProtoPhase('STOP_AND_COPY')).toBe('MIGRATION_PHASE_STOP_AND_COPY');
    expect(fromProtoPhase('MIGRATION_PHASE_STOP_AND_COPY')).toBe('STOP_AND_COPY');
    expect(fromProtoPhase('PRECOPY')).toBe('PRECOPY');
    expect(fromProtoPhase('MIGRATION_PHASE_UNSPECIFIED')).toBeUndefined();
    expect(fromProtoPhase('MIGRATION_PHASE_toString')).toBeUndefined();
  });
});
