// PauseVm, ResumeVm, StopVm, StartVm (docs/api.md, "VM lifecycle and live control") against a real
// controller, agents and Redis: the workload stops and continues where it was, a stopped VM keeps
// its record and allocation and holds no memory, a start boots it fresh, and every call the state does
// not allow (a migrating VM among them) is FAILED_PRECONDITION with a stable reason.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cluster, decodeStatusDetails, STATUS_DETAILS_TRAILER } from '@vmm/proto';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { startTestCluster, stopTestCluster, type TestCluster } from './support/cluster.js';
import { expectGrpcError, status } from './support/grpc.js';
import { agentAddress, agentVms, allocations, MigrationPhase, policy, waitForFinal, waitForPhase, workload } from './support/migration.js';
import { vmRequest } from './support/vms.js';
import { waitFor } from './support/wait-for.js';

const { VmState, WorkloadKind } = cluster;

let c: TestCluster;
let api: ClusterApi;
const vmIds: string[] = [];

beforeAll(async () => {
  c = await startTestCluster({ agents: 2 });
  api = c.api();
});

afterAll(() => stopTestCluster(c, api, vmIds));

/** The agent's own view of the VM (its ListVms): state, writes counter, resident pages. */
async function onAgent(nodeId: string, vmId: string) {
  const vm = (await agentVms(agentAddress(c, nodeId))).find((v) => v.vmId === vmId);
  if (!vm) throw new Error(`node ${nodeId} does not hold ${vmId}`);
  return vm;
}

/** The ErrorInfo reason of a refused call. */
async function refusedWith(call: Promise<unknown>, code: status): Promise<string> {
  const error = await expectGrpcError(call, code);
  const [trailer] = error.metadata.get(STATUS_DETAILS_TRAILER);
  return decodeStatusDetails(trailer as Buffer).errorInfo?.reason ?? '';
}

