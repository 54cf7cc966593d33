import {
  credentials,
  loadPackageDefinition,
  status,
  type CallOptions,
  type ChannelCredentials,
  type Client,
  type ServiceClientConstructor,
  type ServiceError,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath } from 'grpc-health-check';
import { ReadyTimeoutError } from './errors.js';
import { delay } from './ports.js';

/** grpc.health.v1.HealthCheckResponse.ServingStatus, by name (the proto is loaded with `enums: String`). */
export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

interface HealthClient extends Client {
  check(
    request: { service: string },
    options: Partial<CallOptions>,
    callback: (err: ServiceError | null, response?: { status: ServingStatus }) => void,
  ): void;
}

// The health.proto that grpc-health-check ships (the servers use that package too), loaded once.
let healthClientClass: ServiceClientConstructor | undefined;
function healthClientConstructor(): ServiceClientConstructor {
  if (!healthClientClass) {
    const definition = loadSync(protoPath, { keepCase: true, enums: String, defaults: true });
    const grpcPackage = loadPackageDefinition(definition) as unknown as {
      grpc: { health: { v1: { Health: ServiceClientConstructor } } };
    };
    healthClientClass = grpcPackage.grpc.health.v1.Health;
  }
  return healthClientClass;
}

/** One grpc.health.v1.Health/Check call; rejects with the gRPC error if the call fails. */
export function checkHealth(
  address: string,
  service = '',
  timeoutMs = 1000,
  channelCredentials: ChannelCredentials = credentials.createInsecure(),
): Promise<ServingStatus> {
  const Health = healthClientConstructor();
  const client = new Health(address, channelCredentials) as unknown as HealthClient;
  return new Promise<ServingStatus>((resolve, reject) => {
    client.check({ service }, { deadline: Date.now() + timeoutMs }, (err, response) => {
      if (err) reject(err);
      else resolve(response?.status ?? 'UNKNOWN');
    });
  }).finally(() => client.close());
}

export interface WaitForServingOptions {
  service?: string;
  timeoutMs?: number;
  intervalMs?: number;
  /** Default plaintext; a mutual-TLS server needs a certificate of the cluster (the operator's). */
  credentials?: ChannelCredentials;
  /** Checked between polls: stop waiting (rejecting with its error) when it returns one, e.g. the process died. */
  abort?: () => Error | undefined;
}

/** Polls Health/Check until it answers SERVING, or rejects after `timeoutMs`. */
export async function waitForServing(address: string, options: WaitForServingOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 20_000;
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const aborted = options.abort?.();
    if (aborted) throw aborted;
    try {
      const s = await checkHealth(address, options.service ?? '', 1000, options.credentials);
      if (s === 'SERVING') return;
      last = s;
    } catch (err) {
      const e = err as ServiceError;
      last = e.code === status.UNAVAILABLE ? 'UNAVAILABLE' : e.message;
    }
    if (Date.now() > deadline) throw new ReadyTimeoutError(`gRPC health of ${address}`, timeoutMs, last);
    await delay(options.intervalMs ?? 100);
  }
}
