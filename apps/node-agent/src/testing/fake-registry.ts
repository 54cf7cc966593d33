import { Server, ServerCredentials, status } from '@grpc/grpc-js';
import { agent } from '@vmm/proto';

/** A stand-in controller for tests: a plain grpc-js RegistryService that records what agents send. */
export class FakeRegistry {
  readonly registrations: agent.RegisterRequest[] = [];
  readonly reports: agent.NodeReport[] = [];
  /** Report streams the agent half-closed (a clean end). */
  streamsEnded = 0;
  private server: Server | undefined;

  constructor(
    readonly port: number,
    private readonly reportIntervalMs = 50,
    /** When set, Register fails with this status (a controller that is up but refusing). */
    public failRegisterWith?: status,
  ) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const server = new Server();
    server.addService(agent.RegistryServiceService, {
      register: (call, callback) => {
        if (this.failRegisterWith !== undefined) {
          callback({ code: this.failRegisterWith, details: 'refused by the fake' });
          return;
        }
        this.registrations.push(call.request);
        callback(null, { nodeId: call.request.nodeId, reportIntervalMs: this.reportIntervalMs });
      },
      streamReports: (call, callback) => {
        call.on('data', (request: agent.StreamReportsRequest) => {
          if (request.report) this.reports.push(request.report);
        });
        call.on('end', () => {
          this.streamsEnded++;
          callback(null, {});
        });
        call.on('error', () => {});
      },
    } satisfies agent.RegistryServiceServer);
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(this.address, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    this.server = server;
  }

  /** Drops every connection at once, like a controller process dying. */
  kill(): void {
    this.server?.forceShutdown();
    this.server = undefined;
  }
}
