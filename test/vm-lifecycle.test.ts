// The VM surface end to end: create with real workloads and images, measured dirty rate, delete,
// anti-affinity, cordon, pagination, and health/reflection on every server.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cluster } from '@vmm/proto';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { checkHealth } from '@vmm/local-cluster/health';
import { startTestCluster, type TestCluster } from './support/cluster.js';
import { expectGrpcError, listServicesByReflection, status } from './support/grpc.js';
import { listAllVms, vmRequest } from './support/vms.js';
import { waitFor } from './support/wait-for.js';
import { operatorCredentialsFor } from './support/peer-credentials.js';

const REPORT_INTERVAL_MS = 500;
const PAGES_PER_MIB = 256;
let c: TestCluster;
let api: ClusterApi;

beforeAll(async () => {
  c = await startTestCluster({ agents: 3, reportIntervalMs: REPORT_INTERVAL_MS, nodeMemoryMib: 4096, nodeVcpus: 8 });
  api = c.api();
});

afterAll(async () => {
  api?.close();
  await c?.stop();
});

async function deleteAll(): Promise<void> {
  for (const vm of await listAllVms(api)) await api.deleteVm({ vmId: vm.vmId });
}

/** The next `count` distinct measured values of a VM's dirty rate (one per agent report). */
async function nextRates(vmId: string, count: number): Promise<number[]> {
  const rates: number[] = [];
  let last = (await api.getVm({ vmId })).dirtyRatePagesPerSec;
  while (rates.length < count) {
    last = await waitFor(
      async () => {
        const r = (await api.getVm({ vmId })).dirtyRatePagesPerSec;
        return r !== last ? r || 'zero' : undefined;
      },
      20 * REPORT_INTERVAL_MS + 5000,
      `a new dirty-rate report for ${vmId}`,
      REPORT_INTERVAL_MS / 5,
    ).then((r) => (r === 'zero' ? 0 : (r as number)));
    rates.push(last);
  }
  return rates;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

describe('create, measure, delete', () => {
  it('VMs of two images with different workloads run, and their dirty rates are measured', async () => {
    const uniform = await api.createVm(
      vmRequest({
        name: 'uniform-vm',
        image: 'alpine-3.20',
        memoryMib: 256,
        vcpus: 2,
        labels: { role: 'web' },
        workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_UNIFORM, dirtyRatePagesPerSec: 2000, workingSetMib: 0, seed: 7 },
      }),
    );
    const hotcold = await api.createVm(
      vmRequest({
        name: 'hotcold-vm',
        image: 'debian-12',
        memoryMib: 512,
        workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_HOTCOLD, dirtyRatePagesPerSec: 500, workingSetMib: 32, seed: 9 },
      }),
    );
    const idle = await api.createVm(vmRequest({ name: 'idle-vm', image: 'alpine-3.20', memoryMib: 128 }));
    for (const vm of [uniform, hotcold, idle]) {
      expect(vm.state).toBe(cluster.VmState.VM_STATE_RUNNING);
      expect(vm.vmId).not.toBe('');
      expect(vm.nodeId).toMatch(/^node-[123]$/);
    }
    expect(uniform).toMatchObject({ name: 'uniform-vm', vcpus: 2, memoryMib: 256, image: 'alpine-3.20', labels: { role: 'web' } });
    expect(uniform.workload).toMatchObject({ kind: cluster.WorkloadKind.WORKLOAD_KIND_UNIFORM, dirtyRatePagesPerSec: 2000 });

    // Uniform writes over 65 536 pages rarely hit the same page twice in one interval: distinct
    // dirty pages per second ≈ the configured rate.
    const uniformRates = await nextRates(uniform.vmId, 3);
    expect(median(uniformRates)).toBeGreaterThan(2000 * 0.7);
    expect(median(uniformRates)).toBeLessThan(2000 * 1.3);
    // Hot/cold rewrites a hot subset: never more distinct pages than writes, and not nothing.
    const hotcoldRates = await nextRates(hotcold.vmId, 2);
    expect(median(hotcoldRates)).toBeGreaterThan(0);
    expect(median(hotcoldRates)).toBeLessThan(500 * 1.3);

    const idleNow = await api.getVm({ vmId: idle.vmId });
    expect(idleNow.dirtyRatePagesPerSec).toBe(0);
    // The image is loaded: its non-zero pages are resident (alpine-3.20 spans 16 MiB, some of it
    // zero pages), and an idle guest writes nothing else.
    expect(idleNow.residentPages).toBeGreaterThan(0);
    expect(idleNow.residentPages).toBeLessThanOrEqual(16 * PAGES_PER_MIB);
    const debian = await api.getVm({ vmId: hotcold.vmId });
    expect(debian.residentPages).toBeGreaterThan(idleNow.residentPages);
    expect(debian.workingSetPages).toBeGreaterThan(0);
    expect(debian.workingSetPages).toBeLessThanOrEqual(32 * PAGES_PER_MIB);
  });

  it('DeleteVm removes the VM and frees its allocation', async () => {
    const vm = await api.createVm(vmRequest({ name: 'to-delete', memoryMib: 256, vcpus: 2 }));
    const nodeBefore = await api.getNode({ nodeId: vm.nodeId });
    await api.deleteVm({ vmId: vm.vmId });
    await expectGrpcError(api.getVm({ vmId: vm.vmId }), status.NOT_FOUND);
    expect((await listAllVms(api)).map((v) => v.vmId)).not.toContain(vm.vmId);
    const nodeAfter = await api.getNode({ nodeId: vm.nodeId });
    expect(nodeAfter.memoryMibAllocated).toBe(nodeBefore.memoryMibAllocated - 256);
    expect(nodeAfter.vcpusAllocated).toBe(nodeBefore.vcpusAllocated - 2);
    // The name is free again.
    const again = await api.createVm(vmRequest({ name: 'to-delete' }));
    await api.deleteVm({ vmId: again.vmId });
    await deleteAll();
  });
});

