// The whole controller in-process (real Nest gRPC server, real Redis) against fake agents that are
// real grpc-js servers: the API's behaviour end to end, without the node-agent app.
import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { status, type ServiceError } from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agent, cluster } from '@vmm/proto';
import { createLogger } from './common/logger.js';
import { loadControllerConfig, type ControllerConfig } from './config.js';
import { ClusterGrpcController } from './grpc/cluster.grpc-controller.js';
import { startController, type RunningController } from './main.js';
import { NodeService } from './node/node.service.js';
import { VmService } from './vm/vm.service.js';
import { TestClusterClient } from './testing/cluster-client.js';
import { waitFor } from '../../../test/support/wait-for.js';
import { IDLE_WORKLOAD } from './testing/records.js';
import { FakeAgent } from './testing/fake-agent.js';
import { deletePrefix, freePort, startTestRedis, type TestRedis } from './testing/redis-server.fixture.js';

const TOKEN = 'spec-token';
const REPORT_INTERVAL_MS = 200;
const { VmState, NodeState } = cluster;

let redisServer: TestRedis;
let config: ControllerConfig;
let controller: RunningController;
let api: TestClusterClient;
let n1: FakeAgent;
let n2: FakeAgent;
const logger = createLogger('silent');

async function expectCode(p: Promise<unknown>, code: status, pattern?: RegExp): Promise<ServiceError> {
  const error = await p.then(
    () => {
      throw new Error(`expected status ${status[code]}, got success`);
    },
    (e: ServiceError) => e,
  );
  expect(status[error.code], error.details).toBe(status[code]);
  if (pattern) expect(error.details).toMatch(pattern);
  return error;
}

async function snapshot() {
  const [vms, nodes] = await Promise.all([api.listVms({ pageSize: 1000 }), api.listNodes()]);
  return {
    vms: vms.vms.map((v) => `${v.vmId} ${v.nodeId} ${v.state}`).sort(),
    nodes: nodes.nodes.map((n) => `${n.nodeId} ${n.vcpusAllocated} ${n.memoryMibAllocated} ${n.vmCount}`),
  };
}

beforeAll(async () => {
  redisServer = await startTestRedis();
  config = loadControllerConfig({ AGENT_PLANE_INSECURE: '1', 
    CONTROLLER_PORT: String(await freePort()),
    REDIS_URL: redisServer.url,
    REDIS_PREFIX: `spec-${randomUUID()}`,
    API_TOKENS: TOKEN,
    REPORT_INTERVAL_MS: String(REPORT_INTERVAL_MS),
    LOG_LEVEL: 'silent',
  });
  controller = await startController(config, logger);
  api = new TestClusterClient(controller.address, TOKEN);
  n1 = new FakeAgent({ nodeId: 'node-1', vcpus: 8, memoryMib: 1000, ramAllocationRatio: 1.5, cpuAllocationRatio: 4 });
  n2 = new FakeAgent({ nodeId: 'node-2', vcpus: 4, memoryMib: 2000, ramAllocationRatio: 1, cpuAllocationRatio: 2 });
  for (const a of [n1, n2]) {
    await a.start();
    expect((await a.register(controller.address)).reportIntervalMs).toBe(REPORT_INTERVAL_MS);
  }
});

afterAll(async () => {
  api?.close();
  await n1?.stop();
  await n2?.stop();
  await controller?.close();
  if (redisServer) {
    const redis = new Redis(redisServer.url);
    await deletePrefix(redis, config.redisPrefix);
    await redis.quit();
    await redisServer.stop();
  }
});

describe('wiring', () => {
  it('constructor metadata survives the transform (DI guard, docs/stack.md G5)', () => {
    expect(Reflect.getMetadata('design:paramtypes', VmService)).toBeDefined();
    expect(Reflect.getMetadata('design:paramtypes', NodeService)).toBeDefined();
    expect(Reflect.getMetadata('design:paramtypes', ClusterGrpcController)).toHaveLength(9);
  });

  it('lists nodes ordered by id with capacity and ratios', async () => {
    const { nodes } = await api.listNodes();
    expect(nodes.map((n) => [n.nodeId, n.state, n.vcpus, n.memoryMib, n.ramAllocationRatio])).toEqual([
      ['node-1', NodeState.NODE_STATE_READY, 8, 1000, 1.5],
      ['node-2', NodeState.NODE_STATE_READY, 4, 2000, 1],
    ]);
  });
});

