/**
 * What makes a migration part of a drain: its policy, its reason, and the predicate that tells a
 * drain's attempts from other migrations (DrainNode and the DrainCoordinator both use them).
 */
import type { cluster } from '@vmm/proto';
import type { MigrationRecord } from './migration-record.js';

/**
 * DrainNode's policy: the configured defaults, but a VM that dirties memory faster than it can be sent
 * is throttled (auto-converge) rather than failing NOT_CONVERGED: a drain must get every VM off.
 */
export const DRAIN_POLICY: cluster.MigrationPolicy = Object.freeze({ autoConverge: true });
/** The reason recorded on drain migrations. */
export const DRAIN_REASON = 'drain';

/** A migration made by the drain of `nodeId` that started at `drainStartedAtMs` (DrainNode's or its coordinator's). */
export function isDrainAttempt(m: Pick<MigrationRecord, 'reason' | 'sourceNodeId' | 'createdAtMs'>, nodeId: string, drainStartedAtMs: number): boolean {
  return m.reason === DRAIN_REASON && m.sourceNodeId === nodeId && m.createdAtMs >= drainStartedAtMs;
}
