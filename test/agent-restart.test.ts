// What an agent must remember across its own restart, and what the controller does about VMs that
// an agent lost, against real processes (docs/design.md, "Failure semantics"):
// - fences live in STATE_DIR: a restarted agent still refuses a VM id at an epoch it was fenced past;
// - a source agent restarted fast mid-migration (before the node could go NOT_READY) leaves no ghost:
//   the migration fails and the VM, which no agent runs any more, is FAILED, not RUNNING;
// - a VM deleted while its node was unreachable is destroyed when the node reports it again, and is
//   not adopted back;
// - a restartable VM (RESTART_POLICY_ALWAYS) whose node falls silent is booted again on another node
//   under a new epoch after twice the lease, and the old copy is destroyed when its node is back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agent, cluster } from '@vmm/proto';
import { startTestCluster, type TestCluster } from './support/cluster.js';
import { expectGrpcError, status } from './support/grpc.js';
import { agentApi, agentVms, MigrationPhase, policy, short, waitForFinal, waitForPhase, workload, WorkloadKind } from './support/migration.js';
import { vmRequest } from './support/vms.js';
import { waitFor } from './support/wait-for.js';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';

const REPORT_INTERVAL_MS = 250;
const LEASE_MS = 1_000;

let c: TestCluster;
let api: ClusterApi;

beforeAll(async () => {
  c = await startTestCluster({ agents: 3, reportIntervalMs: REPORT_INTERVAL_MS, controllerEnv: { NODE_LEASE_MS: String(LEASE_MS) } });
  api = c.api();
});

afterAll(async () => {
  api?.close();
  await c?.stop();
});

const busy = (nodeId: string, over: Partial<cluster.CreateVmRequest> = {}) =>
  vmRequest({ memoryMib: 64, image: 'alpine-3.20', nodeId, workload: workload(WorkloadKind.WORKLOAD_KIND_UNIFORM, 2_000, 16), ...over });

async function held(index: number, vmId: string): Promise<agent.VmStatus | undefined> {
  return (await agentVms(c.agents[index]!.address)).find((v) => v.vmId === vmId);
}

describe('fences survive an agent restart', () => {
  it('a restarted source still refuses the VM at the epoch it gave up', async () => {
    const vm = await api.createVm(busy('node-1'));
    const m = await api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2' });
    expect(short((await waitForFinal(api, m.migrationId, 60_000)).phase)).toBe('COMPLETED');
    await c.killAgent(0, 'SIGKILL');
    await c.startAgent(0);
    const direct = agentApi(c.agents[0]!.address);
    const spec: agent.VmSpec = agent.VmSpec.fromPartial({ vmId: vm.vmId, name: vm.name, vcpus: 1, memoryMib: 64, image: 'alpine-3.20', fencingEpoch: 1 });
    await expectGrpcError(direct.createVm({ spec }), status.FAILED_PRECONDITION, /fenced/);
    await expectGrpcError(direct.prepareIncoming({ migrationId: 'late', spec, token: 'token-0123456789' }), status.FAILED_PRECONDITION, /fenced/);
    direct.close();
    expect(await held(0, vm.vmId)).toBeUndefined();
    await api.deleteVm({ vmId: vm.vmId });
  });
});

describe('a source agent restarted fast mid-migration', () => {
  it('leaves no ghost: the migration FAILS and the VM no agent runs is FAILED', async () => {
    await c.waitForNodes();
    const vm = await api.createVm(busy('node-1', { memoryMib: 128, image: 'debian-12' }));
    // 4 MiB/s: round 0 takes seconds, so the restart lands in PRECOPY.
    const m = await api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2', policy: policy({ maxBandwidthMibPerSec: 4 }) });
    await waitForPhase(api, m.migrationId, [MigrationPhase.MIGRATION_PHASE_PRECOPY], 30_000, 20);
    await c.killAgent(0, 'SIGKILL');
    await c.startAgent(0);
    const done = await waitForFinal(api, m.migrationId, 60_000);
    expect(short(done.phase)).toBe('FAILED');
    await waitFor(async () => short((await api.getVm({ vmId: vm.vmId })).state) === 'FAILED', 20_000, 'the lost VM FAILED');
    expect(await held(0, vm.vmId)).toBeUndefined();
    expect(await held(1, vm.vmId)).toBeUndefined();
    await api.deleteVm({ vmId: vm.vmId });
  });
});

describe('DeleteVm while the node cannot be reached', () => {
  it('is remembered: the copy is destroyed when the node is back, and the VM is not adopted again', async () => {
    await c.waitForNodes();
    const vm = await api.createVm(busy('node-3'));
    c.signal('node-3', 'SIGSTOP');
    try {
      await waitFor(async () => short((await api.getNode({ nodeId: 'node-3' })).state).endsWith('NOT_READY'), 20_000, 'node-3 NOT_READY');
      await api.deleteVm({ vmId: vm.vmId });
      await expectGrpcError(api.getVm({ vmId: vm.vmId }), status.NOT_FOUND);
    } finally {
      c.signal('node-3', 'SIGCONT');
    }
    await c.waitForNodes();
    await waitFor(async () => (await held(2, vm.vmId)) === undefined, 20_000, 'node-3 destroyed the deleted VM');
    await expectGrpcError(api.getVm({ vmId: vm.vmId }), status.NOT_FOUND);
    expect((await api.getNode({ nodeId: 'node-3' })).memoryMibAllocated).toBe(0);
  });
});

describe('RESTART_POLICY_ALWAYS', () => {
  it('is paused on a silent node, booted elsewhere under a new epoch, and the old copy destroyed when the node is back', async () => {
    await c.waitForNodes();
    const vm = await api.createVm(busy('node-3', { restartPolicy: cluster.RestartPolicy.RESTART_POLICY_ALWAYS }));
    expect(vm.restartPolicy).toBe(cluster.RestartPolicy.RESTART_POLICY_ALWAYS);
    // The agent falls silent (frozen, and its VMs with it); once back, its lease has run out.
    expect(c.signal('node-3', 'SIGSTOP')).toBeGreaterThan(0);
    let restarted: cluster.Vm | undefined;
    try {
      await waitFor(async () => {
        restarted = await api.getVm({ vmId: vm.vmId });
        return restarted.nodeId !== 'node-3' && short(restarted.state) === 'RUNNING';
      }, 30_000, 'the VM restarted on another node');
      expect(restarted!.fencingEpoch).toBe(vm.fencingEpoch + 1);
    } finally {
      c.signal('node-3', 'SIGCONT');
    }
    const index = c.agents.findIndex((a) => a.nodeId === restarted!.nodeId);
    expect((await held(index, vm.vmId))?.fencingEpoch).toBe(vm.fencingEpoch + 1);
    // node-3 is back: its stale copy (epoch 1) goes at the controller's word.
    await waitFor(async () => (await held(2, vm.vmId)) === undefined, 20_000, 'the old copy destroyed on node-3');
    await waitFor(async () => !(await api.getNode({ nodeId: 'node-3' })).reportedVms.some((r) => r.vmId === vm.vmId), 10_000, 'node-3 reporting no copy');
    await api.deleteVm({ vmId: vm.vmId });
  });
});