describe('auth', () => {
  it('rejects a missing or wrong token with UNAUTHENTICATED', async () => {
    const anonymous = new TestClusterClient(controller.address, null);
    const wrong = new TestClusterClient(controller.address, 'nope');
    try {
      await expectCode(anonymous.listNodes(), status.UNAUTHENTICATED);
      await expectCode(wrong.createVm({ name: 'x' }), status.UNAUTHENTICATED);
    } finally {
      anonymous.close();
      wrong.close();
    }
  });
});

describe('VM lifecycle', () => {
  it('creates on the node with most free memory, reports measured fields, deletes everywhere', async () => {
    const vm = await api.createVm({
      name: 'life-1',
      vcpus: 2,
      memoryMib: 256,
      image: 'debian-12',
      workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_UNIFORM, dirtyRatePagesPerSec: 50, workingSetMib: 16, seed: 3 },
      labels: { app: 'db' },
    });
    expect(vm).toMatchObject({ name: 'life-1', nodeId: 'node-2', state: VmState.VM_STATE_RUNNING, vcpus: 2, memoryMib: 256, image: 'debian-12', labels: { app: 'db' } });
    expect(n2.vms.get(vm.vmId)?.spec?.name).toBe('life-1');
    expect(await api.getNode('node-2')).toMatchObject({ vcpusAllocated: 2, memoryMibAllocated: 256, vmCount: 1 });

    await n2.report();
    await waitFor(async () => (await api.getVm(vm.vmId)).workingSetPages === 40, 5000, 'measured fields');
    expect(await api.getVm(vm.vmId)).toMatchObject({ dirtyRatePagesPerSec: 12.5, residentPages: 77 });
    const node = await api.getNode('node-2');
    expect(node.memoryMibUsed).toBe(64);
    expect(node.ksm).toMatchObject({ pagesSharing: 2, generalProfitBytes: 8192 });
    expect(node.ksmKnobs).toMatchObject({ run: 1, pagesToScan: 100 });

    await api.deleteVm(vm.vmId);
    expect(n2.vms.has(vm.vmId)).toBe(false);
    await expectCode(api.getVm(vm.vmId), status.NOT_FOUND);
    expect(await api.getNode('node-2')).toMatchObject({ vcpusAllocated: 0, memoryMibAllocated: 0, vmCount: 0 });
    await expectCode(api.deleteVm(vm.vmId), status.NOT_FOUND);
  });

  it('places exactly on a requested node and pages through ListVms', async () => {
    const made = [];
    for (let i = 0; i < 5; i++) made.push(await api.createVm({ name: `page-${i}`, vcpus: 1, memoryMib: 10, nodeId: 'node-1', workload: IDLE_WORKLOAD }));
    try {
      expect(new Set(made.map((v) => v.nodeId))).toEqual(new Set(['node-1']));
      const seen: string[] = [];
      let pageToken = '';
      do {
        const page = await api.listVms({ pageSize: 2, pageToken, nodeId: 'node-1' });
        expect(page.vms.length).toBeLessThanOrEqual(2);
        seen.push(...page.vms.map((v) => v.vmId));
        pageToken = page.nextPageToken;
      } while (pageToken);
      expect(seen).toEqual(made.map((v) => v.vmId));
      expect((await api.listVms({ nodeId: 'node-2' })).vms).toEqual([]);
      await expectCode(api.listVms({ pageToken: 'bogus' }), status.INVALID_ARGUMENT, /page_token/);
      await expectCode(api.listVms({ nodeId: 'node-9' }), status.NOT_FOUND);
    } finally {
      for (const v of made) await api.deleteVm(v.vmId);
    }
  });

  it('anti-affinity spreads a group and refuses a third member on two nodes', async () => {
    const req = (name: string) => ({ name, vcpus: 1, memoryMib: 10, antiAffinityGroup: 'g1', workload: IDLE_WORKLOAD });
    const a = await api.createVm(req('aa-1'));
    const b = await api.createVm(req('aa-2'));
    try {
      expect(new Set([a.nodeId, b.nodeId])).toEqual(new Set(['node-1', 'node-2']));
      await expectCode(api.createVm(req('aa-3')), status.RESOURCE_EXHAUSTED, /anti-affinity/);
    } finally {
      await api.deleteVm(a.vmId);
      await api.deleteVm(b.vmId);
    }
  });
});

