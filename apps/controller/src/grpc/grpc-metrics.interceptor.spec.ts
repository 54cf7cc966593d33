// The RPC metrics' `method` label takes the served methods only: a call to a path nobody serves (the
// fuzzer's, or anyone's, random method names) is answered UNIMPLEMENTED by grpc-js before any
// interceptor runs, so it adds no series. Guards the label cardinality of vmm_grpc_server_* (#9).
import { randomUUID } from 'node:crypto';
import { Client, credentials, Metadata, Server, ServerCredentials, status, type ServiceError } from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { afterEach, expect, it } from 'vitest';
import { createLogger } from '../common/logger.js';
import { grpcMetricsInterceptor } from './grpc-metrics.interceptor.js';

const identity = (b: Buffer) => b;
let server: Server | undefined;
let client: Client | undefined;

afterEach(() => {
  client?.close();
  server?.forceShutdown();
});

it('counts served methods only: calls to unknown paths add no series', async () => {
  const registry = new Registry();
  server = new Server({ interceptors: [grpcMetricsInterceptor(registry, createLogger('silent'))] });
  server.addService(
    { echo: { path: '/test.v1.Echo/Echo', requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
    { echo: (call: { request: Buffer }, callback: (err: null, res: Buffer) => void) => callback(null, call.request) },
  );
  const port = await new Promise<number>((resolve, reject) => server!.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  const call = (path: string) =>
    new Promise<number>((resolve) =>
      client!.makeUnaryRequest(path, identity, identity, Buffer.from('x'), new Metadata(), {}, (err: ServiceError | null) => resolve(err ? err.code : status.OK)),
    );

  expect(await call('/test.v1.Echo/Echo')).toBe(status.OK);
  for (let i = 0; i < 50; i++) expect(await call(`/fuzz.${randomUUID()}/M${i}`)).toBe(status.UNIMPLEMENTED);
  expect(await call('/test.v1.Echo/Nope')).toBe(status.UNIMPLEMENTED);

  const handled = (await registry.getSingleMetric('vmm_grpc_server_handled_total')!.get()).values;
  expect(handled.map((v) => v.labels)).toEqual([{ method: '/test.v1.Echo/Echo', code: 'OK' }]);
  const seconds = (await registry.getSingleMetric('vmm_grpc_server_handling_seconds')!.get()).values;
  expect(new Set(seconds.map((v) => v.labels.method))).toEqual(new Set(['/test.v1.Echo/Echo']));
});
