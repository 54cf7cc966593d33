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
  RevisionCompactedError,
  UnauthenticatedError,
  VmBusyError,
  VmNameTakenError,
  VmNotFoundError,
} from './errors.js';
import { readStatusDetails } from '@vmm/proto';
import { GrpcExceptionFilter, toRichError } from './grpc/grpc-exception.filter.js';

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
    [new RevisionCompactedError(3, 10), status.OUT_OF_RANGE],
  ])('%s → %i', (error, code) => {
    expect(grpcStatusOf(error)).toBe(code);
  });

  it('messages name the field', () => {
    expect(new InvalidArgumentError('memory_mib', 'must be greater than 0').message).toBe('memory_mib: must be greater than 0');
  });
});

describe('toRichError (the exception filter)', () => {
  it('maps domain errors with their message, their code as the reason and their context as metadata', () => {
    expect(toRichError(new VmNotFoundError('vm-1'))).toEqual({
      code: status.NOT_FOUND,
      message: 'vm "vm-1" not found',
      reason: 'VM_NOT_FOUND',
      domain: 'cluster.v1',
      metadata: { vmId: 'vm-1' },
      fieldViolations: [],
    });
  });

  it('names the bad field of INVALID_ARGUMENT (BadRequest)', () => {
    expect(toRichError(new InvalidArgumentError('workload.kind', 'must be set')).fieldViolations).toEqual([
      { field: 'workload.kind', description: 'must be set' },
    ]);
  });

  it("carries an agent's refusal: the agent's reason in metadata, its fields when it passes INVALID_ARGUMENT through", () => {
    const busy = toRichError(new AgentRejectedError('node-1', status.FAILED_PRECONDITION, 'SetKsm: busy', 'KNOB_BUSY'));
    expect(busy).toMatchObject({ code: status.FAILED_PRECONDITION, reason: 'AGENT_REJECTED', metadata: { nodeId: 'node-1', agentReason: 'KNOB_BUSY' } });
    const field = { field: 'knobs.pages_to_scan', description: 'must be an integer in 1..4294967295' };
    expect(toRichError(new AgentRejectedError('node-1', status.INVALID_ARGUMENT, 'SetKsm: bad', 'INVALID_KNOB', [field])).fieldViolations).toEqual([field]);
  });

  it('answers in the domain of the service called', () => {
    expect(toRichError(new NodeNotFoundError('n'), 'agent.v1').domain).toBe('agent.v1');
  });

  it('passes an RpcException carrying a gRPC code through, with the status name as the reason', () => {
    expect(toRichError(new RpcException({ code: status.ABORTED, message: 'x' }))).toMatchObject({ code: status.ABORTED, reason: 'ABORTED' });
  });

  it('turns anything else into INTERNAL, never UNKNOWN, and logs it', () => {
    const logged: unknown[] = [];
    const logger = { error: (o: unknown) => logged.push(o) } as never;
    const payload = toRichError(new TypeError('boom'), 'cluster.v1', logger);
    expect(payload).toMatchObject({ code: status.INTERNAL, reason: 'INTERNAL' });
    expect(payload.message).not.toContain('boom');
    expect(logged).toHaveLength(1);
  });

  it('the filter sends the details trailer, in the domain of the method path', () => {
    const host = { getArgByIndex: () => ({ getPath: () => '/agent.v1.RegistryService/Register' }) } as never;
    let sent: unknown;
    new GrpcExceptionFilter({ error: () => undefined } as never).catch(new InvalidArgumentError('node_id', 'empty'), host).subscribe({ error: (e: unknown) => (sent = e) });
    expect(sent).toMatchObject({ code: status.INVALID_ARGUMENT, details: 'node_id: empty' });
    const details = readStatusDetails(sent);
    expect(details?.errorInfo).toMatchObject({ reason: 'INVALID_ARGUMENT', domain: 'agent.v1' });
    expect(details?.badRequest?.fieldViolations.map((v) => v.field)).toEqual(['node_id']);
  });
});
