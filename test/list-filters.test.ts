// The List calls a scheduler filters with (docs/api.md, "More fields"): ListVms by state and label
// selector, ListMigrations by node, phase and reason, ListNodes in pages; Vm.migration_id while a VM
// moves and Migration.phase_transitions after. Against a real controller and agents.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pathTo, toProtoPhase } from '@vmm/migration/phase';
import { cluster } from '@vmm/proto';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { startTestCluster, stopTestCluster, type TestCluster } from './support/cluster.js';
import { expectGrpcError, status } from './support/grpc.js';
import { policy, short, waitForFinal, waitForPhase, workload } from './support/migration.js';
import { vmRequest } from './support/vms.js';
import { waitFor } from './support/wait-for.js';

let c: TestCluster;
let api: ClusterApi;
const vmIds: string[] = [];

beforeAll(async () => {
  c = await startTestCluster({ agents: 3 });
  api = c.api();
  for (const [name, labels] of [
    ['web-a', { tier: 'web', env: 'prod' }],
    ['web-b', { tier: 'web', env: 'dev' }],
    ['db-a', { tier: 'db', env: 'prod' }],
    ['plain', {}],
  ] as const) {
    vmIds.push((await api.createVm(vmRequest({ name, labels, nodeId: 'node-1' }))).vmId);
  }
});

afterAll(() => stopTestCluster(c, api, vmIds));

/** Every VM a filtered ListVms returns, one page of `pageSize` at a time. */
async function names(filter: Partial<cluster.ListVmsRequest>, pageSize = 1): Promise<string[]> {
  const out: string[] = [];
  let pageToken = '';
  do {
    const page = await api.listVms({ ...filter, pageSize, pageToken });
    expect(page.vms.length).toBeLessThanOrEqual(pageSize);
    out.push(...page.vms.map((v) => v.name));
    pageToken = page.nextPageToken;
  } while (pageToken);
  return out.sort();
}

it('ListVms filters by label selector and state, page by page', async () => {
  expect(await names({ labelSelector: 'tier=web' })).toEqual(['web-a', 'web-b']);
  expect(await names({ labelSelector: 'tier=web,env!=prod' })).toEqual(['web-b']);
  expect(await names({ labelSelector: 'env!=prod' }, 2)).toEqual(['plain', 'web-b']);
  expect(await names({ state: cluster.VmState.VM_STATE_RUNNING, labelSelector: 'env=prod' })).toEqual(['db-a', 'web-a']);
  expect(await names({ state: cluster.VmState.VM_STATE_PAUSED })).toEqual([]);
  await expectGrpcError(api.listVms({ labelSelector: 'tier in (web)' }), status.INVALID_ARGUMENT, /label_selector/);
  // A token belongs to its filter.
  const first = await api.listVms({ labelSelector: 'tier=web', pageSize: 1 });
  await expectGrpcError(api.listVms({ labelSelector: 'tier=db', pageSize: 1, pageToken: first.nextPageToken }), status.INVALID_ARGUMENT, /page_token/);
});

it('ListNodes pages through every node', async () => {
  const seen: string[] = [];
  let pageToken = '';
  do {
    const page = await api.listNodes({ pageSize: 2, pageToken });
    expect(page.nodes.length).toBeLessThanOrEqual(2);
    seen.push(...page.nodes.map((n) => n.nodeId));
    pageToken = page.nextPageToken;
  } while (pageToken);
  expect(seen).toEqual(['node-1', 'node-2', 'node-3']);
});

it('Vm.migration_id names the migration while the VM moves; phase_transitions and the ListMigrations filters after', async () => {
  const vm = await api.createVm(vmRequest({ name: 'mover', memoryMib: 128, nodeId: 'node-1', workload: workload(cluster.WorkloadKind.WORKLOAD_KIND_UNIFORM, 2000, 64) }));
  vmIds.push(vm.vmId);
  // 4 MiB/s: the first round alone takes seconds, long enough to see the VM MIGRATING.
  const slow = await api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2', policy: policy({ maxBandwidthMibPerSec: 4 }) });
  await waitForPhase(api, slow.migrationId, [cluster.MigrationPhase.MIGRATION_PHASE_PRECOPY], 30_000);
  const moving = await api.getVm({ vmId: vm.vmId });
  expect(moving).toMatchObject({ state: cluster.VmState.VM_STATE_MIGRATING, migrationId: slow.migrationId });
  await api.cancelMigration({ migrationId: slow.migrationId });
  expect(short((await waitForFinal(api, slow.migrationId, 60_000)).phase)).toBe('CANCELLED');
  await waitFor(async () => (await api.getVm({ vmId: vm.vmId })).state === cluster.VmState.VM_STATE_RUNNING, 30_000, 'the VM running again');
  expect((await api.getVm({ vmId: vm.vmId })).migrationId).toBe('');

  const done = await waitForFinal(api, (await api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-3' })).migrationId, 60_000);
  expect(done.phaseTransitions.map((t) => t.phase)).toEqual(['PENDING' as const, ...pathTo('PENDING', 'COMPLETED')].map(toProtoPhase));
  const times = done.phaseTransitions.map((t) => t.timeMs);
  expect(times).toEqual([...times].sort((a, b) => a - b));

  const ids = async (filter: Partial<cluster.ListMigrationsRequest>) => (await api.listMigrations({ ...filter, pageSize: 1000 })).migrations.map((m) => m.migrationId);
  expect(await ids({ nodeId: 'node-3' })).toEqual([done.migrationId]);
  expect((await ids({ nodeId: 'node-1' })).sort()).toEqual([slow.migrationId, done.migrationId].sort());
  expect(await ids({ phase: cluster.MigrationPhase.MIGRATION_PHASE_CANCELLED })).toEqual([slow.migrationId]);
  expect((await ids({ reason: 'user' })).sort()).toEqual([slow.migrationId, done.migrationId].sort());
  expect(await ids({ reason: 'drain' })).toEqual([]);
});
