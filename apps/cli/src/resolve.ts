import { status } from '@grpc/grpc-js';
import type { cluster } from '@vmm/proto';
import type { ClusterApi } from './client.js';
import { isServiceError, notFound, UsageError } from './errors.js';
import { shortId } from './format/units.js';

/** The API takes ids; people type names and the short ids the tables show. */
const MIN_PREFIX = 4;

function lookupMissed(err: unknown): boolean {
  return isServiceError(err) && (err.code === status.NOT_FOUND || err.code === status.INVALID_ARGUMENT);
}

function byPrefix<T>(items: readonly T[], idOf: (t: T) => string, ref: string, what: string): T | undefined {
  if (ref.length < MIN_PREFIX) return undefined;
  const hits = items.filter((t) => idOf(t).startsWith(ref) || shortId(idOf(t)).startsWith(ref));
  if (hits.length > 1) {
    throw new UsageError(`"${ref}" matches ${hits.length} ${what}s (${hits.map((t) => shortId(idOf(t))).join(', ')}): give more of the id`);
  }
  return hits[0];
}

/** A VM by id, then by exact name, then by a unique prefix of its id or of its short id. */
export async function resolveVm(api: ClusterApi, ref: string): Promise<cluster.Vm> {
  try {
    return await api.getVm(ref);
  } catch (err) {
    if (!lookupMissed(err)) throw err;
  }
  const vms = await api.listAllVms();
  const named = vms.find((vm) => vm.name === ref);
  if (named) return named;
  const prefixed = byPrefix(vms, (vm) => vm.vmId, ref, 'VM');
  if (prefixed) return prefixed;
  throw notFound(`no VM with id or name "${ref}"`);
}

/** A migration by id, then by a unique prefix of its id or of its short id. */
export async function resolveMigration(api: ClusterApi, ref: string): Promise<cluster.Migration> {
  try {
    return await api.getMigration(ref);
  } catch (err) {
    if (!lookupMissed(err)) throw err;
  }
  const prefixed = byPrefix(await api.listAllMigrations(), (m) => m.migrationId, ref, 'migration');
  if (prefixed) return prefixed;
  throw notFound(`no migration with id "${ref}"`);
}

/** vm_id → name for every VM, so that migration tables can show names. Best effort. */
export async function vmNames(api: ClusterApi): Promise<Map<string, string>> {
  try {
    return new Map((await api.listAllVms()).map((vm) => [vm.vmId, vm.name]));
  } catch {
    return new Map();
  }
}
