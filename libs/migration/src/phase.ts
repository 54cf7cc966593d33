/**
 * The phase model of one migration, shared by the engine (libs/migration) and the controller.
 * Pure: no Node imports, no side effects. The allowed transitions live in one table below.
 *
 * PENDING → PREPARING → PRECOPY → STOP_AND_COPY → COMMITTING → COMPLETED
 * Any phase before COMMITTING → FAILED or CANCELLED.
 * COMMITTING → COMPLETED or FAILED (a commit that fails before the cluster state is written rolls back).
 */
export type MigrationPhase =
  /** Accepted by the controller, waiting for admission (concurrency limits, a target node). */
  | 'PENDING'
  /** Target chosen; the target agent creates the incoming (paused, empty) VM and opens its data listener. */
  | 'PREPARING'
  /** Source VM keeps running while memory is copied in rounds, each round resending pages dirtied during the last. */
  | 'PRECOPY'
  /** Source VM paused: the last dirty pages and the device state are sent, then both digests compared. */
  | 'STOP_AND_COPY'
  /** Target holds a verified copy; ownership of the VM moves to the target node (the point of no return). */
  | 'COMMITTING'
  /** Target VM runs, source VM destroyed. Final. */
  | 'COMPLETED'
  /** Something broke before commit: the source VM runs on, the target copy is discarded. Final. */
  | 'FAILED'
  /** Cancelled by a user or the system before commit: same rollback as FAILED. Final. */
  | 'CANCELLED';

export const MIGRATION_PHASES: readonly MigrationPhase[] = [
  'PENDING',
  'PREPARING',
  'PRECOPY',
  'STOP_AND_COPY',
  'COMMITTING',
  'COMPLETED',
  'FAILED',
  'CANCELLED',
];

/** The only place where transitions are decided. A final phase has no way out. */
const ALLOWED: Readonly<Record<MigrationPhase, readonly MigrationPhase[]>> = {
  PENDING: ['PREPARING', 'FAILED', 'CANCELLED'],
  PREPARING: ['PRECOPY', 'FAILED', 'CANCELLED'],
  PRECOPY: ['STOP_AND_COPY', 'FAILED', 'CANCELLED'],
  STOP_AND_COPY: ['COMMITTING', 'FAILED', 'CANCELLED'],
  // Cancel is refused once committing: the verified copy is already becoming the VM.
  COMMITTING: ['COMPLETED', 'FAILED'],
  COMPLETED: [],
  FAILED: [],
  CANCELLED: [],
};

/** Thrown by assertTransition() when `to` is not reachable from `from` in one step. */
export class InvalidPhaseTransitionError extends Error {
  readonly code = 'INVALID_PHASE_TRANSITION';
  constructor(
    readonly from: MigrationPhase,
    readonly to: MigrationPhase,
  ) {
    super(`migration phase cannot change from ${from} to ${to}`);
    this.name = 'InvalidPhaseTransitionError';
  }
}

export function isMigrationPhase(value: unknown): value is MigrationPhase {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ALLOWED, value);
}

/** True for COMPLETED, FAILED and CANCELLED. */
export function isFinal(phase: MigrationPhase): boolean {
  return ALLOWED[phase].length === 0;
}

/** True while a cancel still rolls back cleanly (every phase before COMMITTING that is not final). */
export function isCancellable(phase: MigrationPhase): boolean {
  return ALLOWED[phase].includes('CANCELLED');
}

export function allowedTransitions(from: MigrationPhase): readonly MigrationPhase[] {
  return ALLOWED[from];
}

export function canTransition(from: MigrationPhase, to: MigrationPhase): boolean {
  return ALLOWED[from].includes(to);
}

/** Returns `to` when allowed, so callers can write `phase = assertTransition(phase, 'PRECOPY')`. */
export function assertTransition(from: MigrationPhase, to: MigrationPhase): MigrationPhase {
  if (!canTransition(from, to)) throw new InvalidPhaseTransitionError(from, to);
  return to;
}
