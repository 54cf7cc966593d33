/**
 * The one exception filter: domain errors → their gRPC status (errors.ts), anything unexpected →
 * logged with its stack and answered INTERNAL. Without it Nest answers UNKNOWN "Internal server error".
 */
import { Catch, type ArgumentsHost, type RpcExceptionFilter } from '@nestjs/common';
import { RpcException } from '@nestjs/microservices';
import { status } from '@grpc/grpc-js';
import { throwError, type Observable } from 'rxjs';
import type { Logger } from '../common/logger.js';
import { grpcStatusOf, isControllerError } from '../errors.js';

export interface GrpcErrorPayload {
  code: status;
  message: string;
  details: string;
}

export function toGrpcError(error: unknown, logger?: Logger): GrpcErrorPayload {
  if (isControllerError(error)) {
    const code = grpcStatusOf(error);
    if (code === status.INTERNAL) logger?.error({ err: error }, 'internal error');
    return { code, message: error.message, details: error.message };
  }
  if (error instanceof RpcException) {
    const inner = error.getError();
    if (typeof inner === 'object' && inner !== null && typeof (inner as { code?: unknown }).code === 'number') {
      const message = String((inner as { message?: unknown }).message ?? '');
      return { code: (inner as { code: status }).code, message, details: message };
    }
  }
  logger?.error({ err: error }, 'unexpected error in a request handler');
  const message = 'internal error (see the controller log)';
  return { code: status.INTERNAL, message, details: message };
}

@Catch()
export class GrpcExceptionFilter implements RpcExceptionFilter<unknown> {
  constructor(private readonly logger: Logger) {}

  catch(exception: unknown, _host: ArgumentsHost): Observable<never> {
    const payload = toGrpcError(exception, this.logger);
    return throwError(() => payload);
  }
}
