/**
 * A RegistryService between the agents and the controller: it forwards Register and StreamReports
 * unchanged and hands each NodeReport to `onReport` on its way through. Tests point the agents'
 * CONTROLLER_ADDRESS at it to see what agents report beyond what the public API shows (a VM's
 * writes counter, a node's full KSM report).
 */
import { credentials, Server, ServerCredentials, type ChannelCredentials, type Metadata, type ServerDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { agent } from '@vmm/proto';
import { certFiles } from '@vmm/local-cluster/cluster-env';
import { freePort } from '@vmm/local-cluster/ports';
import { callerOf, mutualTlsChannelCredentials, mutualTlsServerCredentials, readTlsMaterial } from '@vmm/tls';

/**
 * Over mutual TLS the relay is the man in the middle that TLS keeps out, so it needs the cluster's
 * keys: it serves with the controller's certificate and calls the controller with the certificate of
 * the node that called it (each node may act only as itself).
 */
export interface RelayTls {
  certsDir: string;
}

export class RegistryRelay {
  private constructor(
    private readonly server: Server,
    private readonly upstreams: Map<string, agent.RegistryServiceClient>,
    readonly address: string,
  ) {}

  /** Listens on a free loopback port and forwards to the controller at `controllerAddress` (connected lazily). */
  static async start(controllerAddress: string, onReport: (report: agent.NodeReport) => void, tls?: RelayTls): Promise<RegistryRelay> {
    const upstreams = new Map<string, agent.RegistryServiceClient>();
    const upstreamFor = (call: Parameters<typeof callerOf>[0]): agent.RegistryServiceClient => {
      const identity = callerOf(call).identity;
      const owner = identity?.role === 'node' ? identity.nodeId : '';
      let client = upstreams.get(owner);
      if (!client) {
        const creds: ChannelCredentials = tls && owner ? mutualTlsChannelCredentials(readTlsMaterial(certFiles(tls.certsDir, owner))) : credentials.createInsecure();
        client = new agent.RegistryServiceClient(controllerAddress, creds);
        upstreams.set(owner, client);
      }
      return client;
    };
    const server = new Server();
    const address = `127.0.0.1:${await freePort()}`;
    server.addService(agent.RegistryServiceService, {
      register: (
        call: { request: agent.RegisterRequest; metadata: Metadata } & Parameters<typeof callerOf>[0],
        callback: (e: ServiceError | null, r?: agent.RegisterResponse) => void,
      ) => upstreamFor(call).register(call.request, call.metadata, { deadline: Date.now() + 10_000 }, (err, res) => callback(err, res)),
      streamReports: (call: ServerDuplexStream<agent.StreamReportsRequest, agent.ReportAck>) => {
        const out = upstreamFor(call).streamReports(call.metadata);
        out.on('data', (ack: agent.ReportAck) => call.write(ack));
        out.on('end', () => call.end());
        out.on('error', (err: ServiceError) => call.emit('error', { code: err.code, details: err.details }));
        call.on('data', (msg: agent.StreamReportsRequest) => {
          if (msg.report) onReport(msg.report);
          out.write(msg);
        });
        call.on('end', () => out.end());
        call.on('cancelled', () => out.cancel());
        call.on('error', () => out.cancel());
      },
    });
    const serverCredentials = tls ? mutualTlsServerCredentials(readTlsMaterial(certFiles(tls.certsDir, 'controller'))) : ServerCredentials.createInsecure();
    await new Promise<void>((resolve, reject) => server.bindAsync(address, serverCredentials, (err) => (err ? reject(err) : resolve())));
    return new RegistryRelay(server, upstreams, address);
  }

  async stop(): Promise<void> {
    for (const upstream of this.upstreams.values()) upstream.close();
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    this.server.forceShutdown();
  }
}
