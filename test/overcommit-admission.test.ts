// Admission against capacity × allocation ratio, per node (CPU_ALLOCATION_RATIO / RAM_ALLOCATION_RATIO
// of each agent): two nodes of equal physical capacity (2 vCPUs, 1024 MiB), node-1 without overcommit
// (ratios 1.0), node-2 with the defaults (4.0 vCPU, 1.5 memory). What node-2 accepts node-1 refuses
// with RESOURCE_EXHAUSTED, leaving nothing behind (no VM record, no allocation, nothing on the agent).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { cluster } from '@vmm/proto';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { startTestCluster, type TestCluster } from './support/cluster.js';
import { expectGrpcError, status } from './support/grpc.js';
import { agentVms } from './support/migration.js';
import { stateSnapshot, vmRequest } from './support/vms.js';

const STRICT = 'node-1';
const OVERCOMMITTED = 'node-2';
const MEMORY_MIB = 1024;
const VCPUS = 2;

describe('admission against capacity × allocation ratio', () => {
  let c: TestCluster;
  let api: ClusterApi;
  let vmIds: string[] = [];

  beforeAll(async () => {
    c = await startTestCluster({
      agents: 2,
      nodeMemoryMib: MEMORY_MIB,
      nodeVcpus: VCPUS,
      agentEnv: (i) =>
        i === 0 ? { CPU_ALLOCATION_RATIO: '1.0', RAM_ALLOCATION_RATIO: '1.0' } : { CPU_ALLOCATION_RATIO: '4.0', RAM_ALLOCATION_RATIO: '1.5' },
    });
    api = c.api();
  });

  afterEach(async () => {
    for (const vmId of vmIds) await api.deleteVm({ vmId }).catch(() => {});
    vmIds = [];
  });

  afterAll(async () => {
    api?.close();
    await c?.stop();
  });

  const create = async (req: Partial<cluster.CreateVmRequest>): Promise<cluster.Vm> => {
    const vm = await api.createVm(vmRequest(req));
    vmIds.push(vm.vmId);
    return vm;
  };

  /** A refused CreateVm: RESOURCE_EXHAUSTED, and the cluster and the agent exactly as before. */
  const refused = async (req: Partial<cluster.CreateVmRequest>, nodeId: string): Promise<void> => {
    const before = await stateSnapshot(api);
    const agentBefore = (await agentVms(c.agents.find((a) => a.nodeId === nodeId)!.address)).map((v) => v.vmId).sort();
    await expectGrpcError(api.createVm(vmRequest(req)), status.RESOURCE_EXHAUSTED);
    expect(await stateSnapshot(api)).toEqual(before);
    expect((await agentVms(c.agents.find((a) => a.nodeId === nodeId)!.address)).map((v) => v.vmId).sort()).toEqual(agentBefore);
  };

  it('registers each node with its own ratios', async () => {
    const strict = await api.getNode({ nodeId: STRICT });
    const over = await api.getNode({ nodeId: OVERCOMMITTED });
    expect(strict).toMatchObject({ vcpus: VCPUS, memoryMib: MEMORY_MIB, cpuAllocationRatio: 1, ramAllocationRatio: 1 });
    expect(over).toMatchObject({ vcpus: VCPUS, memoryMib: MEMORY_MIB, cpuAllocationRatio: 4, ramAllocationRatio: 1.5 });
  });

  it('memory: 1.5 × 1024 MiB admits three 512 MiB VMs; 1.0 × 1024 MiB admits two and refuses the third', async () => {
    for (let i = 0; i < 3; i++) expect((await create({ memoryMib: 512, nodeId: OVERCOMMITTED })).nodeId).toBe(OVERCOMMITTED);
    for (let i = 0; i < 2; i++) expect((await create({ memoryMib: 512, nodeId: STRICT })).nodeId).toBe(STRICT);
    expect((await api.getNode({ nodeId: STRICT })).memoryMibAllocated).toBe(1024);
    expect((await api.getNode({ nodeId: OVERCOMMITTED })).memoryMibAllocated).toBe(1536);
    // The same third VM: refused where the ratio is 1.0 …
    await refused({ memoryMib: 512, nodeId: STRICT }, STRICT);
    // … and even the smallest VM, since the strict node is at exactly capacity × 1.0.
    await refused({ memoryMib: 1, nodeId: STRICT }, STRICT);
    // The overcommitted node is at 1536 = 1024 × 1.5: full as well.
    await refused({ memoryMib: 64, nodeId: OVERCOMMITTED }, OVERCOMMITTED);
    // And the scheduler finds no room anywhere.
    await refused({ memoryMib: 64 }, STRICT);
  });

  it('vCPUs: 4.0 × 2 admits four 2-vCPU VMs; 1.0 × 2 admits one and refuses the second', async () => {
    for (let i = 0; i < 4; i++) expect((await create({ vcpus: 2, memoryMib: 16, nodeId: OVERCOMMITTED })).nodeId).toBe(OVERCOMMITTED);
    expect((await create({ vcpus: 2, memoryMib: 16, nodeId: STRICT })).nodeId).toBe(STRICT);
    expect((await api.getNode({ nodeId: STRICT })).vcpusAllocated).toBe(2);
    expect((await api.getNode({ nodeId: OVERCOMMITTED })).vcpusAllocated).toBe(8);
    await refused({ vcpus: 1, memoryMib: 16, nodeId: STRICT }, STRICT);
    await refused({ vcpus: 1, memoryMib: 16, nodeId: OVERCOMMITTED }, OVERCOMMITTED);
  });

  it('the scheduler places on the node whose ratio still has room', async () => {
    // Strict node full in memory (1024 of 1024); the overcommitted one has 1536 − 1024 = 512 MiB left.
    await create({ memoryMib: 1024, nodeId: STRICT });
    await create({ memoryMib: 1024, nodeId: OVERCOMMITTED });
    const placed = await create({ memoryMib: 512 });
    expect(placed.nodeId).toBe(OVERCOMMITTED);
    await refused({ memoryMib: 1 }, STRICT);
  });
});
