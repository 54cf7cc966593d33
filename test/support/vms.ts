import { randomUUID } from 'node:crypto';
import { cluster } from '@vmm/proto';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';

/** An idle workload (no page writes), the cheapest VM to keep around. */
export const IDLE: cluster.Workload = {
  kind: cluster.WorkloadKind.WORKLOAD_KIND_IDLE,
  dirtyRatePagesPerSec: 0,
  workingSetMib: 0,
  seed: 1,
};

/** A valid CreateVmRequest (1 vCPU, 64 MiB, image `empty`, idle, unique name) with `overrides`. */
export function vmRequest(overrides: Partial<cluster.CreateVmRequest> = {}): cluster.CreateVmRequest {
  return cluster.CreateVmRequest.fromPartial({
    name: `vm-${randomUUID().slice(0, 8)}`,
    vcpus: 1,
    memoryMib: 64,
    image: 'empty',
    workload: IDLE,
    nodeId: '',
    antiAffinityGroup: '',
    labels: {},
    ...overrides,
  });
}

/** Every VM, following next_page_token. */
export async function listAllVms(api: ClusterApi, nodeId = '', pageSize = 100): Promise<cluster.Vm[]> {
  const vms: cluster.Vm[] = [];
  let pageToken = '';
  for (let pages = 0; pages < 10_000; pages++) {
    const res = await api.listVms({ nodeId, pageSize, pageToken });
    vms.push(...res.vms);
    if (!res.nextPageToken) return vms;
    pageToken = res.nextPageToken;
  }
  throw new Error('ListVms pagination did not end');
}

/** What a bad request must leave unchanged: the VMs and every node's allocations. */
export async function stateSnapshot(api: ClusterApi): Promise<{ vms: string[]; nodes: string[] }> {
  const [vms, nodes] = await Promise.all([listAllVms(api), api.listNodes({})]);
  return {
    vms: vms.map((v) => `${v.vmId} ${v.name} ${v.nodeId} ${v.state}`).sort(),
    nodes: nodes.nodes.map((n) => `${n.nodeId} vcpus=${n.vcpusAllocated} mem=${n.memoryMibAllocated} vms=${n.vmCount}`),
  };
}