describe('status codes, leaving nothing behind', () => {

  it.each([
    ['empty name', { name: '' }, status.INVALID_ARGUMENT, /^name/],
    ['memory above the largest node', { memoryMib: 2001 }, status.INVALID_ARGUMENT, /memory_mib/],
    ['vcpus above the largest node', { vcpus: 9 }, status.INVALID_ARGUMENT, /vcpus/],
    ['unknown image', { image: 'Plan 9' }, status.INVALID_ARGUMENT, /image/],
    ['unspecified kind', { workload: { ...IDLE_WORKLOAD, kind: cluster.WorkloadKind.WORKLOAD_KIND_UNSPECIFIED } }, status.INVALID_ARGUMENT, /workload.kind/],
    ['unknown node', { nodeId: 'node-9' }, status.NOT_FOUND, /node-9/],
  ] as const)('CreateVm with %s', async (_c, over, code, pattern) => {
    const before = await snapshot();
    await expectCode(api.createVm({ name: `sc-${randomUUID().slice(0, 6)}`, vcpus: 1, memoryMib: 10, workload: IDLE_WORKLOAD, ...over }), code, pattern);
    expect(await snapshot()).toEqual(before);
  });

  it('ALREADY_EXISTS for a name in use; FAILED_PRECONDITION on a cordoned node', async () => {
    const vm = await api.createVm({ name: 'dup', vcpus: 1, memoryMib: 10, workload: IDLE_WORKLOAD });
    try {
      await expectCode(api.createVm({ name: 'dup', vcpus: 1, memoryMib: 10, workload: IDLE_WORKLOAD }), status.ALREADY_EXISTS);
      expect((await api.cordonNode('node-1')).state).toBe(NodeState.NODE_STATE_CORDONED);
      await expectCode(api.createVm({ name: 'c1', vcpus: 1, memoryMib: 10, workload: IDLE_WORKLOAD, nodeId: 'node-1' }), status.FAILED_PRECONDITION, /cordoned/);
      expect((await api.uncordonNode('node-1')).state).toBe(NodeState.NODE_STATE_READY);
    } finally {
      await api.deleteVm(vm.vmId);
    }
  });

  it('an agent failure releases the reservation: UNAVAILABLE, or the agent’s own code', async () => {
    const before = await snapshot();
    n1.failCreate = { code: status.UNAVAILABLE, details: 'disk on fire' };
    try {
      await expectCode(api.createVm({ name: 'af-1', vcpus: 1, memoryMib: 10, workload: IDLE_WORKLOAD, nodeId: 'node-1' }), status.UNAVAILABLE, /disk on fire/);
      n1.failCreate = { code: status.INVALID_ARGUMENT, details: 'image: unknown' };
      await expectCode(api.createVm({ name: 'af-1', vcpus: 1, memoryMib: 10, workload: IDLE_WORKLOAD, nodeId: 'node-1' }), status.INVALID_ARGUMENT, /image/);
    } finally {
      n1.failCreate = undefined;
    }
    expect(await snapshot()).toEqual(before);
    const ok = await api.createVm({ name: 'af-1', vcpus: 1, memoryMib: 10, workload: IDLE_WORKLOAD, nodeId: 'node-1' });
    await api.deleteVm(ok.vmId);
  });

  it('migration requests: NOT_FOUND for unknown ids, INVALID_ARGUMENT for a bad policy', async () => {
    await expectCode(api.migrateVm({ vmId: 'nope' }), status.NOT_FOUND);
    await expectCode(api.drainNode('nope'), status.NOT_FOUND);
    const vm = await api.createVm({ name: 'mig', vcpus: 1, memoryMib: 10, workload: IDLE_WORKLOAD, nodeId: 'node-1' });
    try {
      await expectCode(api.migrateVm({ vmId: vm.vmId, policy: { maxBandwidthMibPerSec: -1 } as cluster.MigrationPolicy }), status.INVALID_ARGUMENT, /bandwidth/);
      await expectCode(api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-9' }), status.NOT_FOUND);
    } finally {
      await api.deleteVm(vm.vmId);
    }
  });
});

describe('concurrency', () => {
  it('50 concurrent CreateVm on a node with room for 10: exactly 10 succeed, 40 RESOURCE_EXHAUSTED', async () => {
    await api.cordonNode('node-2');
    try {
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, (_, i) =>
          api.createVm({ name: `burst-${i}`, vcpus: 1, memoryMib: 150, workload: IDLE_WORKLOAD }),
        ),
      );
      const ok = results.filter((r): r is PromiseFulfilledResult<cluster.Vm> => r.status === 'fulfilled');
      const codes = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => status[(r.reason as ServiceError).code]);
      expect(ok).toHaveLength(10);
      expect(codes).toEqual(Array(40).fill('RESOURCE_EXHAUSTED'));
      expect(await api.getNode('node-1')).toMatchObject({ memoryMibAllocated: 1500, vcpusAllocated: 10, vmCount: 10 });
      expect(n1.vms.size).toBe(10);
      for (const r of ok) await api.deleteVm(r.value.vmId);
    } finally {
      await api.uncordonNode('node-2');
    }
  });
});

