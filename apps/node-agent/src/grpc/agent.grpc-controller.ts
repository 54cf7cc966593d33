import { Controller, Inject } from '@nestjs/common';
import { GrpcMethod } from '@nestjs/microservices';
import type { agent } from '@vmm/proto';
import type { Observable } from 'rxjs';
import { NotImplementedError } from '../errors.js';
import { VmManager } from '../vm/vm-manager.js';

const SERVICE = 'AgentService';

/**
 * agent.v1.AgentService: the controller's handle on this node. Handlers stay thin; errors carry
 * stable codes that AgentExceptionFilter turns into gRPC statuses.
 */
@Controller()
export class AgentGrpcController {
  // Explicit @Inject: DI must not depend on the transformer emitting decorator metadata (STACK.md G5).
  constructor(@Inject(VmManager) private readonly vms: VmManager) {}

  @GrpcMethod(SERVICE, 'CreateVm')
  createVm(request: agent.CreateVmRequest): agent.VmStatus {
    return this.vms.status(this.vms.create(request.spec ?? undefined));
  }

  @GrpcMethod(SERVICE, 'DeleteVm')
  deleteVm(request: agent.DeleteVmRequest): agent.DeleteVmResponse {
    this.vms.delete(request.vmId);
    return {};
  }

  @GrpcMethod(SERVICE, 'ListVms')
  listVms(_request: agent.ListVmsRequest): agent.ListVmsResponse {
    return { vms: this.vms.list() };
  }

  @GrpcMethod(SERVICE, 'SetKsm')
  setKsm(_request: agent.SetKsmRequest): agent.SetKsmResponse {
    throw new NotImplementedError('SetKsm');
  }

  @GrpcMethod(SERVICE, 'PrepareIncoming')
  prepareIncoming(_request: agent.PrepareIncomingRequest): agent.PrepareIncomingResponse {
    throw new NotImplementedError('PrepareIncoming');
  }

  @GrpcMethod(SERVICE, 'StartOutgoing')
  startOutgoing(_request: agent.StartOutgoingRequest): Observable<agent.MigrationProgress> {
    throw new NotImplementedError('StartOutgoing');
  }

  @GrpcMethod(SERVICE, 'CommitIncoming')
  commitIncoming(_request: agent.CommitIncomingRequest): agent.CommitIncomingResponse {
    throw new NotImplementedError('CommitIncoming');
  }

  @GrpcMethod(SERVICE, 'ReleaseOutgoing')
  releaseOutgoing(_request: agent.ReleaseOutgoingRequest): agent.ReleaseOutgoingResponse {
    throw new NotImplementedError('ReleaseOutgoing');
  }

  @GrpcMethod(SERVICE, 'AbortMigration')
  abortMigration(_request: agent.AbortMigrationRequest): agent.AbortMigrationResponse {
    throw new NotImplementedError('AbortMigration');
  }
}
