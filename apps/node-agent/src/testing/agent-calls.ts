import { credentials, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { agent } from '@vmm/proto';

type UnaryMethods = 'createVm' | 'deleteVm' | 'listVms' | 'setKsm' | 'prepareIncoming' | 'commitIncoming' | 'releaseOutgoing' | 'abortMigration';

/** A promise-returning AgentService client for tests, as the controller would call it. */
export class AgentCalls {
  readonly client: agent.AgentServiceClient;

  constructor(address: string) {
    this.client = new agent.AgentServiceClient(address, credentials.createInsecure());
  }

  call<Res>(method: UnaryMethods, request: object): Promise<Res> {
    const fn = this.client[method] as unknown as (req: object, cb: (e: ServiceError | null, r: Res) => void) => void;
    return new Promise((resolve, reject) => fn.call(this.client, request, (e, r) => (e ? reject(e) : resolve(r))));
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
