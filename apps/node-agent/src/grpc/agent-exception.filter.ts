import { status } from '@grpc/grpc-js';
import { Catch, type ArgumentsHost, type RpcExceptionFilter } from '@nestjs/common';
import { RpcException } from '@nestjs/microservices';
import type { Logger } from 'pino';
import { throwError, type Observable } from 'rxjs';

/**
 * gRPC status for every stable error `code` thrown below a handler: the agent's own (errors.ts) and
 * the libraries' (emulator, migration). A code missing here is a bug: it is answered INTERNAL and logged.
 */
const statusByCode: Readonly<Record<string, status>> = {
  INVALID_VM_SPEC: status.INVALID_ARGUMENT,
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  UNKNOWN_IMAGE: status.INVALID_ARGUMENT,
  OUT_OF_RANGE: status.INVALID_ARGUMENT,
  VM_NOT_FOUND: status.NOT_FOUND,
  MIGRATION_NOT_FOUND: status.NOT_FOUND,
  VM_FENCED: status.FAILED_PRECONDITION,
  VM_BUSY: status.FAILED_PRECONDITION,
  INVALID_VM_STATE: status.FAILED_PRECONDITION,
  MEMORY_RELEASED: status.FAILED_PRECONDITION,
  MIGRATION_STATE: status.FAILED_PRECONDITION,
  NOT_IMPLEMENTED: status.UNIMPLEMENTED,
  SHUTTING_DOWN: status.UNAVAILABLE,
  CORRUPT_STATE: status.DATA_LOSS,
  INVALID_REQUEST: status.INVALID_ARGUMENT,
  // @vmm/migration
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
  // @vmm/ksm
  INVALID_KNOB: status.INVALID_ARGUMENT,
  KNOB_BUSY: status.FAILED_PRECONDITION,
  REGION_EXISTS: status.ALREADY_EXISTS,
  UNKNOWN_REGION: status.NOT_FOUND,
  REGION_SPACE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  POOL_MISMATCH: status.INVALID_ARGUMENT,
  INVALID_PID: status.INVALID_ARGUMENT,
};

export interface GrpcErrorPayload {
  code: status;
  message: string;
}

/** Maps any thrown value to the `{ code, message }` grpc-js sends as the call's status. */
export function toGrpcError(exception: unknown): GrpcErrorPayload & { known: boolean } {
  if (exception instanceof RpcException) {
    const inner = exception.getError();
    if (typeof inner === 'object' && inner !== null && typeof (inner as { code?: unknown }).code === 'number') {
      return { code: (inner as { code: status }).code, message: exception.message, known: true };
    }
  }
  const code = (exception as { code?: unknown } | null)?.code;
  const message = exception instanceof Error ? exception.message : String(exception);
  if (typeof code === 'string' && code in statusByCode) {
    return { code: statusByCode[code]!, message, known: true };
  }
  return { code: status.INTERNAL, message: `internal error: ${message}`, known: false };
}

/**
 * The agent's one exception filter. Without it Nest's default filter answers every non-RpcException
 * with UNKNOWN "Internal server error", hiding the status the caller must branch on.
 */
@Catch()
export class AgentExceptionFilter implements RpcExceptionFilter<unknown> {
  constructor(private readonly log: Logger) {}

  catch(exception: unknown, host: ArgumentsHost): Observable<never> {
    const error = toGrpcError(exception);
    const rpc = host.getArgByIndex(2) as { getPath?: () => string } | undefined;
    const fields = { code: status[error.code], path: rpc?.getPath?.() };
    if (error.known) this.log.debug(fields, error.message);
    else this.log.error({ ...fields, err: exception }, 'unexpected error in a gRPC handler');
    return throwError(() => ({ code: error.code, message: error.message }));
  }
}
