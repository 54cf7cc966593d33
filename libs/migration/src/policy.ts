/**
 * Migration policy: the knobs of one migration, named like cluster.v1 MigrationPolicy (camelCase).
 * Pure (no Node imports) so the controller can resolve and validate policies too.
 */
import { InvalidPolicyError } from './errors.js';

export interface MigrationPolicy {
  /** Switch over once the expected stop-and-copy time is below this. */
  downtimeLimitMs: number;
  /** Pacing of the data connection in MiB/s; 0 = unlimited. */
  maxBandwidthMibPerSec: number;
  /** Pre-copy rounds allowed before the migration fails as not converging. */
  maxRounds: number;
  /** Throttle the source vCPU when the guest dirties memory faster than it is sent (QEMU auto-converge). */
  autoConverge: boolean;
  /** Send changed pages as XOR deltas against the last sent version (QEMU XBZRLE). */
  xbzrle: boolean;
  /** Whole migration deadline in ms, from start to ready-to-commit. */
  completionTimeoutMs: number;
  /** XBZRLE page cache size in MiB. */
  xbzrleCacheMib: number;
}

/** Anything the caller did not set; 0 for a numeric field means "default" (proto3 semantics), except bandwidth. */
export type PartialMigrationPolicy = Partial<MigrationPolicy>;

const GIB = 1024 * 1024 * 1024;
/** KubeVirt completionTimeoutPerGiB. */
export const COMPLETION_TIMEOUT_PER_GIB_MS = 150_000;
/** Small VMs still get a deadline that survives a slow start. */
export const MIN_COMPLETION_TIMEOUT_MS = 60_000;

export const DEFAULT_POLICY: Readonly<Omit<MigrationPolicy, 'completionTimeoutMs'>> = Object.freeze({
  downtimeLimitMs: 300, // QEMU downtime-limit
  maxBandwidthMibPerSec: 0,
  maxRounds: 30, // Xen stops after 29 rounds
  autoConverge: false,
  xbzrle: false,
  xbzrleCacheMib: 64, // QEMU xbzrle-cache-size
});

/** 150 s per GiB of guest memory (KubeVirt), at least MIN_COMPLETION_TIMEOUT_MS. */
export function defaultCompletionTimeoutMs(vmBytes: number): number {
  return Math.max(MIN_COMPLETION_TIMEOUT_MS, Math.ceil((vmBytes / GIB) * COMPLETION_TIMEOUT_PER_GIB_MS));
}

function check(field: keyof MigrationPolicy, value: number, integer: boolean): void {
  if (!Number.isFinite(value) || value < 0 || (integer && !Number.isInteger(value))) {
    throw new InvalidPolicyError(field, value);
  }
}

/**
 * Fills unset fields with defaults and validates the rest.
 * @param vmBytes guest memory size in bytes, used to scale the completion timeout.
 * @throws InvalidPolicyError for a negative, fractional (where integer) or non-finite value.
 */
export function resolvePolicy(partial: PartialMigrationPolicy | undefined, vmBytes: number): MigrationPolicy {
  const p = partial ?? {};
  const pick = (field: 'downtimeLimitMs' | 'maxRounds' | 'completionTimeoutMs' | 'xbzrleCacheMib', fallback: number) => {
    const v = p[field];
    if (v === undefined || v === null) return fallback;
    check(field, v, true);
    return v === 0 ? fallback : v;
  };
  const bandwidth = p.maxBandwidthMibPerSec ?? DEFAULT_POLICY.maxBandwidthMibPerSec;
  check('maxBandwidthMibPerSec', bandwidth, false);
  return {
    downtimeLimitMs: pick('downtimeLimitMs', DEFAULT_POLICY.downtimeLimitMs),
    maxBandwidthMibPerSec: bandwidth,
    maxRounds: pick('maxRounds', DEFAULT_POLICY.maxRounds),
    autoConverge: p.autoConverge ?? DEFAULT_POLICY.autoConverge,
    xbzrle: p.xbzrle ?? DEFAULT_POLICY.xbzrle,
    completionTimeoutMs: pick('completionTimeoutMs', defaultCompletionTimeoutMs(vmBytes)),
    xbzrleCacheMib: pick('xbzrleCacheMib', DEFAULT_POLICY.xbzrleCacheMib),
  };
}

/** Bytes per second, or Infinity when unlimited. */
export function bandwidthBytesPerSec(policy: MigrationPolicy): number {
  return policy.maxBandwidthMibPerSec > 0 ? policy.maxBandwidthMibPerSec * 1024 * 1024 : Infinity;
}