describe('placement', () => {
  it('anti-affinity spreads a group over distinct nodes', async () => {
    const group = await Promise.all(
      [1, 2, 3].map((i) => api.createVm(vmRequest({ name: `spread-${i}`, antiAffinityGroup: 'spread' }))),
    );
    expect(new Set(group.map((v) => v.nodeId)).size).toBe(3);
    for (const vm of group) expect(vm.antiAffinityGroup).toBe('spread');
    await deleteAll();
  });

  it('a cordoned node takes no new VMs until uncordoned', async () => {
    const cordoned = await api.cordonNode({ nodeId: 'node-1' });
    expect(cordoned.cordoned).toBe(true);
    expect(cordoned.state).toBe(cluster.NodeState.NODE_STATE_CORDONED);
    try {
      const placed = [];
      for (let i = 0; i < 6; i++) placed.push(await api.createVm(vmRequest({ name: `avoid-${i}` })));
      expect(placed.map((v) => v.nodeId)).not.toContain('node-1');
    } finally {
      const back = await api.uncordonNode({ nodeId: 'node-1' });
      expect(back.cordoned).toBe(false);
      expect(back.state).toBe(cluster.NodeState.NODE_STATE_READY);
    }
    const onNode1 = await api.createVm(vmRequest({ name: 'on-node-1', nodeId: 'node-1' }));
    expect(onNode1.nodeId).toBe('node-1');
    await deleteAll();
  });
});

describe('ListVms', () => {
  it('pages through every VM exactly once, and filters by node', async () => {
    const created = [];
    for (let i = 0; i < 7; i++) created.push(await api.createVm(vmRequest({ name: `page-${i}` })));
    const seen: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const res = await api.listVms({ nodeId: '', pageSize: 3, pageToken });
      expect(res.vms.length).toBeLessThanOrEqual(3);
      seen.push(...res.vms.map((v) => v.vmId));
      pageToken = res.nextPageToken;
      pages++;
    } while (pageToken && pages < 20);
    expect(pages).toBeGreaterThanOrEqual(3);
    expect([...seen].sort()).toEqual(created.map((v) => v.vmId).sort());

    for (const nodeId of ['node-1', 'node-2', 'node-3']) {
      const onNode = await listAllVms(api, nodeId, 2);
      expect(onNode.every((v) => v.nodeId === nodeId)).toBe(true);
      expect(onNode.length).toBe(created.filter((v) => v.nodeId === nodeId).length);
    }
    await deleteAll();
  });
});

describe('health and reflection', () => {
  it('the controller serves Health and lists its services by reflection (v1 and v1alpha)', async () => {
    expect(await checkHealth(c.controllerAddress)).toBe('SERVING');
    for (const version of ['v1', 'v1alpha'] as const) {
      const services = await listServicesByReflection(c.controllerAddress, version);
      expect(services).toEqual(expect.arrayContaining(['cluster.v1.ClusterService', 'grpc.health.v1.Health']));
    }
  });

  it('every agent serves Health and lists agent.v1.AgentService by reflection', async () => {
    for (const a of c.agents) {
      expect(await checkHealth(a.address, '', 1000, operatorCredentialsFor(a.address))).toBe('SERVING');
      const services = await listServicesByReflection(a.address);
      expect(services).toEqual(expect.arrayContaining(['agent.v1.AgentService', 'grpc.health.v1.Health']));
    }
  });
});
