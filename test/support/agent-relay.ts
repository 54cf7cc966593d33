/**
 * An AgentService between the controller and one agent: real gRPC over real sockets on both sides,
 * forwarding every call unchanged unless a test's hook says otherwise. A test points the agent's
 * AGENT_ADVERTISE_ADDRESS (its Node.address) at the relay, so that the controller's calls to that node
 * pass through it, and injects what a network or a dying process would do at an exact step:
 * - `onUnary(method, request)` may fail a call (the agent never sees it), or forward it and lose the
 *   answer (the agent applied it, the controller hears UNAVAILABLE), or hold it until a gate opens;
 * - `onProgress(message)` may hold a StartOutgoing progress message (the switch-over) until a gate opens.
 * The data connection between agents does not pass through the relay.
 */
import { credentials, Metadata, Server, ServerCredentials, status, type ServerWritableStream, type ServiceError } from '@grpc/grpc-js';
import { agent } from '@vmm/proto';
import { freePort } from '@vmm/local-cluster/ports';

export type RelayAction =
  | { kind: 'forward' }
  /** Answer the caller with this status; the agent never sees the call. */
  | { kind: 'fail'; code: status; details?: string }
  /** Forward to the agent, but answer the caller UNAVAILABLE, as if the answer were lost. */
  | { kind: 'lose-answer' };

type UnaryHook = (method: string, request: unknown) => RelayAction | undefined | Promise<RelayAction | undefined>;
type Callback = (error: Partial<ServiceError> | null, response?: unknown) => void;
type UnaryFn = (request: unknown, metadata: Metadata, options: { deadline: number }, callback: (e: ServiceError | null, r: unknown) => void) => void;

/** A gate a hook can wait on: `open()` lets what waits on it go on. */
export function gate(): { wait: Promise<void>; open: () => void; readonly opened: boolean } {
  let open!: () => void;
  let opened = false;
  const wait = new Promise<void>((resolve) => (open = () => ((opened = true), resolve())));
  return {
    wait,
    open: () => open(),
    get opened() {
      return opened;
    },
  };
}

export class AgentRelay {
  onUnary: UnaryHook | undefined;
  onProgress: ((m: agent.MigrationProgress) => void | Promise<void>) | undefined;
  /** Every call that reached the relay, in order: `Method` or `Method:migrationId`. */
  readonly calls: string[] = [];
  private upstream: agent.AgentServiceClient | undefined;

  private constructor(
    private readonly server: Server,
    readonly address: string,
  ) {}

  /** Listens on a free loopback port; forwards once `connect()` named the agent. */
  static async start(): Promise<AgentRelay> {
    const server = new Server();
    const address = `127.0.0.1:${await freePort()}`;
    const relay = new AgentRelay(server, address);
    const handlers: Record<string, unknown> = {};
    for (const [name, def] of Object.entries(agent.AgentServiceService)) {
      handlers[name] = def.responseStream
        ? (call: ServerWritableStream<agent.StartOutgoingRequest, agent.MigrationProgress>) => relay.stream(call)
        : (call: { request: unknown; metadata: Metadata }, callback: Callback) => void relay.unary(name, call.request, call.metadata, callback);
    }
    server.addService(agent.AgentServiceService, handlers as never);
    await new Promise<void>((resolve, reject) => server.bindAsync(address, ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
    return relay;
  }

  /** Where the agent really listens (its own port); a new address after a restart is fine. */
  connect(agentAddress: string): void {
    this.upstream?.close();
    this.upstream = new agent.AgentServiceClient(agentAddress, credentials.createInsecure());
  }

  private async unary(method: string, request: unknown, metadata: Metadata, callback: Callback): Promise<void> {
    const id = (request as { migrationId?: string }).migrationId;
    this.calls.push(id ? `${method}:${id}` : method);
    const action = (await this.onUnary?.(method, request)) ?? { kind: 'forward' };
    if (action.kind === 'fail') return callback({ code: action.code, details: action.details ?? `failed by the test relay (${method})` });
    const upstream = this.upstream;
    if (!upstream) return callback({ code: status.UNAVAILABLE, details: 'the test relay has no agent yet' });
    const fn = (upstream as unknown as Record<string, UnaryFn>)[method]!;
    fn.call(upstream, request, metadata, { deadline: Date.now() + 30_000 }, (error, response) => {
      if (action.kind === 'lose-answer') return callback({ code: status.UNAVAILABLE, details: `the answer to ${method} was lost (test relay)` });
      callback(error, response);
    });
  }

  private stream(call: ServerWritableStream<agent.StartOutgoingRequest, agent.MigrationProgress>): void {
    this.calls.push(`startOutgoing:${call.request.migrationId}`);
    const upstream = this.upstream;
    if (!upstream) return void call.emit('error', { code: status.UNAVAILABLE, details: 'the test relay has no agent yet' });
    const source = upstream.startOutgoing(call.request, call.metadata);
    let chain = Promise.resolve();
    source.on('data', (m: agent.MigrationProgress) => {
      chain = chain.then(async () => {
        await this.onProgress?.(m);
        call.write(m);
      });
    });
    source.on('end', () => void chain.then(() => call.end()));
    source.on('error', (e: ServiceError) => void chain.then(() => call.emit('error', { code: e.code, details: e.details })));
    call.on('cancelled', () => source.cancel());
  }

  async stop(): Promise<void> {
    this.upstream?.close();
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    this.server.forceShutdown();
  }
}
