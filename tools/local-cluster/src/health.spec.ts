import { Server, ServerCredentials, status, type ServiceDefinition } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkHealth, waitForServing } from './health.js';
import { freePort } from './ports.js';

// A hand-made Health service: field 1 of HealthCheckResponse is the status enum.
const HEALTH: ServiceDefinition = {
  Check: {
    path: '/grpc.health.v1.Health/Check',
    requestStream: false,
    responseStream: false,
    requestSerialize: (v: Buffer) => v,
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (v: Buffer) => v,
    responseDeserialize: (b: Buffer) => b,
  },
};

describe('health probe', () => {
  const server = new Server();
  let address = '';
  let serving = 2; // NOT_SERVING until flipped
  let lastService = '';

  beforeAll(async () => {
    server.addService(HEALTH, {
      Check: (call: { request: Buffer }, cb: (err: unknown, res?: Buffer) => void) => {
        lastService = call.request.length ? call.request.subarray(2).toString() : '';
        if (lastService === 'missing') return cb({ code: status.NOT_FOUND, details: 'unknown service' });
        cb(null, Buffer.from([0x08, serving]));
      },
    });
    const port = await freePort();
    address = `127.0.0.1:${port}`;
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(address, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
  });
  afterAll(() => server.forceShutdown());

  it('decodes the status and sends the service name', async () => {
    expect(await checkHealth(address)).toBe('NOT_SERVING');
    expect(await checkHealth(address, 'cluster.v1.ClusterService')).toBe('NOT_SERVING');
    expect(lastService).toBe('cluster.v1.ClusterService');
    await expect(checkHealth(address, 'missing')).rejects.toMatchObject({ code: status.NOT_FOUND });
  });

  it('waits until SERVING', async () => {
    setTimeout(() => (serving = 1), 300);
    await waitForServing(address, { timeoutMs: 5000, intervalMs: 50 });
    expect(await checkHealth(address)).toBe('SERVING');
  });

  it('times out on a port where nothing listens', async () => {
    const port = await freePort();
    await expect(waitForServing(`127.0.0.1:${port}`, { timeoutMs: 300, intervalMs: 50 })).rejects.toMatchObject({
      code: 'READY_TIMEOUT',
    });
  });
});
