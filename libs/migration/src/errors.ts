/**
 * Every error the migration engine throws. Each has a stable `code` to branch on (never the message).
 * Pure: no Node imports, so the controller may import it next to the phase model.
 */
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
