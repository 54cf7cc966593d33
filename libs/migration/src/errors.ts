/**
 * Every error the migration engine throws. Each has a stable `code` to branch on (never the message),
 * a literal type that MigrationErrorCode (at the end) collects; the node agent maps every one of them
 * to a gRPC status in a Record<MigrationErrorCode, status>, so that a new or renamed code fails to
 * compile until it is mapped.
 * Pure: no Node imports, so the controller may import it next to the phase model.
 */
import type { ErrorCodeOf } from '@vmm/emulator';
import type * as migrationErrors from './errors.js';

export { InvalidPhaseTransitionError } from './phase.js';

/**
 * A policy field (or a configured default) is out of its range, non-finite, fractional where a whole
 * number is required, or of the wrong type (policy.ts holds the ranges). `field` is the camelCase
 * name, `protoField` the cluster.v1 name a client sent (the same for defaults, which have none).
 */
export class InvalidPolicyError extends Error {
  readonly code = 'INVALID_POLICY';
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly reason: string = 'out of range',
    readonly protoField: string = field,
  ) {
    super(`invalid migration policy: ${protoField}=${String(value)}: ${reason}`);
    this.name = 'InvalidPolicyError';
  }
}

/** The receiver got a HELLO whose one-time token does not match the expected one. */
export class TokenMismatchError extends Error {
  readonly code = 'TOKEN_MISMATCH';
  constructor(readonly migrationId: string) {
    super(`migration ${migrationId}: data connection token rejected`);
    this.name = 'TokenMismatchError';
  }
}

