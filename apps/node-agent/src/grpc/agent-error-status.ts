/**
 * The gRPC status of every stable error `code` that can be thrown below an AgentService handler: the
 * agent's own (errors.ts) and the libraries' (emulator, migration, KSM). Each owner's map is a
 * Record over that owner's code type, derived from its error classes, so that a new or renamed code
 * fails to compile until it is mapped here. INTERNAL marks a code that only a bug can raise.
 */
import { status } from '@grpc/grpc-js';
import type { EmulatorErrorCode } from '@vmm/emulator';
import type { KsmErrorCode } from '@vmm/ksm';
import type { MigrationErrorCode } from '@vmm/migration';
import type { QemuErrorCode } from '@vmm/qemu';
import type { AgentErrorCode } from '../errors.js';

const AGENT: Record<AgentErrorCode, status> = {
  // Thrown at start-up only, never below a handler.
  INVALID_CONFIG: status.INTERNAL,
  INVALID_VM_SPEC: status.INVALID_ARGUMENT,
  INVALID_REQUEST: status.INVALID_ARGUMENT,
  VM_NOT_FOUND: status.NOT_FOUND,
  MIGRATION_NOT_FOUND: status.NOT_FOUND,
  VM_FENCED: status.FAILED_PRECONDITION,
  VM_BUSY: status.FAILED_PRECONDITION,
  INSUFFICIENT_MEMORY: status.RESOURCE_EXHAUSTED,
  MIGRATION_STATE: status.FAILED_PRECONDITION,
  NOT_IMPLEMENTED: status.UNIMPLEMENTED,
  SHUTTING_DOWN: status.UNAVAILABLE,
  // Thrown at start-up only.
  STATE_DIR: status.INTERNAL,
  DECISION_CONFLICT: status.FAILED_PRECONDITION,
  // The copy is gone for good: the controller may resume the source's instead.
  INCOMING_LOST: status.DATA_LOSS,
  HOST_KSM_READ_ONLY: status.FAILED_PRECONDITION,
};

const EMULATOR: Record<EmulatorErrorCode, status> = {
  OUT_OF_RANGE: status.INVALID_ARGUMENT,
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  UNKNOWN_IMAGE: status.INVALID_ARGUMENT,
  INVALID_VM_STATE: status.FAILED_PRECONDITION,
  MEMORY_RELEASED: status.FAILED_PRECONDITION,
  CORRUPT_STATE: status.DATA_LOSS,
  // The agent awaits initHashing() before it serves, and hands out only frames it holds.
  HASHING_NOT_INITIALIZED: status.INTERNAL,
  INVALID_FRAME: status.INTERNAL,
};

const MIGRATION: Record<MigrationErrorCode, status> = {
  INVALID_POLICY: status.INVALID_ARGUMENT,
  INVALID_STATE: status.FAILED_PRECONDITION,
  INVALID_PHASE_TRANSITION: status.FAILED_PRECONDITION,
  TOKEN_MISMATCH: status.PERMISSION_DENIED,
  PROTOCOL_ERROR: status.INVALID_ARGUMENT,
  CONNECTION_LOST: status.UNAVAILABLE,
  NOT_CONVERGED: status.ABORTED,
  COMPLETION_TIMEOUT: status.DEADLINE_EXCEEDED,
  CANCELLED: status.CANCELLED,
  PEER_ERROR: status.ABORTED,
  DIGEST_MISMATCH: status.DATA_LOSS,
  CONNECTION_IDLE: status.UNAVAILABLE,
  SWITCHOVER_TIMEOUT: status.DEADLINE_EXCEEDED,
  SPEC_MISMATCH: status.FAILED_PRECONDITION,
  INVALID_FENCING_EPOCH: status.INVALID_ARGUMENT,
};

const KSM: Record<KsmErrorCode, status> = {
  INVALID_KNOB: status.INVALID_ARGUMENT,
  KNOB_BUSY: status.FAILED_PRECONDITION,
  REGION_EXISTS: status.ALREADY_EXISTS,
  UNKNOWN_REGION: status.NOT_FOUND,
  REGION_SPACE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  POOL_MISMATCH: status.INVALID_ARGUMENT,
  INVALID_PID: status.INVALID_ARGUMENT,
};

/** The QEMU driver's (libs/qemu), whose codes are named after the status they mean. */
const QEMU: Record<QemuErrorCode, status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  QEMU_UNAVAILABLE: status.FAILED_PRECONDITION,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  NOT_FOUND: status.NOT_FOUND,
  GUEST_START_FAILED: status.UNAVAILABLE,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  QMP_COMMAND_FAILED: status.INTERNAL,
  QMP_TIMEOUT: status.DEADLINE_EXCEEDED,
  QMP_DISCONNECTED: status.UNAVAILABLE,
  MIGRATION_FAILED: status.ABORTED,
  MIGRATION_CANCELLED: status.CANCELLED,
  DIGEST_FAILED: status.INTERNAL,
  NOT_CONVERGED: status.ABORTED,
};

export type KnownErrorCode = AgentErrorCode | EmulatorErrorCode | MigrationErrorCode | KsmErrorCode | QemuErrorCode;

/** Each owner's map, for the spec that checks that codes two owners share map alike. */
export const STATUS_BY_OWNER = { agent: AGENT, emulator: EMULATOR, migration: MIGRATION, ksm: KSM, qemu: QEMU } as const;

const STATUS_BY_CODE: Readonly<Record<KnownErrorCode, status>> = { ...QEMU, ...KSM, ...MIGRATION, ...EMULATOR, ...AGENT };

/** Whether `code` is one of the codes above (a string from anywhere: a thrown value's `code`). */
export function isKnownErrorCode(code: unknown): code is KnownErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(STATUS_BY_CODE, code);
}

export function statusOfCode(code: KnownErrorCode): status {
  return STATUS_BY_CODE[code];
}
