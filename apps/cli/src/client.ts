import {
  credentials,
  Metadata,
  type CallOptions,
  type ClientReadableStream,
  type ClientUnaryCall,
  type ServiceError,
} from '@grpc/grpc-js';
import { cluster } from '@vmm/proto';
import { UsageError } from './errors.js';

export interface ClientOptions {
  /** `host:port` of the controller. */
  server: string;
  /** Bearer token sent as `authorization` metadata; empty sends none. */
  token?: string;
  /** Deadline of each unary call, in milliseconds. Streams that follow a migration have none. */
  timeoutMs: number;
}

type Callback<T> = (error: ServiceError | null, response: T) => void;
type UnaryInvoker<T> = (metadata: Metadata, options: Partial<CallOptions>, callback: Callback<T>) => ClientUnaryCall;

/** Checks `host:port` (a name or IPv4, or a bracketed IPv6) before grpc-js gets a chance to retry it. */
export function parseServerAddress(value: string): string {
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$/.exec(value.trim());
  const port = match ? Number(match[2]) : NaN;
  if (!match || !(port > 0 && port < 65536)) {
    throw new UsageError(`--server must be host:port, got "${value}"`);
  }
  return `${match[1]}:${port}`;
}

/** The ClusterService methods the CLI uses, as promises, with auth metadata and deadlines applied. */
export class ClusterApi {
  private readonly client: cluster.ClusterServiceClient;

  constructor(private readonly options: ClientOptions) {
    this.client = new cluster.ClusterServiceClient(options.server, credentials.createInsecure());
  }

  close(): void {
    this.client.close();
  }

  listNodes(): Promise<cluster.ListNodesResponse> {
    return this.unary((md, o, cb) => this.client.listNodes({}, md, o, cb));
  }
  getNode(nodeId: string): Promise<cluster.Node> {
    return this.unary((md, o, cb) => this.client.getNode({ nodeId }, md, o, cb));
  }
  cordonNode(nodeId: string): Promise<cluster.Node> {
    return this.unary((md, o, cb) => this.client.cordonNode({ nodeId }, md, o, cb));
  }
  uncordonNode(nodeId: string): Promise<cluster.Node> {
    return this.unary((md, o, cb) => this.client.uncordonNode({ nodeId }, md, o, cb));
  }
  drainNode(nodeId: string): Promise<cluster.DrainNodeResponse> {
    return this.unary((md, o, cb) => this.client.drainNode({ nodeId }, md, o, cb));
  }
  setNodeKsm(nodeId: string, knobs: cluster.KsmKnobs): Promise<cluster.Node> {
    return this.unary((md, o, cb) => this.client.setNodeKsm({ nodeId, knobs }, md, o, cb));
  }

  createVm(request: cluster.CreateVmRequest): Promise<cluster.Vm> {
    return this.unary((md, o, cb) => this.client.createVm(request, md, o, cb));
  }
  getVm(vmId: string): Promise<cluster.Vm> {
    return this.unary((md, o, cb) => this.client.getVm({ vmId }, md, o, cb));
  }
  deleteVm(vmId: string): Promise<cluster.DeleteVmResponse> {
    return this.unary((md, o, cb) => this.client.deleteVm({ vmId }, md, o, cb));
  }
  listVmsPage(request: cluster.ListVmsRequest): Promise<cluster.ListVmsResponse> {
    return this.unary((md, o, cb) => this.client.listVms(request, md, o, cb));
  }
  /** Every VM (optionally of one node), following `next_page_token` to the end. */
  async listAllVms(nodeId = '', pageSize = 100): Promise<cluster.Vm[]> {
    const vms: cluster.Vm[] = [];
    let pageToken = '';
    do {
      const page = await this.listVmsPage({ nodeId, pageSize, pageToken });
      vms.push(...page.vms);
      pageToken = page.nextPageToken;
    } while (pageToken !== '');
    return vms;
  }

  migrateVm(request: cluster.MigrateVmRequest): Promise<cluster.Migration> {
    return this.unary((md, o, cb) => this.client.migrateVm(request, md, o, cb));
  }
  getMigration(migrationId: string): Promise<cluster.Migration> {
    return this.unary((md, o, cb) => this.client.getMigration({ migrationId }, md, o, cb));
  }
  cancelMigration(migrationId: string): Promise<cluster.Migration> {
    return this.unary((md, o, cb) => this.client.cancelMigration({ migrationId }, md, o, cb));
  }
  listMigrationsPage(request: cluster.ListMigrationsRequest): Promise<cluster.ListMigrationsResponse> {
    return this.unary((md, o, cb) => this.client.listMigrations(request, md, o, cb));
  }
  async listAllMigrations(vmId = '', pageSize = 100): Promise<cluster.Migration[]> {
    const migrations: cluster.Migration[] = [];
    let pageToken = '';
    do {
      const page = await this.listMigrationsPage({ vmId, pageSize, pageToken });
      migrations.push(...page.migrations);
      pageToken = page.nextPageToken;
    } while (pageToken !== '');
    return migrations;
  }
  /** No deadline: a migration may take minutes. The caller cancels the stream to stop following. */
  watchMigration(migrationId: string): ClientReadableStream<cluster.Migration> {
    return this.client.watchMigration({ migrationId }, this.metadata());
  }

  private metadata(): Metadata {
    const md = new Metadata();
    if (this.options.token) md.set('authorization', `Bearer ${this.options.token}`);
    return md;
  }

  private unary<T>(invoke: UnaryInvoker<T>): Promise<T> {
    return new Promise((resolve, reject) => {
      const deadline = Date.now() + this.options.timeoutMs;
      invoke(this.metadata(), { deadline }, (error, response) => (error ? reject(error) : resolve(response)));
    });
  }
}
