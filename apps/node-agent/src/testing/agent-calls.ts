import { credentials, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { agent, promiseClient, type PromiseClient } from '@vmm/proto';

type UnaryMethods =
  | 'createVm'
  | 'deleteVm'
  | 'listVms'
  | 'setKsm'
  | 'prepareIncoming'
  | 'commitIncoming'
  | 'releaseOutgoing'
  | 'abortMigration'
  | 'updateOutgoing'
  | 'continueSwitchover';

/** A promise-returning AgentService client for tests, as the controller would call it. */
export class AgentCalls {
  readonly client: agent.AgentServiceClient;
  private readonly api: PromiseClient<agent.AgentServiceClient>;

  constructor(address: string) {
    this.client = new agent.AgentServiceClient(address, credentials.createInsecure());
    this.api = promiseClient(this.client, agent.AgentServiceService, agent);
  }

  /** The generated method named `method`, as a promise (proto's one promise helper). */
  call<Res>(method: UnaryMethods, request: object): Promise<Res> {
    return (this.api[method] as unknown as (r: object) => Promise<Res>)(request);
  }

  /** Every progress message of a StartOutgoing call, once the stream ends. */
  startOutgoing(request: Partial<agent.StartOutgoingRequest>, onMessage?: (m: agent.MigrationProgress) => void): Promise<agent.MigrationProgress[]> {
    const stream: ClientReadableStream<agent.MigrationProgress> = this.client.startOutgoing(agent.StartOutgoingRequest.fromPartial(request));
    const messages: agent.MigrationProgress[] = [];
    return new Promise((resolve, reject) => {
      stream.on('data', (m: agent.MigrationProgress) => {
        messages.push(m);
        onMessage?.(m);
      });
      stream.on('error', reject);
      stream.on('end', () => resolve(messages));
    });
  }

  close(): void {
    this.client.close();
  }
}

/** The status code of a failed call, or 0 (OK). */
export async function codeOf(promise: Promise<unknown>): Promise<number> {
  try {
    await promise;
    return 0;
  } catch (err) {
    return (err as ServiceError).code;
  }
}