it('pause stops the workload and resume continues it; stop frees the memory, keeps the allocation; start boots fresh', async () => {
  const vm = await api.createVm(
    vmRequest({ nodeId: 'node-1', memoryMib: 64, workload: workload(WorkloadKind.WORKLOAD_KIND_UNIFORM, 2_000, 16) }),
  );
  vmIds.push(vm.vmId);
  await waitFor(async () => (await onAgent('node-1', vm.vmId)).writesTotal > 1_000, 15_000, 'the workload writing');
  const allocBefore = await allocations(api);

  const paused = await api.pauseVm({ vmId: vm.vmId });
  expect(paused.state).toBe(VmState.VM_STATE_PAUSED);
  const writesAtPause = (await onAgent('node-1', vm.vmId)).writesTotal;
  expect((await onAgent('node-1', vm.vmId)).state).toBe(VmState.VM_STATE_PAUSED);
  // A retried pause answers as the first did; the node's next report still says PAUSED, no write since.
  expect((await api.pauseVm({ vmId: vm.vmId })).state).toBe(VmState.VM_STATE_PAUSED);
  const reportsBefore = (await api.getNode({ nodeId: 'node-1' })).lastReportMs;
  await waitFor(async () => (await api.getNode({ nodeId: 'node-1' })).lastReportMs > reportsBefore, 10_000, 'a report after the pause');
  expect((await api.getVm({ vmId: vm.vmId })).state).toBe(VmState.VM_STATE_PAUSED);
  expect((await onAgent('node-1', vm.vmId)).writesTotal).toBe(writesAtPause);
  // A paused VM is not migrated, nor started.
  await expectGrpcError(api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2' }), status.FAILED_PRECONDITION);
  expect(await refusedWith(api.startVm({ vmId: vm.vmId }), status.FAILED_PRECONDITION)).toBe('VM_STATE_CONFLICT');

  expect((await api.resumeVm({ vmId: vm.vmId })).state).toBe(VmState.VM_STATE_RUNNING);
  // The same workload continues: its counter goes on from where the pause left it, not from 0.
  await waitFor(async () => (await onAgent('node-1', vm.vmId)).writesTotal > writesAtPause + 500, 15_000, 'writes after the resume');
  expect(await refusedWith(api.resumeVm({ vmId: vm.vmId }), status.FAILED_PRECONDITION)).toBe('VM_STATE_CONFLICT');

  const stopped = await api.stopVm({ vmId: vm.vmId });
  expect(stopped.state).toBe(VmState.VM_STATE_STOPPED);
  const onNode = await onAgent('node-1', vm.vmId);
  expect([onNode.state, onNode.residentPages]).toEqual([VmState.VM_STATE_STOPPED, 0]);
  expect(await allocations(api)).toEqual(allocBefore);
  expect(await refusedWith(api.pauseVm({ vmId: vm.vmId }), status.FAILED_PRECONDITION)).toBe('VM_STATE_CONFLICT');
  expect(await refusedWith(api.resumeVm({ vmId: vm.vmId }), status.FAILED_PRECONDITION)).toBe('VM_STATE_CONFLICT');
  await expectGrpcError(api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2' }), status.FAILED_PRECONDITION);
  expect((await api.stopVm({ vmId: vm.vmId })).state).toBe(VmState.VM_STATE_STOPPED);
  const writesAtStop = (await onAgent('node-1', vm.vmId)).writesTotal;

  const started = await api.startVm({ vmId: vm.vmId });
  expect([started.state, started.nodeId]).toEqual([VmState.VM_STATE_RUNNING, 'node-1']);
  // Booted fresh: a new workload whose counter starts again from 0, not the stopped one's.
  const fresh = await onAgent('node-1', vm.vmId);
  expect(fresh.state).toBe(VmState.VM_STATE_RUNNING);
  expect(fresh.writesTotal).toBeLessThan(writesAtStop);
  await waitFor(async () => (await onAgent('node-1', vm.vmId)).writesTotal > 0, 15_000, 'the fresh workload writing');
  expect(await allocations(api)).toEqual(allocBefore);
  expect(await refusedWith(api.startVm({ vmId: vm.vmId }), status.FAILED_PRECONDITION)).toBe('VM_STATE_CONFLICT');
});

it('a migrating VM is neither paused, resumed, stopped nor started (FAILED_PRECONDITION, VM_BUSY), and an unknown one is NOT_FOUND', async () => {
  const vm = await api.createVm(
    vmRequest({ nodeId: 'node-1', memoryMib: 256, image: 'debian-12', workload: workload(WorkloadKind.WORKLOAD_KIND_UNIFORM, 20_000, 128) }),
  );
  vmIds.push(vm.vmId);
  // 8 MiB/s against ~80 MiB/s of dirtying: pre-copy goes on until cancelled.
  const m = await api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2', policy: policy({ maxBandwidthMibPerSec: 8, maxRounds: 1000 }) });
  await waitForPhase(api, m.migrationId, [MigrationPhase.MIGRATION_PHASE_PRECOPY], 30_000, 20);
  for (const call of [api.pauseVm, api.resumeVm, api.stopVm, api.startVm]) {
    expect(await refusedWith(call.call(api, { vmId: vm.vmId }), status.FAILED_PRECONDITION)).toBe('VM_BUSY');
  }
  await api.cancelMigration({ migrationId: m.migrationId });
  await waitForFinal(api, m.migrationId, 60_000);
  expect((await api.getVm({ vmId: vm.vmId })).state).toBe(VmState.VM_STATE_RUNNING);
  // The rollback is in Redis before the agents hear of it: the source resumes a moment after.
  await waitFor(async () => (await onAgent('node-1', vm.vmId)).state === VmState.VM_STATE_RUNNING, 10_000, 'the source running again');

  await expectGrpcError(api.pauseVm({ vmId: 'no-such-vm' }), status.NOT_FOUND);
  await expectGrpcError(api.stopVm({ vmId: '' }), status.INVALID_ARGUMENT, /vm_id/);
});
