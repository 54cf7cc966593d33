/**
 * cluster.v1.ClusterService: the scheduler-facing API (API.md). Thin: authentication by guard,
 * errors by the exception filter, work in the services.
 */
import { Controller, Inject, UseGuards } from '@nestjs/common';
import { GrpcMethod } from '@nestjs/microservices';
import type { Observable } from 'rxjs';
import type { cluster } from '@vmm/proto';
import { MigrationService } from '../migration/migration.service.js';
import { NodeService } from '../node/node.service.js';
import { VmService } from '../vm/vm.service.js';
import { ApiTokenGuard } from './api-token.guard.js';

const SERVICE = 'ClusterService';

@Controller()
@UseGuards(ApiTokenGuard)
export class ClusterGrpcController {
  constructor(
    @Inject(VmService) private readonly vms: VmService,
    @Inject(NodeService) private readonly nodes: NodeService,
    @Inject(MigrationService) private readonly migrations: MigrationService,
  ) {}

  @GrpcMethod(SERVICE, 'CreateVm')
  createVm(req: cluster.CreateVmRequest): Promise<cluster.Vm> {
    return this.vms.create(req);
  }

  @GrpcMethod(SERVICE, 'GetVm')
  getVm(req: cluster.GetVmRequest): Promise<cluster.Vm> {
    return this.vms.get(req.vmId);
  }

  @GrpcMethod(SERVICE, 'ListVms')
  listVms(req: cluster.ListVmsRequest): Promise<cluster.ListVmsResponse> {
    return this.vms.list(req);
  }

  @GrpcMethod(SERVICE, 'DeleteVm')
  async deleteVm(req: cluster.DeleteVmRequest): Promise<cluster.DeleteVmResponse> {
    await this.vms.delete(req.vmId);
    return {};
  }

  @GrpcMethod(SERVICE, 'ListNodes')
  async listNodes(): Promise<cluster.ListNodesResponse> {
    return { nodes: await this.nodes.list() };
  }

  @GrpcMethod(SERVICE, 'GetNode')
  getNode(req: cluster.GetNodeRequest): Promise<cluster.Node> {
    return this.nodes.get(req.nodeId);
  }

  @GrpcMethod(SERVICE, 'CordonNode')
  cordonNode(req: cluster.CordonNodeRequest): Promise<cluster.Node> {
    return this.nodes.setCordoned(req.nodeId, true);
  }

  @GrpcMethod(SERVICE, 'UncordonNode')
  uncordonNode(req: cluster.UncordonNodeRequest): Promise<cluster.Node> {
    return this.nodes.setCordoned(req.nodeId, false);
  }

  @GrpcMethod(SERVICE, 'SetNodeKsm')
  setNodeKsm(req: cluster.SetNodeKsmRequest): Promise<cluster.Node> {
    return this.nodes.setKsm(req.nodeId, req.knobs);
  }

  @GrpcMethod(SERVICE, 'MigrateVm')
  migrateVm(req: cluster.MigrateVmRequest): Promise<cluster.Migration> {
    return this.migrations.migrate(req);
  }

  @GrpcMethod(SERVICE, 'GetMigration')
  getMigration(req: cluster.GetMigrationRequest): Promise<cluster.Migration> {
    return this.migrations.get(req.migrationId);
  }

  @GrpcMethod(SERVICE, 'ListMigrations')
  listMigrations(req: cluster.ListMigrationsRequest): Promise<cluster.ListMigrationsResponse> {
    return this.migrations.list(req);
  }

  @GrpcMethod(SERVICE, 'WatchMigration')
  watchMigration(req: cluster.WatchMigrationRequest): Promise<Observable<cluster.Migration>> {
    return this.migrations.watch(req.migrationId);
  }

  @GrpcMethod(SERVICE, 'CancelMigration')
  cancelMigration(req: cluster.CancelMigrationRequest): Promise<cluster.Migration> {
    return this.migrations.cancel(req.migrationId);
  }

  @GrpcMethod(SERVICE, 'DrainNode')
  drainNode(req: cluster.DrainNodeRequest): Promise<cluster.DrainNodeResponse> {
    return this.migrations.drain(req.nodeId);
  }
}
