import { Controller, Inject } from '@nestjs/common';
import type { agent } from '@vmm/proto';
import { AgentServiceControllerMethods, type AgentServiceController } from '@vmm/proto/nest';
import type { Observable } from 'rxjs';
import { KsmService } from '../ksm/ksm.service.js';
import { MigrationService } from '../migration/migration.service.js';
import { VmManager } from '../vm/vm-manager.js';

/**
 * agent.v1.AgentService: the controller's handle on this node. Handlers stay thin; errors carry
 * stable codes that AgentExceptionFilter turns into gRPC statuses. The generated interface and
 * decorator bind every method to its rpc: a method renamed or missing in the .proto fails to compile.
 */
@Controller()
@AgentServiceControllerMethods()
export class AgentGrpcController implements AgentServiceController {
  // Explicit @Inject: DI must not depend on the transformer emitting decorator metadata (docs/stack.md G5).
  constructor(
    @Inject(VmManager) private readonly vms: VmManager,
    @Inject(MigrationService) private readonly migrations: MigrationService,
    @Inject(KsmService) private readonly ksm: KsmService,
  ) {}

  /** Answers once the guest runs (a QEMU guest has booted to its workload); a failed boot is its error. */
  async createVm(request: agent.CreateVmRequest): Promise<agent.VmStatus> {
    return this.vms.status(await this.vms.settle(this.vms.create(request.spec ?? undefined)));
  }

  deleteVm(request: agent.DeleteVmRequest): agent.DeleteVmResponse {
    this.migrations.abortForVm(request.vmId, 'the VM is being deleted');
    this.vms.delete(request.vmId);
    return {};
  }

  async setVmPower(request: agent.SetVmPowerRequest): Promise<agent.VmStatus> {
    return this.vms.status(await this.vms.settle(this.vms.setPower(request.vmId, request.fencingEpoch, request.action)));
  }

  listVms(_request: agent.ListVmsRequest): agent.ListVmsResponse {
    return { vms: this.vms.list() };
  }

  setKsm(request: agent.SetKsmRequest): Promise<agent.SetKsmResponse> {
    return this.ksm.configure(request.knobs);
  }

  prepareIncoming(request: agent.PrepareIncomingRequest): Promise<agent.PrepareIncomingResponse> {
    return this.migrations.prepareIncoming(request);
  }

  startOutgoing(request: agent.StartOutgoingRequest): Observable<agent.MigrationProgress> {
    return this.migrations.startOutgoing(request);
  }

  commitIncoming(request: agent.CommitIncomingRequest): Promise<agent.CommitIncomingResponse> {
    return this.migrations.commitIncoming(request);
  }

  releaseOutgoing(request: agent.ReleaseOutgoingRequest): agent.ReleaseOutgoingResponse {
    return this.migrations.releaseOutgoing(request);
  }

  abortMigration(request: agent.AbortMigrationRequest): agent.AbortMigrationResponse {
    return this.migrations.abortMigration(request);
  }

  updateOutgoing(request: agent.UpdateOutgoingRequest): Promise<agent.UpdateOutgoingResponse> {
    return this.migrations.updateOutgoing(request);
  }

  continueSwitchover(request: agent.ContinueSwitchoverRequest): agent.ContinueSwitchoverResponse {
    return this.migrations.continueSwitchover(request);
  }
}
