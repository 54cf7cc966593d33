import { credentials, makeGenericClientConstructor, Metadata, status, type Client, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { reflectionV1 } from '@vmm/proto';
import { operatorCredentialsFor } from './peer-credentials.js';
import { expect } from 'vitest';

export { status };

/** gRPC status names by number, for readable assertion messages. */
export const STATUS_NAME: Record<number, string> = Object.fromEntries(
  Object.entries(status).filter(([, v]) => typeof v === 'number').map(([k, v]) => [v as number, k]),
);

/**
 * Awaits a call expected to fail and checks its gRPC status (and, when given, that the message names
 * a field). Returns the error for further checks.
 */
export async function expectGrpcError(
  call: Promise<unknown>,
  code: status,
  messagePattern?: RegExp,
): Promise<ServiceError> {
  let err: ServiceError | undefined;
  try {
    const value = await call;
    throw new Error(`expected ${STATUS_NAME[code]} but the call succeeded with ${JSON.stringify(value)}`);
  } catch (e) {
    if (!(e as ServiceError).code && (e as ServiceError).code !== 0) throw e;
    err = e as ServiceError;
  }
  expect(STATUS_NAME[err.code], `status of "${err.details}"`).toBe(STATUS_NAME[code]);
  if (messagePattern) expect(err.details).toMatch(messagePattern);
  return err;
}

/**
 * Lists the services a server exposes through grpc.reflection.v1 (or v1alpha), without any token:
 * what a generic tool such as grpcurl does first (with the operator's certificate on a TLS server).
 */
export function listServicesByReflection(address: string, version: 'v1' | 'v1alpha' = 'v1'): Promise<string[]> {
  const method = reflectionV1.ServerReflectionService.serverReflectionInfo;
  const Client = makeGenericClientConstructor(
    { serverReflectionInfo: { ...method, path: `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo` } },
    `grpc.reflection.${version}.ServerReflection`,
  );
  const client = new Client(address, operatorCredentialsFor(address)) as unknown as Client & {
    serverReflectionInfo(md: Metadata, opts: { deadline: number }): ClientDuplexStream<reflectionV1.ServerReflectionRequest, reflectionV1.ServerReflectionResponse>;
  };
  return new Promise<string[]>((resolve, reject) => {
    const call = client.serverReflectionInfo(new Metadata(), { deadline: Date.now() + 5000 });
    call.on('data', (res: reflectionV1.ServerReflectionResponse) => {
      if (res.listServicesResponse) resolve(res.listServicesResponse.service.map((s) => s.name).sort());
      else reject(new Error(`reflection error: ${res.errorResponse?.errorMessage}`));
      call.end();
    });
    call.on('error', (err: Error) => reject(err));
    call.write(reflectionV1.ServerReflectionRequest.fromPartial({ listServices: '' }));
  }).finally(() => client.close());
}
