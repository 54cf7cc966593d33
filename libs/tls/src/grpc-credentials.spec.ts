import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client, Server, status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeClusterCerts } from './cluster-ca.js';
import { mutualTlsChannelCredentials, mutualTlsServerCredentials } from './grpc-credentials.js';
import type { Identity } from './identity.js';
import { readTlsMaterial } from './tls-files.js';

let dir: string;
const material = (owner: string) => readTlsMaterial({ ca: path.join(dir, 'ca.pem'), cert: path.join(dir, `${owner}.pem`), key: path.join(dir, `${owner}-key.pem`) });

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vmm-grpc-tls-'));
  await makeClusterCerts({ out: dir, nodes: ['node-1', 'node-2'] });
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** A mutual-TLS server holding `owner`'s certificate; resolves with the status a client expecting `expect` gets. */
async function callAs(owner: string, expect: Identity | undefined): Promise<number> {
  const server = new Server();
  server.addService({ ping: { path: '/t.T/Ping', requestStream: false, responseStream: false, requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b } }, {
    ping: (_call: unknown, cb: (e: null, r: Buffer) => void) => cb(null, Buffer.alloc(0)),
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', mutualTlsServerCredentials(material(owner)), (e, p) => (e ? reject(e) : resolve(p))));
  const client = new Client(`127.0.0.1:${port}`, mutualTlsChannelCredentials(material('node-1'), expect));
  try {
    return await new Promise<number>((resolve) =>
      client.makeUnaryRequest('/t.T/Ping', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), { deadline: Date.now() + 3000 }, (err: ServiceError | null) => resolve(err ? err.code : status.OK)),
    );
  } finally {
    client.close();
    server.forceShutdown();
  }
}

it('a client expecting the controller refuses another node answering at its address', async () => {
  expect(await callAs('controller', { role: 'controller' })).toBe(status.OK);
  expect(await callAs('node-2', { role: 'controller' })).toBe(status.UNAVAILABLE);
});

it('a client expecting node-2 accepts node-2 only', async () => {
  expect(await callAs('node-2', { role: 'node', nodeId: 'node-2' })).toBe(status.OK);
  expect(await callAs('operator', { role: 'node', nodeId: 'node-2' })).toBe(status.UNAVAILABLE);
});
