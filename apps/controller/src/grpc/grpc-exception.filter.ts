/**
 * The one exception filter: domain errors → their gRPC status (errors.ts), anything unexpected →
 * logged with its stack and answered INTERNAL. Without it Nest answers UNKNOWN "Internal server error".
 *
 * Every error carries google.rpc.ErrorInfo in the grpc-status-details-bin trailer (reason: the error's
 * stable code; domain: the package of the service called, cluster.v1 for the API, agent.v1 for the
 * registry), and INVALID_ARGUMENT a google.rpc.BadRequest naming the field (docs/api.md, Errors).
 */
import { Catch, type ArgumentsHost, type RpcExceptionFilter } from '@nestjs/common';
import { status } from '@grpc/grpc-js';
import { API_ERROR_DOMAIN, errorDomainOf, toServerError, type FieldViolation, type RichError } from '@vmm/proto';
import { richErrorOfRpcException } from '@vmm/proto/nest';
import { throwError, type Observable } from 'rxjs';
import type { Logger } from '../common/logger.js';
import { AgentRejectedError, grpcStatusOf, InvalidArgumentError, isControllerError, type ControllerError } from '../errors.js';

/** Context fields of the domain errors that go into ErrorInfo.metadata (names as in errors.ts). */
const CONTEXT_FIELDS = ['vmId', 'vmName', 'nodeId', 'migrationId', 'phase'] as const;

function metadataOf(error: ControllerError): Record<string, string> {
  const metadata: Record<string, string> = {};
  for (const key of CONTEXT_FIELDS) {
    const value = (error as unknown as Partial<Record<string, unknown>>)[key];
    if (typeof value === 'string' && value !== '') metadata[key] = value;
  }
  if (error instanceof AgentRejectedError && error.reason) metadata.agentReason = error.reason;
  return metadata;
}

function fieldViolationsOf(error: ControllerError): readonly FieldViolation[] {
  if (error instanceof InvalidArgumentError) return [{ field: error.field, description: error.description }];
  if (error instanceof AgentRejectedError) return error.fieldViolations;
  return [];
}

/** The rich error a call is answered with, in `domain` (see errorDomainOf). */
export function toRichError(error: unknown, domain: string = API_ERROR_DOMAIN, logger?: Logger): RichError {
  if (isControllerError(error)) {
    const code = grpcStatusOf(error);
    if (code === status.INTERNAL) logger?.error({ err: error }, 'internal error');
    const fieldViolations = code === status.INVALID_ARGUMENT ? fieldViolationsOf(error) : [];
    return { code, message: error.message, reason: error.code, domain, metadata: metadataOf(error), fieldViolations };
  }
  const passed = richErrorOfRpcException(error, domain);
  if (passed) return passed;
  logger?.error({ err: error }, 'unexpected error in a request handler');
  return { code: status.INTERNAL, message: 'internal error (see the controller log)', reason: 'INTERNAL', domain };
}

@Catch()
export class GrpcExceptionFilter implements RpcExceptionFilter<unknown> {
  constructor(private readonly logger: Logger) {}

  catch(exception: unknown, host: ArgumentsHost): Observable<never> {
    // Nest's gRPC handlers get (request, metadata, call): the call names the method, hence the domain.
    const call = host.getArgByIndex(2) as { getPath?: () => string } | undefined;
    const domain = errorDomainOf(call?.getPath?.(), API_ERROR_DOMAIN);
    return throwError(() => toServerError(toRichError(exception, domain, this.logger)));
  }
}
