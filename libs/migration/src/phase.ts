/**
 * The phase model of one migration, the one owner of it: the phases, the allowed transitions, the
 * final set, the point of no return and the mapping to cluster.v1's MigrationPhase enum names. Shared
 * by the engine (libs/migration), the controller (its Redis scripts receive their allowed-from lists
 * from here) and the CLI. Pure: no Node imports, no side effects.
 *
 * PENDING → PREPARING → PRECOPY → STOP_AND_COPY → COMMITTING → COMPLETED
 * Any phase before COMMITTING → FAILED or CANCELLED: the VM runs on its source at its epoch N.
 * COMMITTING → COMPLETED: the target resumed the VM at N+1, the source's copy is released.
 * COMMITTING → FAILED: reverted, because the target lost its copy before it resumed it: the source's
 *   verified paused copy runs on under N+2 (or, with the source lost too, the VM is FAILED).
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
  /** Committed: the VM belongs to the target at N+1 (the point of no return); the target is told to resume it. */
  | 'COMMITTING'
  /** Target VM runs, source copy destroyed. Final. */
  | 'COMPLETED'
  /** The VM did not move: it runs on its source (at N before the commit, N+2 after a revert), or is FAILED with its host. Final. */
  | 'FAILED'
  /** Cancelled by a user or the system before the commit: same rollback as FAILED. Final. */
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
  // Cancel is refused once committed: the verified copy is already the VM. FAILED only by a revert.
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

/** The final phases, in table order. */
export const FINAL_PHASES: readonly MigrationPhase[] = MIGRATION_PHASES.filter(isFinal);

/** Phases not final yet: the ones the controller's reconciler must drive to an end. */
export const OPEN_PHASES: readonly MigrationPhase[] = MIGRATION_PHASES.filter((p) => !isFinal(p));

/** True while a cancel still rolls back cleanly (every phase before COMMITTING that is not final). */
export function isCancellable(phase: MigrationPhase): boolean {
  return ALLOWED[phase].includes('CANCELLED');
}

/**
 * Past the point of no return and not reverted: the VM belongs to the target's epoch. Before it
 * (and after a revert) the source's copy is the VM.
 */
export function isCommitted(phase: MigrationPhase): boolean {
  return phase === 'COMMITTING' || phase === 'COMPLETED';
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

/** Phases from which `to` is reached in one step (and `to` itself with `includeSelf`). */
export function phasesLeadingTo(to: MigrationPhase, includeSelf = false): MigrationPhase[] {
  return MIGRATION_PHASES.filter((p) => canTransition(p, to) || (includeSelf && p === to));
}

/**
 * The open phases the path to `to` passes through from `from`, `to` last: [] when `from` is `to` or
 * `to` is unreachable. The commit uses it when the source's last progress messages came together
 * (PRECOPY → STOP_AND_COPY → COMMITTING written in one step, each step allowed by the table).
 */
export function pathTo(from: MigrationPhase, to: MigrationPhase): MigrationPhase[] {
  if (from === to) return [];
  const previous = new Map<MigrationPhase, MigrationPhase>();
  const queue: MigrationPhase[] = [from];
  while (queue.length > 0) {
    const at = queue.shift()!;
    for (const next of ALLOWED[at]) {
      if (previous.has(next) || next === from) continue;
      previous.set(next, at);
      if (next === to) {
        const path: MigrationPhase[] = [to];
        for (let p = at; p !== from; p = previous.get(p)!) path.unshift(p);
        return path;
      }
      if (!isFinal(next)) queue.push(next);
    }
  }
  return [];
}

/** cluster.v1.MigrationPhase enum value names (the proto style guide's prefix). */
export type ProtoPhaseName = `MIGRATION_PHASE_${MigrationPhase}`;

export function toProtoPhase(phase: MigrationPhase): ProtoPhaseName {
  return `MIGRATION_PHASE_${phase}`;
}

/** The phase of a proto enum name (or of a bare phase name); undefined for UNSPECIFIED and unknown names. */
export function fromProtoPhase(name: string): MigrationPhase | undefined {
  const phase = String(name).replace(/^MIGRATION_PHASE_/, '');
  return isMigrationPhase(phase) ? phase : undefined;
}
