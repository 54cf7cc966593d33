import { status } from '@grpc/grpc-js';
import { RpcException } from '@nestjs/microservices';
import { HashingNotInitializedError, InvalidArgumentError, InvalidVmStateError, UnknownImageError } from '@vmm/emulator';
import { InvalidKnobError, KnobBusyError } from '@vmm/ksm';
import { ConvergenceError, InvalidPolicyError, MigrationStateError } from '@vmm/migration';
import { readStatusDetails } from '@vmm/proto';
import { describe, expect, it } from 'vitest';
import {
  InvalidRequestError,
  InvalidVmSpecError,
  MigrationNotFoundError,
  MigrationStepError,
  NotImplementedError,
  ShuttingDownError,
  VmFencedError,
  VmNotFoundError,
} from '../errors.js';
import { STATUS_BY_OWNER } from './agent-error-status.js';
import { AgentExceptionFilter, toRichError } from './agent-exception.filter.js';

describe('toRichError', () => {
  it.each([
    [new InvalidVmSpecError('image', 'unknown'), status.INVALID_ARGUMENT, 'INVALID_VM_SPEC'],
    [new InvalidArgumentError('memoryMib', 'too big'), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
    [new UnknownImageError('x'), status.INVALID_ARGUMENT, 'UNKNOWN_IMAGE'],
    [new VmNotFoundError('vm'), status.NOT_FOUND, 'VM_NOT_FOUND'],
    [new MigrationNotFoundError('m'), status.NOT_FOUND, 'MIGRATION_NOT_FOUND'],
    [new VmFencedError('vm', 1, 2), status.FAILED_PRECONDITION, 'VM_FENCED'],
    [new MigrationStepError('m', 'already committed'), status.FAILED_PRECONDITION, 'MIGRATION_STATE'],
    [new MigrationStateError('engine state'), status.FAILED_PRECONDITION, 'INVALID_STATE'],
    [new InvalidVmStateError('vm', 'stopped', 'resume'), status.FAILED_PRECONDITION, 'INVALID_VM_STATE'],
    [new KnobBusyError('max_page_sharing', 3), status.FAILED_PRECONDITION, 'KNOB_BUSY'],
    [new ConvergenceError('m', 3, 100, 500), status.ABORTED, 'NOT_CONVERGED'],
    [new NotImplementedError('SetKsm'), status.UNIMPLEMENTED, 'NOT_IMPLEMENTED'],
    [new ShuttingDownError(), status.UNAVAILABLE, 'SHUTTING_DOWN'],
    [new RpcException({ code: status.ABORTED, message: 'x' }), status.ABORTED, 'ABORTED'],
  ])('maps %s to status %i, its code as the reason and its message', (error, code, reason) => {
    expect(toRichError(error)).toMatchObject({ code, reason, domain: 'agent.v1', message: error.message, known: true });
  });

  it.each([
    [new InvalidVmSpecError('workload.kind', 'unspecified'), 'spec.workload.kind'],
    [new InvalidVmSpecError('spec', 'missing'), 'spec'],
    [new UnknownImageError('nope'), 'spec.image'],
    [new InvalidRequestError('token', 'too short'), 'token'],
    [new InvalidKnobError('pages_to_scan', 0, 'must be an integer in 1..4294967295'), 'knobs.pages_to_scan'],
    [new InvalidPolicyError('downtimeLimitMs', -1), 'policy.downtime_limit_ms'],
  ])('names the bad field of %s as %s (BadRequest)', (error, field) => {
    expect(toRichError(error).fieldViolations).toEqual([{ field, description: error.message }]);
  });

  it('names no field for errors that are not about the request', () => {
    expect(toRichError(new VmNotFoundError('vm')).fieldViolations).toBeUndefined();
  });

  it('answers INTERNAL (never UNKNOWN) for an error without a known code, and flags it', () => {
    expect(toRichError(new TypeError('boom'))).toEqual({ code: status.INTERNAL, message: 'internal error: boom', reason: 'INTERNAL', domain: 'agent.v1', known: false });
    expect(toRichError('a string')).toMatchObject({ code: status.INTERNAL, known: false });
    expect(toRichError(null)).toMatchObject({ code: status.INTERNAL, known: false });
  });

  it('flags a known code that only a bug can raise, so that it is logged with its stack', () => {
    expect(toRichError(new HashingNotInitializedError())).toMatchObject({ code: status.INTERNAL, reason: 'HASHING_NOT_INITIALIZED', known: false });
  });

  it('a code that two owners share maps to one status in both', () => {
    const seen = new Map<string, status>();
    for (const map of Object.values(STATUS_BY_OWNER)) {
      for (const [code, grpcStatus] of Object.entries(map)) {
        expect(seen.get(code) ?? grpcStatus, code).toBe(grpcStatus);
        seen.set(code, grpcStatus);
      }
    }
  });
});

describe('AgentExceptionFilter', () => {
  it('answers with the status, the message and the details trailer', () => {
    const log = { debug: () => undefined, error: () => undefined } as never;
    const host = { getArgByIndex: () => ({ getPath: () => '/agent.v1.AgentService/SetKsm' }) } as never;
    let sent: unknown;
    new AgentExceptionFilter(log).catch(new KnobBusyError('max_page_sharing', 3), host).subscribe({ error: (e: unknown) => (sent = e) });
    expect(sent).toMatchObject({ code: status.FAILED_PRECONDITION, details: new KnobBusyError('max_page_sharing', 3).message });
    expect(readStatusDetails(sent)?.errorInfo).toEqual({ reason: 'KNOB_BUSY', domain: 'agent.v1', metadata: {} });
  });
});
