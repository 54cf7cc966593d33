// Turns parsed command-line options into request messages, validating what the CLI can check
// itself (the controller checks the rest and answers INVALID_ARGUMENT naming the field).
import { cluster } from '@vmm/proto';
import { UsageError } from './errors.js';
import { collectLabel, parseBool, parseInteger, parseMemoryMib, parseNumber, requireName } from './args.js';
import { parseWorkload } from './workload.js';

export interface CreateOptions {
  vcpus: string;
  memory: string;
  image: string;
  workload: string;
  node?: string;
  antiAffinity?: string;
  label?: string[];
  restart?: string;
  hypervisor?: string;
  nodeSelector?: string[];
}

const RESTART_POLICIES: Record<string, cluster.RestartPolicy> = {
  never: cluster.RestartPolicy.RESTART_POLICY_NEVER,
  always: cluster.RestartPolicy.RESTART_POLICY_ALWAYS,
};

function parseRestartPolicy(value: string | undefined): cluster.RestartPolicy {
  const policy = RESTART_POLICIES[(value ?? 'never').trim().toLowerCase()];
  if (policy === undefined) throw new UsageError(`--restart must be never or always, got ${JSON.stringify(value)}`);
  return policy;
}

export function buildCreateRequest(name: string, opts: CreateOptions): cluster.CreateVmRequest {
  let labels: Record<string, string> = {};
  for (const label of opts.label ?? []) labels = collectLabel(label, labels);
  let nodeSelector: Record<string, string> = {};
  for (const label of opts.nodeSelector ?? []) nodeSelector = collectLabel(label, nodeSelector, '--node-selector');
  return {
    name: requireName(name, 'NAME'),
    vcpus: parseInteger(opts.vcpus, '--vcpus', 1, 1024),
    memoryMib: parseMemoryMib(opts.memory),
    image: requireName(opts.image, '--image'),
    workload: parseWorkload(opts.workload),
    nodeId: opts.node?.trim() ?? '',
    antiAffinityGroup: opts.antiAffinity?.trim() ?? '',
    labels,
    restartPolicy: parseRestartPolicy(opts.restart),
    requestId: '',
    // Checked by the controller (one list of drivers); empty = any node's.
    hypervisor: opts.hypervisor?.trim() ?? '',
    nodeSelector,
  };
}

/**
 * `vmctl label NODE k=v … [--remove k]`: the labels to set and the keys to remove (LabelNode). A
 * `k-` argument removes k too, as in kubectl. Nothing to do is a usage error.
 */
export function buildLabelNodeRequest(nodeId: string, args: readonly string[], remove: readonly string[] = []): cluster.LabelNodeRequest {
  let labels: Record<string, string> = {};
  const removed = remove.map((k) => requireName(k, '--remove'));
  for (const arg of args) {
    if (!arg.includes('=') && arg.endsWith('-') && arg.length > 1) removed.push(arg.slice(0, -1));
    else labels = collectLabel(arg, labels, 'a label');
  }
  if (Object.keys(labels).length === 0 && removed.length === 0) throw new UsageError('give labels to set (k=v) or keys to remove (--remove k)');
  return { nodeId: requireName(nodeId, 'NODE'), labels, remove: removed };
}

export interface PolicyOptions {
  downtimeMs?: string;
  bandwidthMib?: string;
  maxRounds?: string;
  autoConverge?: boolean;
  xbzrle?: boolean;
  completionTimeoutMs?: string;
  xbzrleCacheMib?: string;
  multifd?: string;
}

/**
 * Only the fields whose option is given (every MigrationPolicy field is optional: an unset one takes
 * the controller's default); undefined when no option is given.
 */
export function buildPolicy(opts: PolicyOptions): cluster.MigrationPolicy | undefined {
  const policy: cluster.MigrationPolicy = {};
  if (opts.downtimeMs !== undefined) policy.downtimeLimitMs = parseInteger(opts.downtimeMs, '--downtime-ms', 1);
  if (opts.bandwidthMib !== undefined) policy.maxBandwidthMibPerSec = parseNumber(opts.bandwidthMib, '--bandwidth-mib');
  if (opts.maxRounds !== undefined) policy.maxRounds = parseInteger(opts.maxRounds, '--max-rounds', 1, 1_000_000);
  if (opts.autoConverge === true) policy.autoConverge = true;
  if (opts.xbzrle === true) policy.xbzrle = true;
  if (opts.completionTimeoutMs !== undefined) policy.completionTimeoutMs = parseInteger(opts.completionTimeoutMs, '--completion-timeout-ms', 1);
  if (opts.xbzrleCacheMib !== undefined) policy.xbzrleCacheMib = parseInteger(opts.xbzrleCacheMib, '--xbzrle-cache-mib', 1);
  if (opts.multifd !== undefined) policy.multifdChannels = parseInteger(opts.multifd, '--multifd', 1, 16);
  return Object.keys(policy).length > 0 ? policy : undefined;
}

export interface MigrationUpdateOptions {
  downtimeMs?: string;
  bandwidthMib?: string;
  forceComplete?: boolean;
}

/**
 * UpdateMigration's request: only the limits whose option is given (the controller keeps the others).
 * @throws UsageError when no option is given (nothing to change)
 */
export function buildMigrationUpdate(migrationId: string, opts: MigrationUpdateOptions): cluster.UpdateMigrationRequest {
  const request: cluster.UpdateMigrationRequest = { migrationId, forceComplete: opts.forceComplete === true };
  if (opts.downtimeMs !== undefined) request.downtimeLimitMs = parseInteger(opts.downtimeMs, '--downtime-ms', 1);
  if (opts.bandwidthMib !== undefined) request.maxBandwidthMibPerSec = parseNumber(opts.bandwidthMib, '--bandwidth-mib');
  if (request.downtimeLimitMs === undefined && request.maxBandwidthMibPerSec === undefined && !request.forceComplete) {
    throw new UsageError('migration-update needs --downtime-ms, --bandwidth-mib or --force-complete');
  }
  return request;
}

export interface KsmOptions {
  run?: string;
  pagesToScan?: string;
  sleepMs?: string;
  maxPageSharing?: string;
  useZeroPages?: string;
}

/** Undefined when no knob is given (show only); otherwise only the given knobs are set. */
export function buildKsmKnobs(opts: KsmOptions): cluster.KsmKnobs | undefined {
  const knobs: cluster.KsmKnobs = {};
  if (opts.run !== undefined) knobs.run = parseInteger(opts.run, '--run', 0, 2);
  if (opts.pagesToScan !== undefined) knobs.pagesToScan = parseInteger(opts.pagesToScan, '--pages-to-scan', 1, 2 ** 31 - 1);
  if (opts.sleepMs !== undefined) knobs.sleepMillisecs = parseInteger(opts.sleepMs, '--sleep-ms', 0, 2 ** 31 - 1);
  if (opts.maxPageSharing !== undefined) knobs.maxPageSharing = parseInteger(opts.maxPageSharing, '--max-page-sharing', 2, 2 ** 31 - 1);
  if (opts.useZeroPages !== undefined) knobs.useZeroPages = parseBool(opts.useZeroPages, '--use-zero-pages');
  return Object.keys(knobs).length > 0 ? knobs : undefined;
}