describe('KSM knobs', () => {
  it('SetNodeKsm goes to the agent and returns the node; UNIMPLEMENTED when the agent lacks it', async () => {
    const node = await api.setNodeKsm('node-1', { pagesToScan: 500 });
    expect(node.ksmKnobs).toMatchObject({ pagesToScan: 500, run: 1 });
    expect(node.ksm).toMatchObject({ fullScans: 2 });
    await expectCode(api.setNodeKsm('node-1', { run: 7 }), status.INVALID_ARGUMENT, /knobs.run/);
    // libs/ksm's ranges: one synchronous batch of 2^32 pages would hold the agent for hours.
    await expectCode(api.setNodeKsm('node-1', { pagesToScan: 100_001 }), status.INVALID_ARGUMENT, /knobs.pages_to_scan.*1\.\.100000/);
    await expectCode(api.setNodeKsm('node-1', { sleepMillisecs: 3_600_001 }), status.INVALID_ARGUMENT, /knobs.sleep_millisecs/);
    n1.setKsmImplemented = false;
    try {
      await expectCode(api.setNodeKsm('node-1', { run: 0 }), status.UNIMPLEMENTED);
    } finally {
      n1.setKsmImplemented = true;
    }
  });
});

describe('readiness', () => {
  it('a node whose reports stop is NOT_READY, and READY again when they resume', async () => {
    n1.stopReporting();
    await waitFor(async () => (await api.getNode('node-1')).state === NodeState.NODE_STATE_NOT_READY, 5000, 'node-1 NOT_READY');
    await expectCode(
      api.createVm({ name: 'nr', vcpus: 1, memoryMib: 10, nodeId: 'node-1', workload: IDLE_WORKLOAD }),
      status.FAILED_PRECONDITION,
      /not ready/,
    );
    await n1.register(controller.address);
    expect((await api.getNode('node-1')).state).toBe(NodeState.NODE_STATE_READY);
  });
});

describe('restart and reconcile', () => {
  it('a restarted controller serves the same state; agents re-register and are reconciled', async () => {
    const kept = await api.createVm({ name: 'kept', vcpus: 1, memoryMib: 10, workload: IDLE_WORKLOAD, nodeId: 'node-1' });
    const lost = await api.createVm({ name: 'lost', vcpus: 1, memoryMib: 10, workload: IDLE_WORKLOAD, nodeId: 'node-1' });
    const before = await snapshot();

    await controller.close();
    api.close();
    controller = await startController(config, logger);
    api = new TestClusterClient(controller.address, TOKEN);
    expect(await snapshot()).toEqual(before);

    // The agent lost one VM and runs one the controller never heard of.
    n1.vms.delete(lost.vmId);
    n1.vms.set('vm-foreign', agent.VmStatus.fromPartial({
      vmId: 'vm-foreign',
      state: VmState.VM_STATE_RUNNING,
      pagesTotal: 256,
      residentPages: 1,
      fencingEpoch: 1,
      spec: agent.VmSpec.fromPartial({ vmId: 'vm-foreign', name: 'foreign', vcpus: 1, memoryMib: 20, image: 'empty', workload: IDLE_WORKLOAD, labels: {}, fencingEpoch: 1 }),
    }));
    await n1.register(controller.address);
    expect((await api.getVm(kept.vmId)).state).toBe(VmState.VM_STATE_RUNNING);
    expect((await api.getVm(lost.vmId)).state).toBe(VmState.VM_STATE_FAILED);
    expect(await api.getVm('vm-foreign')).toMatchObject({ name: 'foreign', nodeId: 'node-1', memoryMib: 20 });
    expect((await api.getNode('node-1')).vmCount).toBe(3);

    for (const id of [kept.vmId, lost.vmId, 'vm-foreign']) await api.deleteVm(id);
    expect(await api.getNode('node-1')).toMatchObject({ vmCount: 0, memoryMibAllocated: 0 });
  });

  it('reports for an unregistered node end the stream with NOT_FOUND', async () => {
    const ghost = new FakeAgent({ nodeId: 'ghost' });
    await ghost.start();
    try {
      await ghost.register(controller.address);
      const redis = new Redis(redisServer.url);
      await redis.del(`${config.redisPrefix}:node:ghost`);
      await redis.quit();
      const ended = new Promise<ServiceError | null>((resolve) => {
        (ghost as unknown as { reportStream: { on: (e: string, f: (x: unknown) => void) => void } }).reportStream.on('status', (s) =>
          resolve((s as ServiceError).code === status.OK ? null : (s as ServiceError)),
        );
      });
      await ghost.report();
      expect((await ended)?.code).toBe(status.NOT_FOUND);
    } finally {
      await ghost.stop();
    }
  });
});
