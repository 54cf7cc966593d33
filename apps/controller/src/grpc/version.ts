/** GetVersion's answer: the controller's release, the API's package and what this build serves. */
import { createRequire } from 'node:module';
import type { cluster } from '@vmm/proto';
import type { ControllerConfig } from '../config.js';

/** apps/controller/package.json's version (the same relative path from src/grpc and dist/grpc). */
export const CONTROLLER_VERSION: string = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

/**
 * The docs/api.md (version 2) features this build serves, by their names there. A client checks for
 * a name before relying on it; add one here when it lands.
 */
export const API_FEATURES = [
  'any_image',
  'get_version',
  'reflection',
  'reported_vms',
  'request_id',
  'restart_policy',
  'rich_errors',
  'get_vm_by_name',
  'list_filters',
  'list_nodes_pages',
  'list_images',
  'node_labels',
  'node_selector',
  'migration_retention',
  'phase_transitions',
  'vm_migration_id',
  'vm_lifecycle',
  'update_migration',
  'controller_defaults',
  'watch_events',
  'multifd_channels',
] as const;

export function versionInfo(config?: Pick<ControllerConfig, 'migrationPolicyDefaults' | 'migrationRetentionMs' | 'watchHistory'>): cluster.GetVersionResponse {
  const d = config?.migrationPolicyDefaults;
  return {
    version: CONTROLLER_VERSION,
    apiVersion: 'cluster.v1',
    features: [...API_FEATURES].sort(),
    defaults:
      config && d
        ? {
            downtimeLimitMs: d.downtimeLimitMs,
            maxBandwidthMibPerSec: d.maxBandwidthMibPerSec,
            maxRounds: d.maxRounds,
            autoConverge: d.autoConverge,
            xbzrle: d.xbzrle,
            xbzrleCacheMib: d.xbzrleCacheMib,
            multifdChannels: d.multifdChannels,
            completionTimeoutPerGibMs: d.completionTimeoutPerGibMs,
            migrationRetentionMs: config.migrationRetentionMs,
            watchHistory: config.watchHistory,
          }
        : undefined,
  };
}
