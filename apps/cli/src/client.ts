import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { credentials, Metadata, type ChannelCredentials, status, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { cluster, unaryCall, type UnaryMethodName, type UnaryRequest, type UnaryResponse } from '@vmm/proto';
import { UsageError } from './errors.js';

export interface ClientOptions {
  /** `host:port` of the controller. */
  server: string;
  /** Bearer token sent as `authorization` metadata; empty sends none. */
  token?: string;
  /** TLS (a controller with --api-tls): the CA to verify it with, and optionally a client certificate. */
  tls?: { ca: string; cert?: string; key?: string };
  /** Deadline of each unary call, in milliseconds. Streams that follow a migration have none. */
  timeoutMs: number;
}

type Client = cluster.ClusterServiceClient;

export type VmLifecycleAction = 'pause' | 'resume' | 'stop' | 'start';

/** How a changing call is retried (callOnce): the codes after which its outcome is unknown or pending. */
const RETRIED_CODES: ReadonlySet<number> = new Set([status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.ABORTED]);
const RETRY_ATTEMPTS = 3;
const RETRY_DELAY_MS = 500;

/** Checks `host:port` (a name or IPv4, or a bracketed IPv6) before grpc-js gets a chance to retry it. */
export function parseServerAddress(value: string): string {
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$/.exec(value.trim());
  const port = match ? Number(match[2]) : NaN;
  if (!match || !(port > 0 && port < 65536)) {
    throw new UsageError(`--server must be host:port, got "${value}"`);
  }
  return `${match[1]}:${port}`;
}

function readFile(file: string, flag: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new UsageError(`${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

function channelCredentials(tls: ClientOptions['tls']): ChannelCredentials {
  if (!tls) return credentials.createInsecure();
  const ca = readFile(tls.ca, '--ca');
  return tls.cert && tls.key ? credentials.createSsl(ca, readFile(tls.key, '--key'), readFile(tls.cert, '--cert')) : credentials.createSsl(ca);
}

/** The ClusterService methods the CLI uses, as promises, with auth metadata and deadlines applied. */
export class ClusterApi {
  private readonly client: cluster.ClusterServiceClient;

  constructor(private readonly options: ClientOptions) {
    this.client = new cluster.ClusterServiceClient(options.server, channelCredentials(options.tls));
  }

  close(): void {
    this.client.close();
  }

  /** Every node, following `next_page_token` to the end. */
  async listNodes(): Promise<cluster.ListNodesResponse> {
    const nodes: cluster.Node[] = [];
    let pageToken = '';
    // The first page's revision: read before any page, so a watch from it misses nothing.
    let revision: number | undefined;
    do {
      const page = await this.call('listNodes', { pageSize: 0, pageToken });
      revision ??= page.revision;
      nodes.push(...page.nodes);
      pageToken = page.nextPageToken;
    } while (pageToken !== '');
    return { nodes, nextPageToken: '', revision: revision ?? 0 };
  }
  getVersion(): Promise<cluster.GetVersionResponse> {
    return this.call('getVersion', {});
  }
  getNode(nodeId: string): Promise<cluster.Node> {
    return this.call('getNode', { nodeId });
  }
  cordonNode(nodeId: string): Promise<cluster.Node> {
    return this.call('cordonNode', { nodeId });
  }
  uncordonNode(nodeId: string): Promise<cluster.Node> {
    return this.call('uncordonNode', { nodeId });
  }
  drainNode(nodeId: string): Promise<cluster.DrainNodeResponse> {
    return this.callOnce('drainNode', { nodeId, requestId: '' });
  }
  setNodeKsm(nodeId: string, knobs: cluster.KsmKnobs): Promise<cluster.Node> {
    return this.call('setNodeKsm', { nodeId, knobs });
  }
  labelNode(request: cluster.LabelNodeRequest): Promise<cluster.Node> {
    return this.call('labelNode', request);
  }
  listImages(): Promise<cluster.ListImagesResponse> {
    return this.call('listImages', {});
  }

  createVm(request: cluster.CreateVmRequest): Promise<cluster.Vm> {
    return this.callOnce('createVm', request);
  }
  getVm(vmId: string): Promise<cluster.Vm> {
    return this.call('getVm', { vmId });
  }
  /** PauseVm, ResumeVm, StopVm or StartVm: each refused (FAILED_PRECONDITION) where the VM's state does not allow it. */
  vmLifecycle(action: VmLifecycleAction, vmId: string): Promise<cluster.Vm> {
    return this.call(`${action}Vm`, { vmId });
  }
  deleteVm(vmId: string): Promise<cluster.DeleteVmResponse> {
    return this.callOnce('deleteVm', { vmId, requestId: '' });
  }
  migrateVm(request: Omit<cluster.MigrateVmRequest, 'requestId'>): Promise<cluster.Migration> {
    return this.callOnce('migrateVm', { ...request, requestId: '' });
  }
  listVmsPage(request: Partial<cluster.ListVmsRequest>): Promise<cluster.ListVmsResponse> {
    return this.call('listVms', cluster.ListVmsRequest.fromPartial(request));
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

  getMigration(migrationId: string): Promise<cluster.Migration> {
    return this.call('getMigration', { migrationId });
  }
  cancelMigration(migrationId: string): Promise<cluster.Migration> {
    return this.call('cancelMigration', { migrationId });
  }
  updateMigration(request: cluster.UpdateMigrationRequest): Promise<cluster.Migration> {
    return this.call('updateMigration', request);
  }
  listMigrationsPage(request: Partial<cluster.ListMigrationsRequest>): Promise<cluster.ListMigrationsResponse> {
    return this.call('listMigrations', cluster.ListMigrationsRequest.fromPartial(request));
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

  /** No deadline: a watch runs until the caller cancels the stream. */
  watchEvents(request: cluster.WatchEventsRequest): ClientReadableStream<cluster.Event> {
    return this.client.watchEvents(request, this.metadata());
  }

  private metadata(): Metadata {
    const md = new Metadata();
    if (this.options.token) md.set('authorization', `Bearer ${this.options.token}`);
    return md;
  }

  /**
   * A call that changes something, made safe to retry: it carries a fresh request_id (unless the
   * request names one), and a call whose answer was lost (UNAVAILABLE, DEADLINE_EXCEEDED) or that met
   * its own first attempt still running (ABORTED) is made again with the same id, which the controller
   * carries out once.
   */
  private async callOnce<K extends 'createVm' | 'deleteVm' | 'migrateVm' | 'drainNode'>(
    method: K,
    request: UnaryRequest<Client[K]>,
  ): Promise<UnaryResponse<Client[K]>> {
    const withId = { ...request, requestId: request.requestId || randomUUID() } as UnaryRequest<Client[K]>;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.call(method, withId);
      } catch (error) {
        const code = (error as ServiceError).code;
        if (attempt >= RETRY_ATTEMPTS || !RETRIED_CODES.has(code)) throw error;
        await new Promise((r) => setTimeout(r, RETRY_DELAY_MS * attempt));
      }
    }
  }

  private call<K extends UnaryMethodName<Client>>(method: K, request: UnaryRequest<Client[K]>): Promise<UnaryResponse<Client[K]>> {
    return unaryCall(this.client, method, request, { metadata: this.metadata(), timeoutMs: this.options.timeoutMs });
  }
}
