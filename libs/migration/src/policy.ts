/**
 * Migration policy: the knobs of one migration, named like cluster.v1 MigrationPolicy (camelCase).
 * The one owner of their defaults, their ranges and their validation: the controller resolves a
 * request's policy here (with the defaults it was configured with), and the engine resolves what it is
 * handed here again. Pure (no Node imports), so that the controller may import it.
 *
 * A field that is unset (undefined, or null from proto-loader: proto3 `optional` absent) takes its
 * default. A field that is set is checked against its range and kept as it is: an explicit 0 is never
 * "use the default" (docs/api.md, version 2). 0 is a value of its own where the range says so (bandwidth 0
 * = unlimited; an XBZRLE cache of 0 with xbzrle off) and refused everywhere else.
 */
import { InvalidPolicyError } from './errors.js';

export interface MigrationPolicy {
  /** Switch over once the expected stop-and-copy time is below this, in ms. */
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
  /** Parallel connections of the stream (QEMU multifd); 1 = one. The emulator's engine always uses one. */
  multifdChannels: number;
}

/** A policy as a request carries it: any field may be unset (undefined, or null from proto-loader). */
export type PartialMigrationPolicy = { [K in keyof MigrationPolicy]?: MigrationPolicy[K] | null };

/** cluster.v1 field names, for errors that name the field of the caller's request. */
export const POLICY_PROTO_FIELDS = {
  downtimeLimitMs: 'downtime_limit_ms',
  maxBandwidthMibPerSec: 'max_bandwidth_mib_per_sec',
  maxRounds: 'max_rounds',
  autoConverge: 'auto_converge',
  xbzrle: 'xbzrle',
  completionTimeoutMs: 'completion_timeout_ms',
  xbzrleCacheMib: 'xbzrle_cache_mib',
  multifdChannels: 'multifd_channels',
} as const satisfies Record<keyof MigrationPolicy, string>;

/** Every knob of a policy (the keys of POLICY_PROTO_FIELDS: the `satisfies` above keeps them complete). */
export const POLICY_KNOBS = Object.keys(POLICY_PROTO_FIELDS) as readonly (keyof MigrationPolicy)[];

/**
 * The knobs that are set in `source` (any object with the policy's field names, such as a cluster.v1
 * MigrationPolicy; null counts as unset), copied into a fresh object.
 */
export function pickPolicy(source: PartialMigrationPolicy | null | undefined): PartialMigrationPolicy {
  const picked: Record<string, unknown> = {};
  if (source) {
    for (const knob of POLICY_KNOBS) {
      const value = source[knob];
      if (value !== undefined && value !== null) picked[knob] = value;
    }
  }
  return picked as PartialMigrationPolicy;
}

/** A numeric knob's domain. */
export interface PolicyRange {
  readonly min: number;
  readonly max: number;
  readonly integer: boolean;
  /** When set, an explicit 0 is allowed below `min` and means this. */
  readonly zeroMeans?: string;
}

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
/** Node timers fire at once above 2^31-1 ms; a day is far below that and far above any real migration. */
export const MAX_COMPLETION_TIMEOUT_MS = 24 * 60 * 60 * 1000;

/**
 * The ranges of the numeric knobs. Why these bounds: a pause of more than a minute is not a live
 * migration; a bandwidth cap below 1 MiB/s would leave a 1 MiB batch waiting on the token bucket long
 * enough to look like an idle connection; a round takes at least a dirty-log sync and a round trip, so
 * 10,000 of them is hours. The XBZRLE cache is further bounded by the VM's size (maxXbzrleCacheMib).
 */
export const POLICY_RANGES = {
  downtimeLimitMs: { min: 1, max: 60_000, integer: true },
  maxBandwidthMibPerSec: { min: 1, max: 1024 * 1024, integer: false, zeroMeans: 'unlimited' },
  maxRounds: { min: 1, max: 10_000, integer: true },
  completionTimeoutMs: { min: 1000, max: MAX_COMPLETION_TIMEOUT_MS, integer: true },
  xbzrleCacheMib: { min: 1, max: 1024 * 1024, integer: true, zeroMeans: 'no cache (xbzrle off only)' },
  multifdChannels: { min: 1, max: 16, integer: true },
} as const satisfies Record<string, PolicyRange>;