/** A frame is malformed, too large, of an unknown type, out of order, or the protocol version differs. */
export class ProtocolError extends Error {
  readonly code = 'PROTOCOL_ERROR';
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** The data connection closed or failed before the migration reached ready-to-commit. */
export class ConnectionLostError extends Error {
  readonly code = 'CONNECTION_LOST';
  constructor(
    readonly migrationId: string,
    readonly reason: string,
  ) {
    super(`migration ${migrationId}: data connection lost (${reason})`);
    this.name = 'ConnectionLostError';
  }
}

/** max_rounds pre-copy rounds ran and the expected downtime never fell below the limit. */
export class ConvergenceError extends Error {
  readonly code = 'NOT_CONVERGED';
  constructor(
    readonly migrationId: string,
    readonly rounds: number,
    readonly remainingPages: number,
    readonly expectedDowntimeMs: number,
    /** The policy's limits, named in the message so that the operator sees which one to raise. */
    readonly maxRounds = rounds,
    readonly downtimeLimitMs?: number,
  ) {
    super(
      `migration ${migrationId} did not converge within max_rounds=${maxRounds} ` +
        `(${remainingPages} dirty pages left after ${rounds} rounds, expected downtime ${Math.round(expectedDowntimeMs)} ms` +
        `${downtimeLimitMs === undefined ? '' : ` > downtime_limit_ms=${downtimeLimitMs}`})`,
    );
    this.name = 'ConvergenceError';
  }
}

/** completion_timeout_ms elapsed before the migration was ready to commit. */
export class CompletionTimeoutError extends Error {
  readonly code = 'COMPLETION_TIMEOUT';
  constructor(
    readonly migrationId: string,
    readonly timeoutMs: number,
  ) {
    super(`migration ${migrationId} exceeded its completion timeout of ${timeoutMs} ms`);
    this.name = 'CompletionTimeoutError';
  }
}

/** The AbortSignal of either end fired before commit; the source keeps running. */
export class MigrationCancelledError extends Error {
  readonly code = 'CANCELLED';
  constructor(
    readonly migrationId: string,
    readonly reason: string,
  ) {
    super(`migration ${migrationId} cancelled: ${reason}`);
    this.name = 'MigrationCancelledError';
  }
}

/** The peer reported an error in an ERROR frame; `peerCode` is the code it sent. */
export class PeerError extends Error {
  readonly code = 'PEER_ERROR';
  constructor(
    readonly migrationId: string,
    readonly peerCode: string,
    readonly peerMessage: string,
  ) {
    super(`migration ${migrationId}: peer failed with ${peerCode}: ${peerMessage}`);
    this.name = 'PeerError';
  }
}

/** The target's digest after applying every page differs from the source's digest. */
export class DigestMismatchError extends Error {
  readonly code = 'DIGEST_MISMATCH';
  constructor(
    readonly migrationId: string,
    readonly sourceDigest: string,
    readonly targetDigest: string,
  ) {
    super(`migration ${migrationId}: digest mismatch (source ${sourceDigest}, target ${targetDigest})`);
    this.name = 'DigestMismatchError';
  }
}

/** The incoming VM does not fit the HELLO (page count, state), or commit/abort was called in the wrong state. */
export class MigrationStateError extends Error {
  readonly code = 'INVALID_STATE';
  constructor(message: string) {
    super(message);
    this.name = 'MigrationStateError';
  }
}

/**
 * No bytes moved in either direction on the data connection for `idleTimeoutMs` while the migration
 * was in flight (a peer that hangs, a dead link without a reset). Both ends fail with this code: the
 * end that noticed tells the other, and the other's own watch notices too.
 */
export class ConnectionIdleError extends Error {
  readonly code = 'CONNECTION_IDLE';
  /**
   * @param idleTimeoutMs the bound this end watched, or null when the peer noticed (`peerMessage` is what
   *   it said)
   */
  constructor(
    readonly migrationId: string,
    readonly idleTimeoutMs: number | null,
    peerMessage = '',
  ) {
    super(
      idleTimeoutMs === null
        ? `migration ${migrationId}: the peer found the data connection idle (${peerMessage})`
        : `migration ${migrationId}: no bytes moved on the data connection for ${idleTimeoutMs} ms`,
    );
    this.name = 'ConnectionIdleError';
  }
}

/**
 * The source stayed paused in STOP_AND_COPY for `switchOverTimeoutMs` without the target's VERIFIED:
 * the sender rolls back and resumes the source. Never thrown once the target verified (the source
 * then waits for the controller's verdict, however long).
 */
export class SwitchOverTimeoutError extends Error {
  readonly code = 'SWITCHOVER_TIMEOUT';
  constructor(
    readonly migrationId: string,
    readonly switchOverTimeoutMs: number,
  ) {
    super(`migration ${migrationId}: the target did not verify within ${switchOverTimeoutMs} ms of the pause; the source resumes`);
    this.name = 'SwitchOverTimeoutError';
  }
}

/**
 * A source holding at the switch-over point (its guest stopped, before the last pages) heard no
 * ContinueSwitchover from the controller within its hold: it cancels the transfer and runs on.
 */
export class SwitchOverHoldTimeoutError extends Error {
  readonly code = 'SWITCHOVER_TIMEOUT';
  constructor(
    readonly migrationId: string,
    readonly holdMs: number,
  ) {
    super(`migration ${migrationId}: the controller did not continue the switch-over within ${holdMs} ms of the pause; the source resumes`);
    this.name = 'SwitchOverHoldTimeoutError';
  }
}

/**
 * The HELLO's VM spec (memory, vCPUs, image, page count) differs from the incoming VM the target
 * prepared, or its residentPages exceed that VM's memory: the target prepares nothing for it.
 */
export class SpecMismatchError extends Error {
  readonly code = 'SPEC_MISMATCH';
  constructor(
    readonly migrationId: string,
    readonly field: string,
    detail: string,
  ) {
    super(`migration ${migrationId}: HELLO ${field} ${detail}`);
    this.name = 'SpecMismatchError';
  }
}

/** A fencing epoch is not a non-negative safe integer (int64 beyond 2^53 loses precision as a JS number). */
export class InvalidFencingEpochError extends Error {
  readonly code = 'INVALID_FENCING_EPOCH';
  constructor(
    readonly field: string,
    readonly value: unknown,
  ) {
    super(`invalid ${field}: ${String(value)} is not a whole number in 0..${Number.MAX_SAFE_INTEGER}`);
    this.name = 'InvalidFencingEpochError';
  }
}

/** Every code a migration engine error carries (InvalidPhaseTransitionError's too, re-exported above). */
export type MigrationErrorCode = ErrorCodeOf<typeof migrationErrors>;
