import { Server, ServerCredentials, status } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkHealth, waitForServing } from './health.js';
import { freePort } from './ports.js';

// The servers' own health service (grpc-health-check's HealthImplementation, as the apps use it).
describe('health probe', () => {
  const server = new Server();
  const health = new HealthImplementation({ '': 'NOT_SERVING', 'cluster.v1.ClusterService': 'NOT_SERVING' });
  let address = '';

  beforeAll(async () => {
    health.addToServer(server);
    const port = await freePort();
    address = `127.0.0.1:${port}`;
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(address, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
  });
  afterAll(() => server.forceShutdown());

  it('reads the status of the server and of a named service', async () => {
    expect(await checkHealth(address)).toBe('NOT_SERVING');
    health.setStatus('cluster.v1.ClusterService', 'SERVING');
    expect(await checkHealth(address, 'cluster.v1.ClusterService')).toBe('SERVING');
    expect(await checkHealth(address)).toBe('NOT_SERVING');
    await expect(checkHealth(address, 'missing')).rejects.toMatchObject({ code: status.NOT_FOUND });
  });

  it('waits until SERVING', async () => {
    setTimeout(() => health.setStatus('', 'SERVING'), 300);
    await waitForServing(address, { timeoutMs: 5000, intervalMs: 50 });
    expect(await checkHealth(address)).toBe('SERVING');
  });

  it('times out on a port where nothing listens', async () => {
    const port = await freePort();
    await expect(waitForServing(`127.0.0.1:${port}`, { timeoutMs: 300, intervalMs: 50 })).rejects.toMatchObject({
      code: 'READY_TIMEOUT',
    });
  });

  it('stops waiting when abort() returns an error', async () => {
    const port = await freePort();
    const gone = Object.assign(new Error('the process died'), { code: 'PROCESS_EXITED' });
    await expect(waitForServing(`127.0.0.1:${port}`, { timeoutMs: 5000, intervalMs: 20, abort: () => gone })).rejects.toBe(gone);
  });
});