/** KubeVirt completionTimeoutPerGiB. */
export const COMPLETION_TIMEOUT_PER_GIB_MS = 150_000;
/** Small VMs still get a deadline that survives a slow start. */
export const MIN_COMPLETION_TIMEOUT_MS = 60_000;

/**
 * What a deployment may configure as defaults (the controller's MIGRATION_DEFAULT_* variables): every
 * knob but the completion timeout, whose default scales with the VM's memory.
 */
export interface PolicyDefaults extends Omit<MigrationPolicy, 'completionTimeoutMs'> {
  /** The default completion timeout per GiB of guest memory, in ms (at least MIN_COMPLETION_TIMEOUT_MS per VM). */
  completionTimeoutPerGibMs: number;
}

export const DEFAULT_POLICY: Readonly<PolicyDefaults> = Object.freeze({
  downtimeLimitMs: 300, // QEMU downtime-limit
  maxBandwidthMibPerSec: 0,
  maxRounds: 30, // Xen stops after 29 rounds
  autoConverge: false,
  xbzrle: false,
  xbzrleCacheMib: 64, // QEMU xbzrle-cache-size
  multifdChannels: 1,
  completionTimeoutPerGibMs: COMPLETION_TIMEOUT_PER_GIB_MS,
});

/** Range of PolicyDefaults.completionTimeoutPerGibMs. */
export const COMPLETION_TIMEOUT_PER_GIB_RANGE: PolicyRange = { min: 1000, max: MAX_COMPLETION_TIMEOUT_MS, integer: true };

/** `perGibMs` per GiB of guest memory, at least MIN_COMPLETION_TIMEOUT_MS, at most MAX_COMPLETION_TIMEOUT_MS. */
export function defaultCompletionTimeoutMs(vmBytes: number, perGibMs: number = COMPLETION_TIMEOUT_PER_GIB_MS): number {
  const scaled = Math.ceil((Math.max(0, vmBytes) / GIB) * perGibMs);
  return Math.min(MAX_COMPLETION_TIMEOUT_MS, Math.max(MIN_COMPLETION_TIMEOUT_MS, scaled));
}

/** The largest XBZRLE cache for a VM: a quarter of its memory, at least 1 MiB. */
export function maxXbzrleCacheMib(vmBytes: number): number {
  return Math.max(1, Math.floor(Math.max(0, vmBytes) / MIB / 4));
}

/** @throws InvalidPolicyError unless `value` is a number in `range` */
export function checkInRange(field: string, value: unknown, range: PolicyRange, protoField: string = field): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new InvalidPolicyError(field, value, 'must be a finite number', protoField);
  if (range.integer && !Number.isInteger(value)) throw new InvalidPolicyError(field, value, 'must be a whole number', protoField);
  if (value === 0 && range.zeroMeans !== undefined) return 0;
  if (value < range.min || value > range.max) {
    const zero = range.zeroMeans === undefined ? '' : `0 (${range.zeroMeans}) or `;
    throw new InvalidPolicyError(field, value, `must be ${zero}in ${range.min}..${range.max}`, protoField);
  }
  return value;
}

function checkBoolean(field: keyof MigrationPolicy, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new InvalidPolicyError(field, value, 'must be true or false', POLICY_PROTO_FIELDS[field]);
  return value;
}

const isSet = <T>(value: T | null | undefined): value is T => value !== undefined && value !== null;

function pickNumber(p: PartialMigrationPolicy, field: keyof typeof POLICY_RANGES, fallback: number): number {
  const value = p[field];
  return isSet(value) ? checkInRange(field, value, POLICY_RANGES[field], POLICY_PROTO_FIELDS[field]) : fallback;
}

/**
 * Checks configured defaults against the same ranges as a request's fields (the XBZRLE cache against
 * its absolute range: resolvePolicy caps it per VM).
 * @throws InvalidPolicyError naming the PolicyDefaults field
 */
