import type { CheckedPolicyUpdate, MigrationPolicy } from '@vmm/migration';

export interface MigrationCapability {
  capability: string;
  state: boolean;
}

/**
 * max-bandwidth for "unlimited" (policy 0): QEMU has no unlimited value, and its default is 128 MiB/s.
 * 10 GiB/s is above what loopback moves here (3.4 GB/s).
 */
export const UNLIMITED_BANDWIDTH_BYTES_PER_SEC = 10 * 1024 ** 3;

/**
 * Capabilities for migrate-set-capabilities. `pause-before-switchover` on both ends: the source stops
 * in status `pre-switchover` and waits for migrate-continue, so that the caller gates the switch-over.
 * xbzrle and multifd change the stream, so the target needs them as the source has them; auto-converge
 * only matters on the source (it throttles the source's vCPUs) but is harmless on the target.
 */
export function migrationCapabilities(policy: MigrationPolicy): MigrationCapability[] {
  return [
    { capability: 'pause-before-switchover', state: true },
    { capability: 'events', state: true },
    { capability: 'auto-converge', state: policy.autoConverge },
    { capability: 'xbzrle', state: policy.xbzrle },
    // multifd: policy.multifdChannels > 1 (1 = QEMU's single stream).
    { capability: 'multifd', state: policy.multifdChannels > 1 },
  ];
}

/**
 * Parameters for migrate-set-parameters (source). Units: downtime-limit ms, max-bandwidth bytes/s,
 * xbzrle-cache-size bytes (QEMU refuses a cache as large as guest RAM: it is kept below half of it).
 */
export function sourceMigrationParameters(policy: MigrationPolicy, memoryBytes: number): Record<string, number> {
  const params: Record<string, number> = {
    'downtime-limit': policy.downtimeLimitMs,
    'max-bandwidth':
      policy.maxBandwidthMibPerSec > 0 ? Math.round(policy.maxBandwidthMibPerSec * 1024 * 1024) : UNLIMITED_BANDWIDTH_BYTES_PER_SEC,
  };
  if (policy.xbzrle) params['xbzrle-cache-size'] = Math.min(policy.xbzrleCacheMib * 1024 * 1024, Math.floor(memoryBytes / 2));
  if (policy.multifdChannels > 1) params['multifd-channels'] = policy.multifdChannels;
  return params;
}

/**
 * The largest downtime-limit QEMU accepts, in ms (MAX_MIGRATE_DOWNTIME_SECONDS = 2000 s in
 * migration/options.c). UpdateMigration's force_complete sets it: QEMU has no "switch over now" for
 * pre-copy, but at its next iteration any expected downtime fits this limit, so it enters the
 * switch-over (pre-switchover here, where the agent's gate and its switch-over timeout still apply).
 */
export const QEMU_MAX_DOWNTIME_LIMIT_MS = 2_000_000;

/**
 * migrate-set-parameters for a migration in flight (virsh migrate-setmaxdowntime / migrate-setspeed):
 * only the fields the update sets; force_complete as QEMU_MAX_DOWNTIME_LIMIT_MS (over a new limit).
 */
export function updateMigrationParameters(update: CheckedPolicyUpdate): Record<string, number> {
  const params: Record<string, number> = {};
  if (update.downtimeLimitMs !== undefined) params['downtime-limit'] = update.downtimeLimitMs;
  if (update.forceComplete) params['downtime-limit'] = QEMU_MAX_DOWNTIME_LIMIT_MS;
  if (update.maxBandwidthMibPerSec !== undefined) {
    params['max-bandwidth'] = update.maxBandwidthMibPerSec > 0 ? Math.round(update.maxBandwidthMibPerSec * 1024 * 1024) : UNLIMITED_BANDWIDTH_BYTES_PER_SEC;
  }
  return params;
}

/** Parameters the target needs to read the stream the source sends. */
export function targetMigrationParameters(policy: MigrationPolicy): Record<string, number> {
  return policy.multifdChannels > 1 ? { 'multifd-channels': policy.multifdChannels } : {};
}

/**
 * The migration URI. Plain TCP for now; TLS (QEMU's tls-creds-x509 object named by the `tls-creds`
 * parameter on both ends) plugs in here and in the two parameter functions above.
 */
export function migrationUri(host: string, port: number): string {
  return host.includes(':') ? `tcp:[${host}]:${port}` : `tcp:${host}:${port}`;
}
