// request_id makes the calls that change something safe to retry (docs/api.md, "Calls that are safe to
// retry"): a repeat gets the first call's result, concurrent repeats are carried out once, and the same
// id with another request is refused. Against a real controller, agents and Redis.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { startTestCluster, stopTestCluster, type TestCluster } from './support/cluster.js';
import { expectGrpcError, status } from './support/grpc.js';
import { listAllMigrations, short, waitForFinal } from './support/migration.js';
import { listAllVms, vmRequest } from './support/vms.js';

let c: TestCluster;
let api: ClusterApi;
const vmIds: string[] = [];

beforeAll(async () => {
  c = await startTestCluster({ agents: 2 });
  api = c.api();
});

afterAll(() => stopTestCluster(c, api, vmIds));

it('CreateVm: a retry returns the first VM, concurrent retries create one, another request under the id is refused', async () => {
  const requestId = randomUUID();
  const request = vmRequest({ name: 'once', nodeId: 'node-1', labels: { b: '2', a: '1' }, requestId });
  const [first, concurrent] = await Promise.all([api.createVm(request), api.createVm(request)]);
  vmIds.push(first.vmId);
  expect(concurrent.vmId).toBe(first.vmId);
  // Without the id the retry would be ALREADY_EXISTS (the name is taken); the map's order does not matter.
  const retried = await api.createVm({ ...request, labels: { a: '1', b: '2' } });
  expect(retried).toEqual(first);
  expect((await listAllVms(api)).filter((v) => v.name === 'once')).toHaveLength(1);

  await expectGrpcError(api.createVm({ ...request, vcpus: 2 }), status.INVALID_ARGUMENT, /request_id/);
  await expectGrpcError(api.createVm(vmRequest({ requestId: 'x'.repeat(129) })), status.INVALID_ARGUMENT, /request_id/);
  // A call that failed changed nothing and is carried out again: here it fails again, the same way.
  const taken = vmRequest({ name: 'once', requestId: randomUUID() });
  await expectGrpcError(api.createVm(taken), status.ALREADY_EXISTS);
  await expectGrpcError(api.createVm(taken), status.ALREADY_EXISTS);
});

it('MigrateVm: a retry returns the first migration instead of FAILED_PRECONDITION, also after it ended', async () => {
  const vm = await api.createVm(vmRequest({ name: 'moved-once', nodeId: 'node-1' }));
  vmIds.push(vm.vmId);
  const request = { vmId: vm.vmId, targetNodeId: 'node-2', requestId: randomUUID() };
  const first = await api.migrateVm(request);
  expect((await api.migrateVm(request)).migrationId).toBe(first.migrationId);
  expect(short((await waitForFinal(api, first.migrationId, 60_000)).phase)).toBe('COMPLETED');
  expect((await api.migrateVm(request)).migrationId).toBe(first.migrationId);
  expect((await listAllMigrations(api)).filter((m) => m.vmId === vm.vmId)).toHaveLength(1);
  expect((await api.getVm({ vmId: vm.vmId })).nodeId).toBe('node-2');
});

it('DeleteVm and DrainNode: a retry answers as the first call did', async () => {
  const vm = await api.createVm(vmRequest({ name: 'deleted-once', nodeId: 'node-2' }));
  const request = { vmId: vm.vmId, requestId: randomUUID() };
  await api.deleteVm(request);
  await api.deleteVm(request); // the VM is gone: without the id, NOT_FOUND
  await expectGrpcError(api.deleteVm({ vmId: vm.vmId }), status.NOT_FOUND);

  const drain = { nodeId: 'node-1', requestId: randomUUID() };
  const first = await api.drainNode(drain);
  expect(await api.drainNode(drain)).toEqual(first);
  await api.uncordonNode({ nodeId: 'node-1' });
});

it('GetVm takes a VM name where no VM has that id', async () => {
  const vm = await api.createVm(vmRequest({ name: 'found-by-name' }));
  vmIds.push(vm.vmId);
  expect((await api.getVm({ vmId: 'found-by-name' })).vmId).toBe(vm.vmId);
  expect((await api.getVm({ vmId: vm.vmId })).name).toBe('found-by-name');
  await expectGrpcError(api.getVm({ vmId: 'no-such-name' }), status.NOT_FOUND);
});