export function validatePolicyDefaults(d: PolicyDefaults): PolicyDefaults {
  for (const field of ['downtimeLimitMs', 'maxBandwidthMibPerSec', 'maxRounds', 'multifdChannels'] as const) checkInRange(field, d[field], POLICY_RANGES[field]);
  checkInRange('xbzrleCacheMib', d.xbzrleCacheMib, { min: POLICY_RANGES.xbzrleCacheMib.min, max: POLICY_RANGES.xbzrleCacheMib.max, integer: true });
  checkInRange('completionTimeoutPerGibMs', d.completionTimeoutPerGibMs, COMPLETION_TIMEOUT_PER_GIB_RANGE);
  for (const field of ['autoConverge', 'xbzrle'] as const) if (typeof d[field] !== 'boolean') throw new InvalidPolicyError(field, d[field], 'must be true or false');
  if (d.xbzrle && d.multifdChannels > 1) throw new InvalidPolicyError('multifdChannels', d.multifdChannels, 'must be 1 with xbzrle on');
  return { ...d };
}

/**
 * Fills unset fields with `defaults` and checks the set ones against their ranges.
 * @param vmBytes guest memory size in bytes: scales the completion timeout and bounds the XBZRLE cache.
 * @param defaults the deployment's defaults (checked with validatePolicyDefaults when configured).
 * @throws InvalidPolicyError naming the first bad field (its cluster.v1 name in `protoField`)
 */
export function resolvePolicy(
  partial: PartialMigrationPolicy | null | undefined,
  vmBytes: number,
  defaults: Readonly<PolicyDefaults> = DEFAULT_POLICY,
): MigrationPolicy {
  const p = partial ?? {};
  const xbzrle = isSet(p.xbzrle) ? checkBoolean('xbzrle', p.xbzrle) : defaults.xbzrle;
  const multifdChannels = pickNumber(p, 'multifdChannels', defaults.multifdChannels);
  // QEMU's multifd channels carry whole pages only: with them XBZRLE would be asked for and not done.
  if (xbzrle && multifdChannels > 1) {
    throw new InvalidPolicyError('multifdChannels', multifdChannels, 'must be 1 with xbzrle on (XBZRLE deltas go over a single stream)', POLICY_PROTO_FIELDS.multifdChannels);
  }
  return {
    downtimeLimitMs: pickNumber(p, 'downtimeLimitMs', defaults.downtimeLimitMs),
    maxBandwidthMibPerSec: pickNumber(p, 'maxBandwidthMibPerSec', defaults.maxBandwidthMibPerSec),
    maxRounds: pickNumber(p, 'maxRounds', defaults.maxRounds),
    autoConverge: isSet(p.autoConverge) ? checkBoolean('autoConverge', p.autoConverge) : defaults.autoConverge,
    xbzrle,
    completionTimeoutMs: pickNumber(p, 'completionTimeoutMs', defaultCompletionTimeoutMs(vmBytes, defaults.completionTimeoutPerGibMs)),
    xbzrleCacheMib: resolveXbzrleCacheMib(p.xbzrleCacheMib, xbzrle, vmBytes, defaults.xbzrleCacheMib),
    multifdChannels,
  };
}

/** Explicit: 0..a quarter of the VM, and ≥ 1 with xbzrle on. Unset: the default, capped at a quarter of the VM. */
function resolveXbzrleCacheMib(value: number | null | undefined, xbzrle: boolean, vmBytes: number, fallback: number): number {
  const max = maxXbzrleCacheMib(vmBytes);
  if (!isSet(value)) return Math.min(fallback, max);
  const field = 'xbzrleCacheMib';
  const protoField = POLICY_PROTO_FIELDS.xbzrleCacheMib;
  const mib = checkInRange(field, value, POLICY_RANGES.xbzrleCacheMib, protoField);
  if (mib === 0 && xbzrle) throw new InvalidPolicyError(field, value, 'must be at least 1 MiB when xbzrle is on', protoField);
  if (mib > max) throw new InvalidPolicyError(field, value, `must be at most a quarter of the VM's memory (${max} MiB)`, protoField);
  return mib;
}

