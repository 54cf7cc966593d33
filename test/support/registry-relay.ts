/**
 * A RegistryService between the agents and the controller: it forwards Register and StreamReports
 * unchanged and hands each NodeReport to `onReport` on its way through. Tests point the agents'
 * CONTROLLER_ADDRESS at it to see what agents report beyond what the public API shows (a VM's
 * writes counter, a node's full KSM report).
 */
import { credentials, Server, ServerCredentials, type Metadata, type ServerDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { agent } from '@vmm/proto';
import { freePort } from '@vmm/local-cluster/ports';

export class RegistryRelay {
  private constructor(
    private readonly server: Server,
    private readonly upstream: agent.RegistryServiceClient,
    readonly address: string,
  ) {}

  /** Listens on a free loopback port and forwards to the controller at `controllerAddress` (connected lazily). */
  static async start(controllerAddress: string, onReport: (report: agent.NodeReport) => void): Promise<RegistryRelay> {
    const upstream = new agent.RegistryServiceClient(controllerAddress, credentials.createInsecure());
    const server = new Server();
    const address = `127.0.0.1:${await freePort()}`;
    server.addService(agent.RegistryServiceService, {
      register: (
        call: { request: agent.RegisterRequest; metadata: Metadata },
        callback: (e: ServiceError | null, r?: agent.RegisterResponse) => void,
      ) => upstream.register(call.request, call.metadata, { deadline: Date.now() + 10_000 }, (err, res) => callback(err, res)),
      streamReports: (call: ServerDuplexStream<agent.StreamReportsRequest, agent.ReportAck>) => {
        const out = upstream.streamReports(call.metadata);
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
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(address, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    return new RegistryRelay(server, upstream, address);
  }

  async stop(): Promise<void> {
    this.upstream.close();
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    this.server.forceShutdown();
  }
}
