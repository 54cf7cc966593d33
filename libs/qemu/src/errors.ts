/**
 * Errors of the QEMU driver. Each has a stable `code` (callers branch on it, never on `message`); the
 * node agent maps codes to gRPC statuses as it does the emulator's.
 */
import type { ErrorCodeOf } from '@vmm/emulator';
import type * as qemuErrors from './errors.js';

/** A driver option or guest spec field is malformed (e.g. a vm id with a comma, memory below the image). */
export class InvalidGuestSpecError extends Error {
  readonly code = 'INVALID_ARGUMENT';
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super(`invalid ${field}: ${detail}`);
    this.name = 'InvalidGuestSpecError';
  }
}

/** qemu-system-x86_64 or the guest image (vmlinuz, initramfs) is not where the driver looks for it. */
export class QemuUnavailableError extends Error {
  readonly code = 'QEMU_UNAVAILABLE';
  constructor(detail: string) {
    super(`QEMU is not available: ${detail}`);
    this.name = 'QemuUnavailableError';
  }
}

/** create() or prepareIncoming() for a vm id that already has a guest in this driver's state directory. */
export class GuestExistsError extends Error {
  readonly code = 'ALREADY_EXISTS';
  constructor(readonly vmId: string) {
    super(`VM ${vmId} already has a QEMU guest`);
    this.name = 'GuestExistsError';
  }
}

/** An operation names a vm id that has no guest in this driver. */
export class GuestNotFoundError extends Error {
  readonly code = 'NOT_FOUND';
  constructor(readonly vmId: string) {
    super(`VM ${vmId} has no QEMU guest`);
    this.name = 'GuestNotFoundError';
  }
}

/**
 * The QEMU process of a guest did not come up: it exited during start-up, its QMP socket never answered,
 * or its guest printed an error or no "ready" line in time. `detail` carries QEMU's stderr or the console.
 */
export class GuestStartError extends Error {
  readonly code = 'GUEST_START_FAILED';
  constructor(
    readonly vmId: string,
    detail: string,
  ) {
    super(`QEMU guest ${vmId} did not start: ${detail}`);
    this.name = 'GuestStartError';
  }
}

/** A lifecycle call the guest's state does not allow (pause a guest that is migrating in, commit a running one). */
export class InvalidGuestStateError extends Error {
  readonly code = 'FAILED_PRECONDITION';
  constructor(
    readonly vmId: string,
    readonly state: string,
    readonly operation: string,
  ) {
    super(`QEMU guest ${vmId} is ${state}: cannot ${operation}`);
    this.name = 'InvalidGuestStateError';
  }
}

/** QEMU answered a QMP command with an error ({"error": {"class", "desc"}}). */
export class QmpCommandError extends Error {
  readonly code = 'QMP_COMMAND_FAILED';
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`QMP ${command} failed: ${errorClass}: ${desc}`);
    this.name = 'QmpCommandError';
  }
}

/** A QMP command, the greeting or a wait on QEMU got no answer within its deadline. */
export class QmpTimeoutError extends Error {
  readonly code = 'QMP_TIMEOUT';
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
  ) {
    super(`QMP ${what} timed out after ${timeoutMs} ms`);
    this.name = 'QmpTimeoutError';
  }
}

/**
 * The QMP connection is gone (QEMU exited or closed it, or the client was closed) while a command was
 * outstanding or before it was sent; also a line that is not JSON or a greeting that is not QMP's.
 */
export class QmpConnectionError extends Error {
  readonly code = 'QMP_DISCONNECTED';
  constructor(detail: string) {
    super(`QMP connection lost: ${detail}`);
    this.name = 'QmpConnectionError';
  }
}

/** The outgoing migration ended in QEMU status `failed` (e.g. the target died); the source runs on. */
export class MigrationFailedError extends Error {
  readonly code = 'MIGRATION_FAILED';
  constructor(
    readonly vmId: string,
    detail: string,
  ) {
    super(`migration of ${vmId} failed: ${detail}`);
    this.name = 'MigrationFailedError';
  }
}

/** The outgoing migration was cancelled (migrate_cancel) before the switch-over; the source runs on. */
export class MigrationCancelledError extends Error {
  readonly code = 'MIGRATION_CANCELLED';
  constructor(readonly vmId: string) {
    super(`migration of ${vmId} was cancelled`);
    this.name = 'MigrationCancelledError';
  }
}

/** Dumping or hashing guest RAM for the digest failed (pmemsave error, /dev/shm full, short file). */
export class DigestError extends Error {
  readonly code = 'DIGEST_FAILED';
  constructor(
    readonly vmId: string,
    detail: string,
  ) {
    super(`digest of ${vmId} failed: ${detail}`);
    this.name = 'DigestError';
  }
}

/**
 * The outgoing migration passed the policy's maxRounds or completionTimeoutMs before it could switch
 * over; the driver cancelled it and the source runs on.
 */
export class MigrationNotConvergedError extends Error {
  readonly code = 'NOT_CONVERGED';
  constructor(
    readonly vmId: string,
    readonly rounds: number,
    readonly elapsedMs: number,
  ) {
    super(`migration of ${vmId} did not converge (${rounds} rounds in ${elapsedMs} ms)`);
    this.name = 'MigrationNotConvergedError';
  }
}

/** Every code a QEMU driver error carries. */
export type QemuErrorCode = ErrorCodeOf<typeof qemuErrors>;
