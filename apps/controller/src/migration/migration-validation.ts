/** MigrateVm request validation (docs/api.md): pure checks of the policy fields. */
import type { cluster } from '@vmm/proto';
import { InvalidArgumentError } from '../errors.js';
import type { MigrationRecord } from './migration-record.js';

export const DEFAULT_POLICY: cluster.MigrationPolicy = {
  downtimeLimitMs: 300,
  maxBandwidthMibPerSec: 0,
  maxRounds: 30,
  autoConverge: false,
  xbzrle: false,
  completionTimeoutMs: 120_000,
  xbzrleCacheMib: 0,
};

/**
 * DrainNode's policy: like the default, but a VM that dirties memory faster than it can be sent is
 * throttled (auto-converge) rather than failing NOT_CONVERGED: a drain must get every VM off.
 */
export const DRAIN_POLICY: cluster.MigrationPolicy = { ...DEFAULT_POLICY, autoConverge: true };
/** The reason recorded on drain migrations. */
export const DRAIN_REASON = 'drain';

/** A migration made by the drain of `nodeId` that started at `drainStartedAtMs` (DrainNode's or its coordinator's). */
export function isDrainAttempt(m: Pick<MigrationRecord, 'reason' | 'sourceNodeId' | 'createdAtMs'>, nodeId: string, drainStartedAtMs: number): boolean {
  return m.reason === DRAIN_REASON && m.sourceNodeId === nodeId && m.createdAtMs >= drainStartedAtMs;
}

/** Fills unset (0) fields with defaults; negative or non-finite values are INVALID_ARGUMENT. */
export function validatePolicy(policy: Partial<cluster.MigrationPolicy> | null | undefined): cluster.MigrationPolicy {
  const p = policy ?? {};
  const nonNegative = (field: string, value: number | undefined, whole: boolean): number => {
    const n = Number(value ?? 0);
    if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`policy.${field}`, 'must be ≥ 0');
    if (whole && !Number.isInteger(n)) throw new InvalidArgumentError(`policy.${field}`, 'must be a whole number');
    return n;
  };
  const downtimeLimitMs = nonNegative('downtime_limit_ms', p.downtimeLimitMs, true);
  const maxBandwidthMibPerSec = nonNegative('max_bandwidth_mib_per_sec', p.maxBandwidthMibPerSec, false);
  const maxRounds = nonNegative('max_rounds', p.maxRounds, true);
  const completionTimeoutMs = nonNegative('completion_timeout_ms', p.completionTimeoutMs, true);
  const xbzrleCacheMib = nonNegative('xbzrle_cache_mib', p.xbzrleCacheMib, true);
  return {
    downtimeLimitMs: downtimeLimitMs || DEFAULT_POLICY.downtimeLimitMs,
    maxBandwidthMibPerSec,
    maxRounds: maxRounds || DEFAULT_POLICY.maxRounds,
    autoConverge: Boolean(p.autoConverge),
    xbzrle: Boolean(p.xbzrle),
    completionTimeoutMs: completionTimeoutMs || DEFAULT_POLICY.completionTimeoutMs,
    xbzrleCacheMib,
  };
}