/**
 * A change to a migration in flight (cluster.v1 UpdateMigration, virsh migrate-setmaxdowntime and
 * migrate-setspeed, Nova's force-complete): unset fields (undefined or null) keep their value.
 */
export interface PolicyUpdate {
  downtimeLimitMs?: number | null;
  maxBandwidthMibPerSec?: number | null;
  /** Switch over at the next round's decision whatever the predicted downtime. */
  forceComplete?: boolean | null;
}

/** A PolicyUpdate whose set fields are in range. */
export interface CheckedPolicyUpdate {
  downtimeLimitMs?: number;
  maxBandwidthMibPerSec?: number;
  forceComplete: boolean;
}

/** UpdateMigration's field names (top level of its request, not under `policy.`). */
export const POLICY_UPDATE_PROTO_FIELDS = {
  downtimeLimitMs: 'downtime_limit_ms',
  maxBandwidthMibPerSec: 'max_bandwidth_mib_per_sec',
  forceComplete: 'force_complete',
} as const satisfies Record<keyof PolicyUpdate, string>;

/**
 * Checks an update against the same ranges as MigrateVm's policy (POLICY_RANGES).
 * @throws InvalidPolicyError naming the first bad field (its UpdateMigrationRequest name in `protoField`)
 */
export function checkPolicyUpdate(update: PolicyUpdate): CheckedPolicyUpdate {
  const checked: CheckedPolicyUpdate = { forceComplete: false };
  for (const field of ['downtimeLimitMs', 'maxBandwidthMibPerSec'] as const) {
    const value = update[field];
    if (isSet(value)) checked[field] = checkInRange(field, value, POLICY_RANGES[field], POLICY_UPDATE_PROTO_FIELDS[field]);
  }
  const force = update.forceComplete;
  if (isSet(force)) {
    if (typeof force !== 'boolean') throw new InvalidPolicyError('forceComplete', force, 'must be true or false', POLICY_UPDATE_PROTO_FIELDS.forceComplete);
    checked.forceComplete = force;
  }
  return checked;
}

/** True when the update changes nothing (no field set, force_complete false). */
export function isEmptyPolicyUpdate(u: CheckedPolicyUpdate): boolean {
  return u.downtimeLimitMs === undefined && u.maxBandwidthMibPerSec === undefined && !u.forceComplete;
}

/** `policy` with the update's limits applied (force_complete is no policy field: it is not recorded here). */
export function applyPolicyUpdate<P extends PartialMigrationPolicy | MigrationPolicy>(policy: P, update: CheckedPolicyUpdate): P {
  const next = { ...policy };
  if (update.downtimeLimitMs !== undefined) next.downtimeLimitMs = update.downtimeLimitMs;
  if (update.maxBandwidthMibPerSec !== undefined) next.maxBandwidthMibPerSec = update.maxBandwidthMibPerSec;
  return next;
}

/** Bytes per second, or Infinity when unlimited. */
export function bandwidthBytesPerSec(policy: Pick<MigrationPolicy, 'maxBandwidthMibPerSec'>): number {
  return policy.maxBandwidthMibPerSec > 0 ? policy.maxBandwidthMibPerSec * MIB : Infinity;
}

/** Beyond the completion timeout: preparing the target, the paused round and the verification. */
export const STREAM_DEADLINE_MARGIN_MS = 60_000;

/**
 * How long the controller may wait for a source's whole transfer (StartOutgoing): the policy's
 * completion timeout plus `marginMs`. A stored policy without a usable timeout (a record written before
 * policies were resolved, which held 0) gets the default for the VM's size, never a fixed figure.
 */
export function streamDeadlineMs(
  policy: Pick<PartialMigrationPolicy, 'completionTimeoutMs'> | null | undefined,
  vmBytes: number,
  marginMs: number = STREAM_DEADLINE_MARGIN_MS,
): number {
  const stored = policy?.completionTimeoutMs;
  const timeoutMs = isSet(stored) && stored > 0 ? Math.min(stored, MAX_COMPLETION_TIMEOUT_MS) : defaultCompletionTimeoutMs(vmBytes);
  return timeoutMs + marginMs;
}
