/**
 * cluster.v1 MigrationPolicy (as StartOutgoing carries it) → the engine's partial policy. The fields
 * are the engine's knobs by name; the engine resolves what is unset and checks every value
 * (libs/migration/src/policy.ts): an explicit 0 is passed on as 0, never turned into a default.
 */
import { pickPolicy, type MigrationPolicy, type PartialMigrationPolicy } from '@vmm/migration';
import type { cluster } from '@vmm/proto';

/**
 * cluster.v1 MigrationPolicy and the engine's policy have the same fields: a field on one side only
 * (a knob added to the proto and forgotten by the engine, or the reverse) fails to compile.
 */
type OneSidedFields =
  | Exclude<keyof cluster.MigrationPolicy, keyof MigrationPolicy>
  | Exclude<keyof MigrationPolicy, keyof cluster.MigrationPolicy>;
const sameFields: [OneSidedFields] extends [never] ? true : OneSidedFields = true;
void sameFields;

/** The knobs set in `policy` (unset ones, and a missing policy, leave the engine's defaults). */
export function toEnginePolicy(policy: cluster.MigrationPolicy | undefined | null): PartialMigrationPolicy {
  return pickPolicy(policy);
}
