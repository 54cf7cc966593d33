// startCluster({ supervise: true }) (`npm run cluster -- --supervise`): any process of the cluster that
// dies (Redis, the controller, an agent) comes back as a service manager would bring it back: the same
// port, node id, environment and Redis data; SIGSTOP is not a death. A private, durable Redis (the only
// kind the cluster can restart) under the cluster's temporary directory.
import { existsSync } from 'node:fs';
import { jemallocLibrary, processAllocator } from '@vmm/local-cluster/allocator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cluster } from '@vmm/proto';
import { startCluster, type LocalCluster } from '@vmm/local-cluster/cluster';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { connectRedis } from '@vmm/local-cluster/redis-client';
import type { ProcessEvent } from '@vmm/local-cluster/supervised-process';
import { isAlive } from './support/launcher.js';
import { vmRequest } from './support/vms.js';
import { waitFor } from './support/wait-for.js';

const REPORT_INTERVAL_MS = 300;
const NOT_READY_WITHIN_MS = 3 * REPORT_INTERVAL_MS + 5000;
const { NODE_STATE_READY: READY, NODE_STATE_NOT_READY: NOT_READY } = cluster.NodeState;

let c: LocalCluster | undefined;
let api: ClusterApi | undefined;
const events: ProcessEvent[] = [];
let vmId = '';

beforeAll(async () => {
  const verbose = process.env.TEST_VERBOSE === '1';
  c = await startCluster({
    agents: 2,
    supervise: true,
    privateRedis: true,
    reportIntervalMs: REPORT_INTERVAL_MS,
    logLevel: process.env.TEST_LOG_LEVEL ?? 'warn',
    onLine: verbose ? (name, line) => process.stderr.write(`[${name}] ${line}\n`) : undefined,
    onProcessEvent: (e) => events.push(e),
  });
  api = c.api();
  vmId = (await api.createVm(vmRequest({ name: 'survivor', nodeId: 'node-1' }))).vmId;
});

afterAll(async () => {
  if (vmId) await api?.deleteVm({ vmId }).catch(() => {});
  api?.close();
  await c?.stop();
});

/** Both nodes READY at their original addresses. */
async function nodesReadyAgain(): Promise<void> {
  const want = c!.agents.map((a) => [a.nodeId, READY, a.address]);
  await waitFor(
    async () => {
      const nodes = (await api!.listNodes({}, { timeoutMs: 2000 })).nodes;
      return JSON.stringify(nodes.map((n) => [n.nodeId, n.state, n.address])) === JSON.stringify(want);
    },
    20_000,
    'both nodes READY at their addresses',
  );
}

/** SIGKILLs `name`, waits for its restart, and checks it came back on the same address. */
async function killAndAwaitRestart(name: string): Promise<{ oldPid: number; pid: number }> {
  const before = c!.processInfo(name);
  const oldPid = c!.signal(name, 'SIGKILL');
  expect(oldPid).toBe(before.pid);
  const restarted = await c!.waitForRestart(name, { after: before.restarts, timeoutMs: 20_000 });
  const after = c!.processInfo(name);
  expect(restarted.pid).not.toBe(oldPid);
  expect(after).toMatchObject({ name, address: before.address, pid: restarted.pid, state: 'running', restarts: before.restarts + 1 });
  expect(isAlive(oldPid)).toBe(false);
  expect(events.at(-1)).toEqual({
    type: 'restarted',
    name,
    oldPid,
    status: { code: null, signal: 'SIGKILL' },
    pid: restarted.pid,
    restarts: before.restarts + 1,
  });
  return { oldPid, pid: restarted.pid };
}

/** Whether the process has libjemalloc mapped (the allocator local-cluster asked for). */
const runsJemalloc = (pid: number): boolean => processAllocator(pid) === 'jemalloc';

