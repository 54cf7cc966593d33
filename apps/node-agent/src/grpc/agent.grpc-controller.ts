import { Controller, Inject } from '@nestjs/common';
import { GrpcMethod } from '@nestjs/microservices';
import type { agent } from '@vmm/proto';
import type { Observable } from 'rxjs';
import { KsmService } from '../ksm/ksm.service.js';
import { MigrationService } from '../migration/migration.service.js';
import { VmManager } from '../vm/vm-manager.js';

const SERVICE = 'AgentService';

/**
 * agent.v1.AgentService: the controller's handle on this node. Handlers stay thin; errors carry
 * stable codes that AgentExceptionFilter turns into gRPC statuses.
 */
@Controller()
export class AgentGrpcController {
  // Explicit @Inject: DI must not depend on the transformer emitting decorator metadata (STACK.md G5).
  constructor(
    @Inject(VmManager) private readonly vms: VmManager,
    @Inject(MigrationService) private readonly migrations: MigrationService,
    @Inject(KsmService) private readonly ksm: KsmService,
  ) {}

  @GrpcMethod(SERVICE, 'CreateVm')
  createVm(request: agent.CreateVmRequest): agent.VmStatus {
    return this.vms.status(this.vms.create(request.spec ?? undefined));
  }

  @GrpcMethod(SERVICE, 'DeleteVm')
  deleteVm(request: agent.DeleteVmRequest): agent.DeleteVmResponse {
    this.migrations.abortForVm(request.vmId, 'the VM is being deleted');
    this.vms.delete(request.vmId);
    return {};
  }

  @GrpcMethod(SERVICE, 'ListVms')
  listVms(_request: agent.ListVmsRequest): agent.ListVmsResponse {
    return { vms: this.vms.list() };
  }

  @GrpcMethod(SERVICE, 'SetKsm')
  setKsm(request: agent.SetKsmRequest): agent.SetKsmResponse {
    return this.ksm.configure(request.knobs);
  }

  @GrpcMethod(SERVICE, 'PrepareIncoming')
  prepareIncoming(request: agent.PrepareIncomingRequest): Promise<agent.PrepareIncomingResponse> {
    return this.migrations.prepareIncoming(request);
  }

  @GrpcMethod(SERVICE, 'StartOutgoing')
  startOutgoing(request: agent.StartOutgoingRequest): Observable<agent.MigrationProgress> {
    return this.migrations.startOutgoing(request);
  }

  @GrpcMethod(SERVICE, 'CommitIncoming')
  commitIncoming(request: agent.CommitIncomingRequest): Promise<agent.CommitIncomingResponse> {
    return this.migrations.commitIncoming(request);
  }

  @GrpcMethod(SERVICE, 'ReleaseOutgoing')
  releaseOutgoing(request: agent.ReleaseOutgoingRequest): agent.ReleaseOutgoingResponse {
    return this.migrations.releaseOutgoing(request);
  }

  @GrpcMethod(SERVICE, 'AbortMigration')
  abortMigration(request: agent.AbortMigrationRequest): agent.AbortMigrationResponse {
    return this.migrations.abortMigration(request);
  }
}
