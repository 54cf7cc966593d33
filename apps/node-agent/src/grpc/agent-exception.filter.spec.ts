import { status } from '@grpc/grpc-js';
import { RpcException } from '@nestjs/microservices';
import { InvalidArgumentError, InvalidVmStateError, UnknownImageError } from '@vmm/emulator';
import { describe, expect, it } from 'vitest';
import {
  InvalidVmSpecError,
  MigrationNotFoundError,
  NotImplementedError,
  ShuttingDownError,
  VmFencedError,
  VmNotFoundError,
} from '../errors.js';
import { toGrpcError } from './agent-exception.filter.js';

describe('toGrpcError', () => {
  it.each([
    [new InvalidVmSpecError('image', 'unknown'), status.INVALID_ARGUMENT],
    [new InvalidArgumentError('memoryMib', 'too big'), status.INVALID_ARGUMENT],
    [new UnknownImageError('x'), status.INVALID_ARGUMENT],
    [new VmNotFoundError('vm'), status.NOT_FOUND],
    [new MigrationNotFoundError('m'), status.NOT_FOUND],
    [new VmFencedError('vm', 1, 2), status.FAILED_PRECONDITION],
    [new InvalidVmStateError('vm', 'stopped', 'resume'), status.FAILED_PRECONDITION],
    [new NotImplementedError('SetKsm'), status.UNIMPLEMENTED],
    [new ShuttingDownError(), status.UNAVAILABLE],
    [new RpcException({ code: status.ABORTED, message: 'x' }), status.ABORTED],
  ])('maps %s to status %i with its message', (error, code) => {
    expect(toGrpcError(error)).toEqual({ code, message: error.message, known: true });
  });

  it('answers INTERNAL (never UNKNOWN) for an error without a known code, and flags it', () => {
    expect(toGrpcError(new TypeError('boom'))).toEqual({ code: status.INTERNAL, message: 'internal error: boom', known: false });
    expect(toGrpcError('a string')).toMatchObject({ code: status.INTERNAL, known: false });
    expect(toGrpcError(null)).toMatchObject({ code: status.INTERNAL, known: false });
  });
});
