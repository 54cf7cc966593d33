import { status } from '@grpc/grpc-js';
import { Catch, type ArgumentsHost, type RpcExceptionFilter } from '@nestjs/common';
import { InvalidArgumentError, OutOfRangeError, UnknownImageError } from '@vmm/emulator';
import { InvalidKnobError } from '@vmm/ksm';
import { InvalidPolicyError } from '@vmm/migration';
import { AGENT_ERROR_DOMAIN, toServerError, type FieldViolation, type RichError } from '@vmm/proto';
import { richErrorOfRpcException } from '@vmm/proto/nest';
import type { Logger } from 'pino';
import { throwError, type Observable } from 'rxjs';
import { InvalidRequestError, InvalidVmSpecError } from '../errors.js';
import { isKnownErrorCode, statusOfCode } from './agent-error-status.js';

const snakeCase = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * The bad field of a bad-input error, as a path in the agent's request (proto names): a VmSpec's
 * fields under `spec`, KSM knobs under `knobs`, policy fields under `policy`.
 */
function violation(error: unknown): FieldViolation | undefined {
  const at = (field: string): FieldViolation => ({ field, description: (error as Error).message });
  if (error instanceof InvalidVmSpecError) return at(error.field === 'spec' ? 'spec' : `spec.${error.field}`);
  if (error instanceof UnknownImageError) return at('spec.image');
  if (error instanceof InvalidRequestError) return at(error.field);
  if (error instanceof InvalidKnobError) return at(`knobs.${error.knob}`);
  if (error instanceof InvalidPolicyError) return at(`policy.${snakeCase(error.field)}`);
  // The emulator's own argument names: only a bug lets a request reach these past the spec checks.
  if (error instanceof InvalidArgumentError) return at(error.field);
  if (error instanceof OutOfRangeError) return at(error.what);
  return undefined;
}

/**
 * Maps any thrown value to the rich error the call is answered with: its status, its message, and
 * its code as ErrorInfo.reason (domain agent.v1), plus the bad field (BadRequest) for bad input.
 * `known` is false for what only a bug can raise (answered INTERNAL, logged with its stack).
 */
export function toRichError(exception: unknown): RichError & { known: boolean } {
  const passed = richErrorOfRpcException(exception, AGENT_ERROR_DOMAIN);
  if (passed) return { ...passed, known: true };
  const message = exception instanceof Error ? exception.message : String(exception);
  const code = (exception as { code?: unknown } | null)?.code;
  if (isKnownErrorCode(code)) {
    const grpcStatus = statusOfCode(code);
    const field = grpcStatus === status.INVALID_ARGUMENT ? violation(exception) : undefined;
    return {
      code: grpcStatus,
      message,
      reason: code,
      domain: AGENT_ERROR_DOMAIN,
      ...(field ? { fieldViolations: [field] } : {}),
      known: grpcStatus !== status.INTERNAL,
    };
  }
  return { code: status.INTERNAL, message: `internal error: ${message}`, reason: 'INTERNAL', domain: AGENT_ERROR_DOMAIN, known: false };
}

/**
 * The agent's one exception filter. Without it Nest's default filter answers every non-RpcException
 * with UNKNOWN "Internal server error", hiding the status the caller must branch on. The error's code
 * travels in the grpc-status-details-bin trailer (ErrorInfo), never inside the message text.
 */
@Catch()
export class AgentExceptionFilter implements RpcExceptionFilter<unknown> {
  constructor(private readonly log: Logger) {}

  catch(exception: unknown, host: ArgumentsHost): Observable<never> {
    const { known, ...error } = toRichError(exception);
    const rpc = host.getArgByIndex(2) as { getPath?: () => string } | undefined;
    const fields = { code: status[error.code], reason: error.reason, path: rpc?.getPath?.() };
    if (known) this.log.debug(fields, error.message);
    else this.log.error({ ...fields, err: exception }, 'unexpected error in a gRPC handler');
    return throwError(() => toServerError(error));
  }
}
