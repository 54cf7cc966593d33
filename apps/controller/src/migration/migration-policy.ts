/**
 * A MigrateVm request's policy resolved into the one the migration runs with: unset fields take the
 * controller's configured defaults, set fields are checked against their ranges. The defaults, ranges
 * and rules are the engine's (libs/migration/src/policy.ts); this only adapts them to the API:
 * cluster.v1 field names in errors, INVALID_ARGUMENT through the exception filter.
 */
import { InvalidPolicyError } from '@vmm/migration/errors';
import { pickPolicy, resolvePolicy, type MigrationPolicy, type PolicyDefaults } from '@vmm/migration/policy';
import type { cluster } from '@vmm/proto';
import { InvalidArgumentError } from '../errors.js';

/**
 * cluster.v1 MigrationPolicy and the engine's policy have the same fields: a field on one side only
 * (a knob added to the proto and forgotten here, or the reverse) fails to compile.
 */
type OneSidedFields =
  | Exclude<keyof cluster.MigrationPolicy, keyof MigrationPolicy>
  | Exclude<keyof MigrationPolicy, keyof cluster.MigrationPolicy>;
const sameFields: [OneSidedFields] extends [never] ? true : OneSidedFields = true;
void sameFields;

const MIB = 1024 * 1024;

/**
 * @param vmMemoryMib the VM's memory: scales the default completion timeout (150 s per GiB unless
 *   configured otherwise) and bounds the XBZRLE cache (a quarter of it).
 * @throws InvalidArgumentError naming `policy.<field>` for a value out of its range
 */
export function resolveRequestPolicy(
  requested: cluster.MigrationPolicy | null | undefined,
  vmMemoryMib: number,
  defaults: Readonly<PolicyDefaults>,
): Required<cluster.MigrationPolicy> {
  try {
    return resolvePolicy(pickPolicy(requested), vmMemoryMib * MIB, defaults);
  } catch (error) {
    if (error instanceof InvalidPolicyError) throw new InvalidArgumentError(`policy.${error.protoField}`, `${String(error.value)}: ${error.reason}`);
    throw error;
  }
}
