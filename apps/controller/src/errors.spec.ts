import { status } from '@grpc/grpc-js';
import { RpcException } from '@nestjs/microservices';
import { describe, expect, it } from 'vitest';
import {
  AgentRejectedError,
  AgentUnavailableError,
  grpcStatusOf,
  InternalError,
  InvalidArgumentError,
  MigrationNotFoundError,
  NoCapacityError,
  NodeNotFoundError,
  NodeNotSchedulableError,
  NotImplementedError,
  UnauthenticatedError,
  VmBusyError,
  VmNameTakenError,
  VmNotFoundError,
} from './errors.js';
import { toGrpcError } from './grpc/grpc-exception.filter.js';

describe('grpcStatusOf', () => {
  it.each([
    [new InvalidArgumentError('name', 'empty'), status.INVALID_ARGUMENT],
    [new VmNotFoundError('x'), status.NOT_FOUND],
    [new NodeNotFoundError('x'), status.NOT_FOUND],
    [new MigrationNotFoundError('x'), status.NOT_FOUND],
    [new VmNameTakenError('x'), status.ALREADY_EXISTS],
    [new NodeNotSchedulableError('n', 'cordoned'), status.FAILED_PRECONDITION],
    [new VmBusyError('v', 'migrating'), status.FAILED_PRECONDITION],
    [new NoCapacityError('full'), status.RESOURCE_EXHAUSTED],
    [new UnauthenticatedError('no token'), status.UNAUTHENTICATED],
    [new AgentUnavailableError('n', 'down'), status.UNAVAILABLE],
    [new AgentRejectedError('n', status.INVALID_ARGUMENT, 'image'), status.INVALID_ARGUMENT],
    [new AgentRejectedError('n', status.ALREADY_EXISTS, 'dup'), status.ALREADY_EXISTS],
    [new AgentRejectedError('n', status.PERMISSION_DENIED, 'odd'), status.FAILED_PRECONDITION],
    [new NotImplementedError('X'), status.UNIMPLEMENTED],
    [new InternalError('bug'), status.INTERNAL],
  ])('%s → %i', (error, code) => {
    expect(grpcStatusOf(error)).toBe(code);
  });

  it('messages name the field', () => {
    expect(new InvalidArgumentError('memory_mib', 'must be greater than 0').message).toBe('memory_mib: must be greater than 0');
  });
});

describe('toGrpcError (the exception filter)', () => {
  it('maps domain errors with their message', () => {
    expect(toGrpcError(new VmNotFoundError('vm-1'))).toEqual({
      code: status.NOT_FOUND,
      message: 'vm "vm-1" not found',
      details: 'vm "vm-1" not found',
    });
  });

  it('passes an RpcException carrying a gRPC code through', () => {
    expect(toGrpcError(new RpcException({ code: status.ABORTED, message: 'x' })).code).toBe(status.ABORTED);
  });

  it('turns anything else into INTERNAL, never UNKNOWN, and logs it', () => {
    const logged: unknown[] = [];
    const logger = { error: (o: unknown) => logged.push(o) } as never;
    const payload = toGrpcError(new TypeError('boom'), logger);
    expect(payload.code).toBe(status.INTERNAL);
    expect(payload.message).not.toContain('boom');
    expect(logged).toHaveLength(1);
  });
});
