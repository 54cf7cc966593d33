import { Client, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { ReadyTimeoutError } from './errors.js';
import { delay } from './ports.js';

/** grpc.health.v1.HealthCheckResponse.ServingStatus, by name. */
export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';
const STATUS_NAMES: readonly ServingStatus[] = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];

// HealthCheckRequest { string service = 1; } and HealthCheckResponse { ServingStatus status = 1; } are
// encoded by hand: two fields do not justify a second proto loader in the launcher.
function encodeRequest(service: string): Buffer {
  const name = Buffer.from(service, 'utf8');
  if (name.length === 0) return Buffer.alloc(0);
  if (name.length > 127) throw new Error('service name too long for the health probe');
  return Buffer.concat([Buffer.from([0x0a, name.length]), name]);
}

function decodeResponse(buf: Buffer): ServingStatus {
  let at = 0;
  while (at < buf.length) {
    const tag = buf[at++]!;
    let value = 0;
    let shift = 0;
    let byte: number;
    do {
      byte = buf[at++]!;
      value |= (byte & 0x7f) << shift;
      shift += 7;
    } while (byte & 0x80);
    if (tag === 0x08) return STATUS_NAMES[value] ?? 'UNKNOWN';
    if ((tag & 7) === 2) at += value;
  }
  return 'UNKNOWN'; // proto3 default: status field absent means 0
}

/** One grpc.health.v1.Health/Check call; rejects with the gRPC error if the call fails. */
export function checkHealth(address: string, service = '', timeoutMs = 1000): Promise<ServingStatus> {
  const client = new Client(address, credentials.createInsecure());
  return new Promise<ServingStatus>((resolve, reject) => {
    client.makeUnaryRequest(
      '/grpc.health.v1.Health/Check',
      encodeRequest,
      decodeResponse,
      service,
      new Metadata(),
      { deadline: Date.now() + timeoutMs },
      (err: ServiceError | null, value?: ServingStatus) => {
        if (err) reject(err);
        else resolve(value ?? 'UNKNOWN');
      },
    );
  }).finally(() => client.close());
}

export interface WaitForServingOptions {
  service?: string;
  timeoutMs?: number;
  intervalMs?: number;
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
      const s = await checkHealth(address, options.service ?? '', 1000);
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
