/** A promisified ClusterService client for specs, with an optional bearer token. */
import { credentials, Metadata } from '@grpc/grpc-js';
import { cluster, promiseClient, type PromiseClient } from '@vmm/proto';
import { FINAL_PHASES as MODEL_FINAL_PHASES, toProtoPhase } from '@vmm/migration/phase';

/** The phases after which a migration no longer changes (the phase model's final set, as proto names). */
export const FINAL_PHASES: ReadonlySet<string> = new Set<string>(MODEL_FINAL_PHASES.map(toProtoPhase));

export class TestClusterClient {
  readonly client: cluster.ClusterServiceClient;
  private readonly api: PromiseClient<cluster.ClusterServiceClient>;

  constructor(address: string, token: string | null) {
    this.client = new cluster.ClusterServiceClient(address, credentials.createInsecure());
    this.api = promiseClient(this.client, cluster.ClusterServiceService, cluster, () => {
      const metadata = new Metadata();
      if (token) metadata.set('authorization', `Bearer ${token}`);
      return { metadata, timeoutMs: 30_000 };
    });
  }

  /** The generated method named `method`, as a promise (proto's one promise helper). */
  private call<Req, Res>(method: keyof PromiseClient<cluster.ClusterServiceClient>, req: Req): Promise<Res> {
    return (this.api[method] as unknown as (r: Req) => Promise<Res>)(req);
  }

  createVm = (r: Partial<cluster.CreateVmRequest>) => this.call<cluster.CreateVmRequest, cluster.Vm>('createVm', cluster.CreateVmRequest.fromPartial(r));
  getVm = (vmId: string) => this.call<cluster.GetVmRequest, cluster.Vm>('getVm', { vmId });
  listVms = (r: Partial<cluster.ListVmsRequest> = {}) => this.call<cluster.ListVmsRequest, cluster.ListVmsResponse>('listVms', cluster.ListVmsRequest.fromPartial(r));
  deleteVm = (vmId: string) => this.call<cluster.DeleteVmRequest, cluster.DeleteVmResponse>('deleteVm', { vmId, requestId: '' });
  listNodes = () => this.call<cluster.ListNodesRequest, cluster.ListNodesResponse>('listNodes', cluster.ListNodesRequest.fromPartial({}));
  getNode = (nodeId: string) => this.call<cluster.GetNodeRequest, cluster.Node>('getNode', { nodeId });
  cordonNode = (nodeId: string) => this.call<cluster.CordonNodeRequest, cluster.Node>('cordonNode', { nodeId });
  uncordonNode = (nodeId: string) => this.call<cluster.UncordonNodeRequest, cluster.Node>('uncordonNode', { nodeId });
  setNodeKsm = (nodeId: string, knobs: cluster.KsmKnobs) => this.call<cluster.SetNodeKsmRequest, cluster.Node>('setNodeKsm', { nodeId, knobs });
  migrateVm = (r: Partial<cluster.MigrateVmRequest>) => this.call<cluster.MigrateVmRequest, cluster.Migration>('migrateVm', cluster.MigrateVmRequest.fromPartial(r));
  getMigration = (migrationId: string) => this.call<cluster.GetMigrationRequest, cluster.Migration>('getMigration', { migrationId });
  listMigrations = (r: Partial<cluster.ListMigrationsRequest> = {}) => this.call<cluster.ListMigrationsRequest, cluster.ListMigrationsResponse>('listMigrations', cluster.ListMigrationsRequest.fromPartial(r));
  drainNode = (nodeId: string) => this.call<cluster.DrainNodeRequest, cluster.DrainNodeResponse>('drainNode', { nodeId, requestId: '' });

  close(): void {
    this.client.close();
  }
}