describe('under supervise', () => {
  it('lists every process with its pid and address', () => {
    const procs = c!.processes();
    expect(procs.map((p) => [p.name, p.kind, p.state, p.restarts])).toEqual([
      ['redis', 'redis', 'running', 0],
      ['controller', 'controller', 'running', 0],
      ['node-1', 'agent', 'running', 0],
      ['node-2', 'agent', 'running', 0],
    ]);
    for (const p of procs) expect(isAlive(p.pid!), p.name).toBe(true);
    expect(procs.find((p) => p.name === 'controller')!.address).toBe(c!.controllerAddress);
    expect(c!.redisDataDir).toBe(`${c!.tempDir}/redis`);
  });

  it('runs the controller with jemalloc where it is installed and the agents with glibc (allocator.ts)', () => {
    const pid = (name: string) => c!.processes().find((p) => p.name === name)!.pid!;
    expect(runsJemalloc(pid('controller'))).toBe(jemallocLibrary() !== undefined);
    expect(runsJemalloc(pid('node-1'))).toBe((process.env.LD_PRELOAD ?? '').includes('jemalloc'));
  });

  it('a killed agent comes back on the same port as the same node', async () => {
    await killAndAwaitRestart('node-2');
    expect(c!.agents[1]!.pid).toBe(c!.pidOf('node-2'));
    await nodesReadyAgain();
  });

  it('a killed controller comes back on the same port, with the same Redis prefix: nothing lost', async () => {
    const { pid } = await killAndAwaitRestart('controller');
    await nodesReadyAgain();
    expect((await api!.getVm({ vmId })).name).toBe('survivor');
    expect(runsJemalloc(pid!), 'the same environment, its allocator too').toBe(jemallocLibrary() !== undefined);
  });

  it('a killed Redis comes back on the same port with the same data', async () => {
    const probe = `${c!.prefix}:supervise-probe`;
    const before = await connectRedis(c!.redisUrl);
    try {
      await before.set(probe, 'acknowledged');
    } finally {
      before.disconnect();
    }
    await killAndAwaitRestart('redis');
    const after = await connectRedis(c!.redisUrl);
    try {
      expect(await after.get(probe)).toBe('acknowledged');
      await after.del(probe);
    } finally {
      after.disconnect();
    }
    // The controller reconnects to it and finds its state.
    await waitFor(async () => (await api!.getVm({ vmId }, { timeoutMs: 2000 })).name === 'survivor', 30_000, 'the VM read back');
    await nodesReadyAgain();
  });

  it('SIGSTOP is not a death: the node goes NOT_READY, nothing restarts, SIGCONT brings it back', async () => {
    const pid = c!.pidOf('node-1')!;
    const restarts = c!.restartsOf('node-1');
    expect(c!.signal('node-1', 'SIGSTOP')).toBe(pid);
    try {
      await waitFor(
        async () => (await api!.getNode({ nodeId: 'node-1' })).state === NOT_READY,
        NOT_READY_WITHIN_MS,
        'node-1 NOT_READY while stopped',
      );
      expect(c!.processInfo('node-1')).toMatchObject({ pid, state: 'running', restarts });
    } finally {
      c!.signal('node-1', 'SIGCONT');
    }
    await nodesReadyAgain();
    expect(c!.pidOf('node-1')).toBe(pid);
  });

  it('refuses unknown processes and other signals with a stable code', () => {
    expect(() => c!.signal('node-9', 'SIGKILL')).toThrow(expect.objectContaining({ code: 'UNKNOWN_PROCESS' }));
    expect(() => c!.signal('node-1', 'SIGHUP' as 'SIGKILL')).toThrow(expect.objectContaining({ code: 'UNSUPPORTED_SIGNAL' }));
    expect(c!.restartsOf('node-1')).toBe(0);
  });

  it('stop() ends every process, restarts none, and removes the temporary directory', async () => {
    const pids = c!.processes().map((p) => p.pid!);
    const restartsSoFar = events.length;
    const dir = c!.tempDir;
    if (vmId) await api!.deleteVm({ vmId });
    vmId = '';
    await c!.stop();
    for (const pid of pids) expect(isAlive(pid), `pid ${pid}`).toBe(false);
    expect(existsSync(dir)).toBe(false);
    expect(events.length).toBe(restartsSoFar);
    expect(c!.processes().every((p) => p.state === 'stopped')).toBe(true);
  });
});
