import { Server, ServerCredentials, status } from '@grpc/grpc-js';
import { agent } from '@vmm/proto';

/**
 * A stand-in controller for tests: a plain grpc-js RegistryService that records what agents send and
 * acks every report (with `leaseMs` and whatever `directivesFor` returns).
 */
export class FakeRegistry {
  readonly registrations: agent.RegisterRequest[] = [];
  readonly reports: agent.NodeReport[] = [];
  /** The lease every ack grants; 0 = acks carry no lease. */
  leaseMs = 60_000;
  /** When false, reports are not answered (a controller that stopped acking). */
  acking = true;
  directivesFor: (report: agent.NodeReport) => agent.Directive[] = () => [];
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
      streamReports: (call) => {
        call.on('data', (request: agent.StreamReportsRequest) => {
          const report = request.report;
          if (!report) return;
          this.reports.push(report);
          if (this.acking) call.write({ seq: report.seq, leaseMs: this.leaseMs, directives: this.directivesFor(report) });
        });
        call.on('end', () => {
          this.streamsEnded++;
          call.end();
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
