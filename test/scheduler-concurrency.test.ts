// 50 concurrent CreateVm against one node with room for exactly 10: the scheduler must reserve
// capacity atomically (no over-commit beyond the ratio, no lost reservations).
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ServiceError } from '@grpc/grpc-js';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { startTestCluster, type TestCluster } from './support/cluster.js';
import { STATUS_NAME, status } from './support/grpc.js';
import { listAllVms, vmRequest } from './support/vms.js';
import { waitFor } from './support/wait-for.js';

// 1000 MiB × RAM ratio 1.5 = 1500 MiB allocatable = exactly 10 VMs of 150 MiB; vCPUs (8 × 4 = 32)
// never bind at 1 vCPU each.
const NODE_MEMORY_MIB = 1000;
const RAM_RATIO = 1.5;
const VM_MEMORY_MIB = 150;
const FITS = 10;
const REQUESTS = 50;

let c: TestCluster;
let api: ClusterApi;

beforeAll(async () => {
  c = await startTestCluster({
    agents: 1,
    nodeMemoryMib: NODE_MEMORY_MIB,
    nodeVcpus: 8,
    agentEnv: () => ({ RAM_ALLOCATION_RATIO: String(RAM_RATIO), CPU_ALLOCATION_RATIO: '4' }),
  });
  api = c.api();
});

afterAll(async () => {
  api?.close();
  await c?.stop();
});

it(`${REQUESTS} concurrent CreateVm on a node with room for ${FITS}: exactly ${FITS} succeed`, async () => {
  const [node] = (await api.listNodes({})).nodes;
  expect(node!.ramAllocationRatio).toBe(RAM_RATIO);
  expect(Math.floor((node!.memoryMib * node!.ramAllocationRatio) / VM_MEMORY_MIB)).toBe(FITS);

  const results = await Promise.allSettled(
    Array.from({ length: REQUESTS }, (_, i) =>
      api.createVm(vmRequest({ name: `burst-${i}`, memoryMib: VM_MEMORY_MIB, vcpus: 1 }), { timeoutMs: 60_000 }),
    ),
  );
  const created = results.filter((r) => r.status === 'fulfilled');
  const codes = results
    .filter((r): r is PromiseRejectedResult => r.status === 'rejected')
    .map((r) => STATUS_NAME[(r.reason as ServiceError).code] ?? String(r.reason));
  expect(created).toHaveLength(FITS);
  expect(codes).toEqual(Array(REQUESTS - FITS).fill(STATUS_NAME[status.RESOURCE_EXHAUSTED]));

  const vms = await listAllVms(api);
  expect(vms).toHaveLength(FITS);
  expect(new Set(vms.map((v) => v.name)).size).toBe(FITS);
  const after = await api.getNode({ nodeId: 'node-1' });
  expect(after.memoryMibAllocated).toBe(FITS * VM_MEMORY_MIB);
  expect(after.vcpusAllocated).toBe(FITS);
  // vm_count may come from the agent's next report.
  await waitFor(async () => (await api.getNode({ nodeId: 'node-1' })).vmCount === FITS, 10_000, 'vm_count = 10');

  // The node is full: one more is refused, and freeing one makes room for exactly one.
  await expect(api.createVm(vmRequest({ memoryMib: VM_MEMORY_MIB }))).rejects.toMatchObject({ code: status.RESOURCE_EXHAUSTED });
  await api.deleteVm({ vmId: vms[0]!.vmId });
  await api.createVm(vmRequest({ memoryMib: VM_MEMORY_MIB }));
  expect((await api.getNode({ nodeId: 'node-1' })).memoryMibAllocated).toBe(FITS * VM_MEMORY_MIB);
});
