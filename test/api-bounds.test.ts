// Bounds on what one client can make the controller hold (issue #9, point 4): a 4 MiB receive limit,
// a bounded number of watch streams per client, a bounded number of VMs per registration. Each refusal
// has its status, changes nothing and leaves every process running. Against a real controller.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { agent, cluster, promiseClient } from '@vmm/proto';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { startTestCluster, stopTestCluster, type TestCluster } from './support/cluster.js';
import { expectGrpcError, status } from './support/grpc.js';
import { policy, workload } from './support/migration.js';
import { stateSnapshot, vmRequest } from './support/vms.js';
import { waitFor } from './support/wait-for.js';

const MAX_WATCHES_PER_CLIENT = 32;

let c: TestCluster;
let api: ClusterApi;
const vmIds: string[] = [];

beforeAll(async () => {
  c = await startTestCluster({ agents: 2 });
  api = c.api();
});

afterAll(() => stopTestCluster(c, api, vmIds));

function expectAlive(): void {
  expect(c.controller.running, 'controller alive').toBe(true);
  for (const a of c.agents) expect(a.process.running, `${a.nodeId} alive`).toBe(true);
}

it('a request above 4 MiB is RESOURCE_EXHAUSTED before it is decoded; nothing changes', async () => {
  const before = await stateSnapshot(api);
  const labels = { big: 'x'.repeat(5 * 1024 * 1024) };
  await expectGrpcError(api.createVm(vmRequest({ name: 'too-big', labels }), { timeoutMs: 30_000 }), status.RESOURCE_EXHAUSTED);
  expect(await stateSnapshot(api)).toEqual(before);
  expectAlive();
});

it('a registration listing more VMs than a node may hold is INVALID_ARGUMENT naming vms', async () => {
  // With node-2's own certificate (a node may register only as itself): a node gone wrong, not an intruder.
  const client = new agent.RegistryServiceClient(c.agentPlaneAddress, c.credentials.as('node-2'));
  const registry = promiseClient(client, agent.RegistryServiceService, agent);
  try {
    const before = (await api.listNodes({})).nodes.find((n) => n.nodeId === 'node-2');
    const vms = Array.from({ length: 10_001 }, (_, i) => agent.VmStatus.fromPartial({ vmId: `v${i}`, state: cluster.VmState.VM_STATE_RUNNING }));
    await expectGrpcError(
      registry.register({ nodeId: 'node-2', address: '127.0.0.1:1', vcpus: 1, memoryMib: 1024, cpuAllocationRatio: 1, ramAllocationRatio: 1, reportIntervalMs: 1000, vms }),
      status.INVALID_ARGUMENT,
      /vms/,
    );
    const after = (await api.listNodes({})).nodes.find((n) => n.nodeId === 'node-2');
    expect(after).toMatchObject({ address: before!.address, state: cluster.NodeState.NODE_STATE_READY, memoryMib: before!.memoryMib });
  } finally {
    client.close();
  }
  expectAlive();
});

it(`a client holds at most ${MAX_WATCHES_PER_CLIENT} watch streams: one more is RESOURCE_EXHAUSTED, a closed one frees its slot`, async () => {
  const vm = await api.createVm(vmRequest({ name: 'watched-slowly', memoryMib: 128, nodeId: 'node-1', workload: workload(cluster.WorkloadKind.WORKLOAD_KIND_UNIFORM, 2000, 64) }));
  vmIds.push(vm.vmId);
  // 1 MiB/s: the migration stays open for the whole test.
  const m = await api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2', policy: policy({ maxBandwidthMibPerSec: 1 }) });
  const open = (): Promise<{ stream: ReturnType<cluster.ClusterServiceClient['watchMigration']>; first: Promise<unknown> }> => {
    const stream = api.client.watchMigration({ migrationId: m.migrationId });
    const first = new Promise((resolve, reject) => {
      stream.once('data', resolve);
      stream.once('error', reject);
    });
    return Promise.resolve({ stream, first });
  };
  const streams = [];
  try {
    for (let i = 0; i < MAX_WATCHES_PER_CLIENT; i++) {
      const s = await open();
      await s.first; // each is open and has sent the current state
      streams.push(s.stream);
    }
    const extra = await open();
    await expect(extra.first).rejects.toMatchObject({ code: status.RESOURCE_EXHAUSTED });
    streams.pop()!.cancel();
    // The cancelled stream's slot comes back once the server sees the cancellation.
    await waitFor(
      async () => {
        const s = await open();
        try {
          await s.first;
          streams.push(s.stream);
          return true;
        } catch {
          return false;
        }
      },
      10_000,
      'a watch slot freed by a cancelled stream',
    );
  } finally {
    for (const s of streams) s.cancel();
    await api.cancelMigration({ migrationId: m.migrationId }).catch(() => {});
  }
  expectAlive();
});
