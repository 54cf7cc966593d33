/**
 * cluster.v1.ClusterService: the scheduler-facing API (docs/api.md). Thin: authentication by guard,
 * errors by the exception filter, work in the services. The generated interface and decorator bind
 * every method to its rpc: a method renamed or missing in the .proto fails to compile.
 */
import type { Metadata } from '@grpc/grpc-js';
import { Controller, Inject, UseGuards } from '@nestjs/common';
import { defer, mergeAll, type Observable } from 'rxjs';
import { cluster } from '@vmm/proto';
import { ClusterServiceControllerMethods, type ClusterServiceController } from '@vmm/proto/nest';
import { MigrationUpdater } from '../migration/migration-update.service.js';
import { EventsService } from '../events/events.service.js';
import { MigrationService } from '../migration/migration.service.js';
import { NodeService } from '../node/node.service.js';
import { ImageService } from '../vm/image.service.js';
import { VmService } from '../vm/vm.service.js';
import { ApiTokenGuard } from './api-token.guard.js';
import { IdempotentCalls } from './idempotent-calls.js';
import { versionInfo } from './version.js';
import { WatchLimits } from './watch-limits.js';
import { CONFIG, type ControllerConfig } from '../config.js';

@Controller()
@UseGuards(ApiTokenGuard)
@ClusterServiceControllerMethods()
export class ClusterGrpcController implements ClusterServiceController {
  constructor(
    @Inject(VmService) private readonly vms: VmService,
    @Inject(NodeService) private readonly nodes: NodeService,
    @Inject(MigrationService) private readonly migrations: MigrationService,
    @Inject(IdempotentCalls) private readonly idempotent: IdempotentCalls,
    @Inject(WatchLimits) private readonly watches: WatchLimits,
    @Inject(ImageService) private readonly images: ImageService,
    @Inject(MigrationUpdater) private readonly updater: MigrationUpdater,
    @Inject(EventsService) private readonly events: EventsService,
    @Inject(CONFIG) private readonly config: ControllerConfig,
  ) {}

  createVm(req: cluster.CreateVmRequest): Promise<cluster.Vm> {
    return this.idempotent.run('CreateVm', req, cluster.CreateVmRequest, cluster.Vm, () => this.vms.create(req));
  }

  getVm(req: cluster.GetVmRequest): Promise<cluster.Vm> {
    return this.vms.get(req.vmId);
  }

  async listVms(req: cluster.ListVmsRequest): Promise<cluster.ListVmsResponse> {
    const revision = await this.events.revision();
    return { ...(await this.vms.list(req)), revision };
  }

  deleteVm(req: cluster.DeleteVmRequest): Promise<cluster.DeleteVmResponse> {
    return this.idempotent.run('DeleteVm', req, cluster.DeleteVmRequest, cluster.DeleteVmResponse, async () => {
      await this.vms.delete(req.vmId);
      return {};
    });
  }

  async listNodes(req: cluster.ListNodesRequest): Promise<cluster.ListNodesResponse> {
    const revision = await this.events.revision();
    return { ...(await this.nodes.listPage(req)), revision };
  }

  getNode(req: cluster.GetNodeRequest): Promise<cluster.Node> {
    return this.nodes.get(req.nodeId);
  }

  cordonNode(req: cluster.CordonNodeRequest): Promise<cluster.Node> {
    return this.nodes.setCordoned(req.nodeId, true);
  }

  uncordonNode(req: cluster.UncordonNodeRequest): Promise<cluster.Node> {
    return this.nodes.setCordoned(req.nodeId, false);
  }

  setNodeKsm(req: cluster.SetNodeKsmRequest): Promise<cluster.Node> {
    return this.nodes.setKsm(req.nodeId, req.knobs);
  }

  migrateVm(req: cluster.MigrateVmRequest): Promise<cluster.Migration> {
    return this.idempotent.run('MigrateVm', req, cluster.MigrateVmRequest, cluster.Migration, () => this.migrations.migrate(req));
  }

  getMigration(req: cluster.GetMigrationRequest): Promise<cluster.Migration> {
    return this.migrations.get(req.migrationId);
  }

  async listMigrations(req: cluster.ListMigrationsRequest): Promise<cluster.ListMigrationsResponse> {
    const revision = await this.events.revision();
    return { ...(await this.migrations.list(req)), revision };
  }

  /** A server stream: an unknown id errors the stream (through the exception filter like any call). */
  watchMigration(req: cluster.WatchMigrationRequest, _metadata?: Metadata, call?: { getPeer(): string }): Observable<cluster.Migration> {
    return this.watches.guard(call?.getPeer(), () => defer(() => this.migrations.watch(req.migrationId)).pipe(mergeAll()));
  }

  cancelMigration(req: cluster.CancelMigrationRequest): Promise<cluster.Migration> {
    return this.migrations.cancel(req.migrationId);
  }

  drainNode(req: cluster.DrainNodeRequest): Promise<cluster.DrainNodeResponse> {
    return this.idempotent.run('DrainNode', req, cluster.DrainNodeRequest, cluster.DrainNodeResponse, () => this.migrations.drain(req.nodeId));
  }

  async getVersion(): Promise<cluster.GetVersionResponse> {
    return versionInfo(this.config);
  }

  pauseVm(req: cluster.PauseVmRequest): Promise<cluster.Vm> {
    return this.vms.lifecycle(req.vmId, 'pause');
  }

  resumeVm(req: cluster.ResumeVmRequest): Promise<cluster.Vm> {
    return this.vms.lifecycle(req.vmId, 'resume');
  }

  stopVm(req: cluster.StopVmRequest): Promise<cluster.Vm> {
    return this.vms.lifecycle(req.vmId, 'stop');
  }

  startVm(req: cluster.StartVmRequest): Promise<cluster.Vm> {
    return this.vms.lifecycle(req.vmId, 'start');
  }

  listImages(): Promise<cluster.ListImagesResponse> {
    return this.images.list();
  }

  labelNode(req: cluster.LabelNodeRequest): Promise<cluster.Node> {
    return this.nodes.label(req.nodeId, req.labels ?? {}, req.remove ?? []);
  }

  updateMigration(req: cluster.UpdateMigrationRequest): Promise<cluster.Migration> {
    return this.updater.update(req);
  }

  /** A server stream like WatchMigration: it holds a watch slot; REVISION_COMPACTED ends it (OUT_OF_RANGE). */
  watchEvents(req: cluster.WatchEventsRequest, _metadata?: Metadata, call?: { getPeer(): string }): Observable<cluster.Event> {
    return this.watches.guard(call?.getPeer(), () => this.events.watch(req));
  }
}
