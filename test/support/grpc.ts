import path from 'node:path';
import { credentials, loadPackageDefinition, Metadata, status, type ServiceError, type GrpcObject } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { REPO_ROOT } from '@vmm/local-cluster/cluster';
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

const REFLECTION_PROTO = path.join(REPO_ROOT, 'node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto');

/**
 * Lists the services a server exposes through grpc.reflection.v1 (or v1alpha), without any token:
 * what a generic tool such as grpcurl does first.
 */
export function listServicesByReflection(address: string, version: 'v1' | 'v1alpha' = 'v1'): Promise<string[]> {
  const file = version === 'v1' ? REFLECTION_PROTO : REFLECTION_PROTO.replace('/v1/', '/v1alpha/');
  const def = loadSync(file, { keepCase: false, defaults: true, oneofs: true });
  const pkg = loadPackageDefinition(def) as GrpcObject;
  const ns = ((pkg.grpc as GrpcObject).reflection as GrpcObject)[version] as GrpcObject;
  const Ctor = ns.ServerReflection as unknown as new (addr: string, creds: ReturnType<typeof credentials.createInsecure>) => {
    serverReflectionInfo(md: Metadata, opts: { deadline: number }): NodeJS.ReadWriteStream & {
      write(msg: unknown): boolean;
      end(): void;
      on(ev: string, cb: (arg: never) => void): unknown;
    };
    close(): void;
  };
  const client = new Ctor(address, credentials.createInsecure());
  return new Promise<string[]>((resolve, reject) => {
    const call = client.serverReflectionInfo(new Metadata(), { deadline: Date.now() + 5000 });
    call.on('data', (res: { listServicesResponse?: { service: { name: string }[] }; errorResponse?: { errorMessage: string } }) => {
      if (res.listServicesResponse) resolve(res.listServicesResponse.service.map((s) => s.name).sort());
      else reject(new Error(`reflection error: ${res.errorResponse?.errorMessage}`));
      call.end();
    });
    call.on('error', (err: Error) => reject(err));
    call.write({ listServices: '' });
  }).finally(() => client.close());
}
