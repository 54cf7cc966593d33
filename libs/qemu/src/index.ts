export { QemuDriver, type QemuDriverOptions, type IncomingOptions, type OutgoingOptions } from './qemu-driver.js';
export { QmpClient, type QmpEvent, type QmpConnectOptions, MAX_QMP_LINE_BYTES, DEFAULT_QMP_COMMAND_TIMEOUT_MS } from './qmp/qmp-client.js';
export { OutgoingMigration, MIGRATION_POLL_MS, type OutgoingCompletion } from './migration/outgoing-migration.js';
export { IncomingMigration } from './migration/incoming-migration.js';
export type { OutgoingState, IncomingState } from './migration/migration-state.js';
export { toMigrationProgress, phaseOfQemuStatus, type QemuMigrationInfo } from './migration/migration-progress.js';
export {
  migrationCapabilities,
  sourceMigrationParameters,
  targetMigrationParameters,
  migrationUri,
  UNLIMITED_BANDWIDTH_BYTES_PER_SEC,
  QEMU_MAX_DOWNTIME_LIMIT_MS,
  updateMigrationParameters,
} from './migration/migration-params.js';
export { type GuestSpec, resolveGuestSpec, GUEST_OS_RESERVED_MIB, MIN_GUEST_MEMORY_MIB, VM_ID_PATTERN } from './guest/guest-spec.js';
export type { GuestState } from './guest/guest-state.js';
export type { GuestStatus, GuestStats } from './guest/qemu-guest.js';
export type { RamDigest } from './guest/ram-digest.js';
export type { Accelerator } from './guest/qemu-args.js';
export { qemuUnavailableReason, defaultGuestImageDir, findQemuBinary, findGuestImage } from './guest/host-setup.js';
export { buildKernelCmdline } from './guest/kernel-cmdline.js';
export * from './errors.js';
