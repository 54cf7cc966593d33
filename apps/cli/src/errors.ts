import { Metadata, status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { readStatusDetails } from '@vmm/proto';

/** A bad command line: a malformed value, a missing argument, conflicting options. Exit code 2. */
export class UsageError extends Error {
  readonly code = 'USAGE';
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * A followed migration ended in FAILED or CANCELLED. The summary is already printed; the process
 * still exits non-zero so that scripts notice.
 */
export class MigrationNotCompletedError extends Error {
  readonly code = 'MIGRATION_NOT_COMPLETED';
  constructor(readonly migrationId: string, readonly phase: string) {
    super(`migration ${migrationId} ended ${phase}`);
    this.name = 'MigrationNotCompletedError';
  }
}

/**
 * Exit codes: 1 for an API (gRPC) error or a failed migration, 2 for a usage error, 3 when the server
 * does not implement the method (UNIMPLEMENTED: an older or partial build), so scripts can skip a step.
 */
export const EXIT_API_ERROR = 1;
export const EXIT_USAGE = 2;
export const EXIT_UNIMPLEMENTED = 3;

export function isServiceError(err: unknown): err is ServiceError {
  return (
    err instanceof Error &&
    typeof (err as Partial<ServiceError>).code === 'number' &&
    'metadata' in err
  );
}

/** `NOT_FOUND` for 5, the name grpc uses in its docs and in docs/api.md. */
export function statusName(code: number): string {
  return GrpcStatus[code] ?? `STATUS_${code}`;
}

/**
 * The error's stable code as the server sent it in the rich error details (ErrorInfo.reason), with
 * the refusing agent's code after it for AGENT_REJECTED (`AGENT_REJECTED: KNOB_BUSY`); undefined when
 * the server sent none, or only the status name again.
 */
export function reasonOf(err: ServiceError): string | undefined {
  const info = readStatusDetails(err)?.errorInfo;
  if (!info?.reason || info.reason === statusName(err.code)) return undefined;
  const agentReason = info.metadata.agentReason;
  return agentReason ? `${info.reason}: ${agentReason}` : info.reason;
}

/** One line for the user, never a stack trace: `<STATUS> [<reason>]: <details>` or the plain message. */
export function describeError(err: unknown): { message: string; exitCode: number } {
  if (isServiceError(err)) {
    // grpc-js appends an empty "Resolution note: " to connection errors; it says nothing.
    const details = (err.details || err.message).replace(/\s*Resolution note:\s*$/, '');
    const exitCode = err.code === GrpcStatus.UNIMPLEMENTED ? EXIT_UNIMPLEMENTED : EXIT_API_ERROR;
    const reason = reasonOf(err);
    return { message: `${statusName(err.code)}${reason ? ` [${reason}]` : ''}: ${details}`, exitCode };
  }
  if (err instanceof UsageError) return { message: err.message, exitCode: EXIT_USAGE };
  if (err instanceof MigrationNotCompletedError) return { message: err.message, exitCode: EXIT_API_ERROR };
  if (err instanceof Error) return { message: err.message, exitCode: EXIT_API_ERROR };
  return { message: String(err), exitCode: EXIT_API_ERROR };
}

/** A ServiceError made here (for lookups that fail on the client side), shaped like grpc-js's. */
export function notFound(details: string): ServiceError {
  return Object.assign(new Error(`${GrpcStatus.NOT_FOUND} NOT_FOUND: ${details}`), {
    code: GrpcStatus.NOT_FOUND,
    details,
    metadata: new Metadata(),
  });
}
