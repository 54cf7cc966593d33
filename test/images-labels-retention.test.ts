// ListImages, node labels with CreateVm.node_selector, and MIGRATION_RETENTION (docs/api.md "Images"
// and "More fields"), against a real controller and agents: images with their sizes and VM counts;
// VMs placed and migrated only onto labelled nodes, refused (nothing created) when none matches;
// labels that outlive an agent and a controller restart; a finished migration gone after its retention.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getImage } from '@vmm/emulator';
import { cluster } from '@vmm/proto';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { startTestCluster, stopTestCluster, type TestCluster } from './support/cluster.js';
import { expectGrpcError, status } from './support/grpc.js';
import { short, waitForFinal } from './support/migration.js';
import { stateSnapshot, vmRequest } from './support/vms.js';
import { waitFor } from './support/wait-for.js';

const CUSTOM = 'registry.local/team/app:1.2';
const RETENTION_MS = 2_000;

let c: TestCluster;
let api: ClusterApi;
const vmIds: string[] = [];

async function create(overrides: Partial<cluster.CreateVmRequest>): Promise<cluster.Vm> {
  const vm = await api.createVm(vmRequest(overrides));
  vmIds.push(vm.vmId);
  return vm;
}

const nodeLabels = async (nodeId: string) => (await api.getNode({ nodeId })).labels;

beforeAll(async () => {
  c = await startTestCluster({ agents: 3, controllerEnv: { MIGRATION_RETENTION: `${RETENTION_MS / 1000}s` } });
  api = c.api();
});

afterAll(() => stopTestCluster(c, api, vmIds));

describe('ListImages', () => {
  it('lists every preset and each image in use, with sizes the name determines and VM counts', async () => {
    await create({ image: CUSTOM, memoryMib: 256 });
    await create({ image: CUSTOM, memoryMib: 256 });
    await create({ image: 'alpine-3.20' });
    const { images } = await api.listImages({});
    expect(images.map((i) => i.name)).toEqual(['alpine-3.20', 'debian-12', 'empty', 'ubuntu-24.04', CUSTOM]);
    for (const image of images) {
      // The controller's sizes are the emulator's: what the agents load.
      expect(Number(image.sizeMib), image.name).toBe(getImage(image.name)!.pages / 256);
    }
    expect(images.find((i) => i.name === CUSTOM)).toMatchObject({ preset: false, vmCount: 2 });
    expect(images.find((i) => i.name === 'alpine-3.20')).toMatchObject({ preset: true, vmCount: 1, sizeMib: 16 });
    expect(images.find((i) => i.name === 'ubuntu-24.04')).toMatchObject({ preset: true, vmCount: 0, sizeMib: 96 });
    const version = await api.getVersion({});
    expect(version.features).toEqual(expect.arrayContaining(['list_images', 'node_labels', 'node_selector', 'migration_retention']));
  });
});

describe('node labels and node_selector', () => {
  it('LabelNode sets and removes labels, validated like VM labels', async () => {
    expect((await api.labelNode({ nodeId: 'node-2', labels: { disk: 'ssd', zone: 'a' }, remove: [] })).labels).toEqual({ disk: 'ssd', zone: 'a' });
    expect((await api.labelNode({ nodeId: 'node-2', labels: {}, remove: ['zone'] })).labels).toEqual({ disk: 'ssd' });
    expect((await api.listNodes({})).nodes.find((n) => n.nodeId === 'node-2')!.labels).toEqual({ disk: 'ssd' });
    await expectGrpcError(api.labelNode({ nodeId: 'node-2', labels: { '': 'x' }, remove: [] }), status.INVALID_ARGUMENT, /^labels/);
    await expectGrpcError(api.labelNode({ nodeId: 'node-2', labels: { a: 'x'.repeat(254) }, remove: [] }), status.INVALID_ARGUMENT, /^labels/);
    await expectGrpcError(api.labelNode({ nodeId: 'node-2', labels: { a: '1' }, remove: ['a'] }), status.INVALID_ARGUMENT, /^remove/);
    await expectGrpcError(api.labelNode({ nodeId: 'node-9', labels: { a: '1' }, remove: [] }), status.NOT_FOUND);
    expect(await nodeLabels('node-2')).toEqual({ disk: 'ssd' });
  });

  it('places a VM only on a node carrying every selected label, and refuses, creating nothing, when none does', async () => {
    for (let i = 0; i < 3; i++) expect((await create({ nodeSelector: { disk: 'ssd' } })).nodeId).toBe('node-2');
    const before = await stateSnapshot(api);
    await expectGrpcError(api.createVm(vmRequest({ nodeSelector: { disk: 'nvme' } })), status.RESOURCE_EXHAUSTED, /node selector/);
    await expectGrpcError(api.createVm(vmRequest({ nodeSelector: { disk: 'ssd', zone: 'a' } })), status.RESOURCE_EXHAUSTED, /node selector/);
    await expectGrpcError(api.createVm(vmRequest({ nodeId: 'node-1', nodeSelector: { disk: 'ssd' } })), status.FAILED_PRECONDITION, /node_selector/);
    await expectGrpcError(api.createVm(vmRequest({ nodeSelector: { '': 'ssd' } })), status.INVALID_ARGUMENT, /^node_selector/);
    expect(await stateSnapshot(api)).toEqual(before);
  });

  it('MigrateVm keeps to the selector: the scheduler picks a matching node, an explicit other target is refused', async () => {
    const vm = await create({ nodeSelector: { disk: 'ssd' } });
    expect(vm.nodeId).toBe('node-2');
    // No other node carries disk=ssd yet: nowhere to go.
    await expectGrpcError(api.migrateVm({ vmId: vm.vmId }), status.RESOURCE_EXHAUSTED, /node selector/);
    await api.labelNode({ nodeId: 'node-3', labels: { disk: 'ssd' }, remove: [] });
    await expectGrpcError(api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-1' }), status.FAILED_PRECONDITION, /node_selector/);
    const m = await api.migrateVm({ vmId: vm.vmId });
    expect(m.targetNodeId).toBe('node-3');
    const done = await waitForFinal(api, m.migrationId, 60_000);
    expect(short(done.phase), done.error).toBe('COMPLETED');
    expect((await api.getVm({ vmId: vm.vmId })).nodeId).toBe('node-3');
  });

  it('labels survive an agent restart (re-registration) and a controller restart', async () => {
    await api.labelNode({ nodeId: 'node-1', labels: { gpu: 'a100' }, remove: [] });
    const reportedBefore = (await api.getNode({ nodeId: 'node-1' })).lastReportMs;
    await c.killAgent(0, 'SIGKILL');
    await c.startAgent(0);
    await waitFor(
      async () => {
        const n = await api.getNode({ nodeId: 'node-1' });
        return n.state === cluster.NodeState.NODE_STATE_READY && n.lastReportMs > reportedBefore;
      },
      30_000,
      'node-1 registered and READY again',
    );
    expect(await nodeLabels('node-1')).toEqual({ gpu: 'a100' });
    const restartedAt = Date.now();
    await c.restartController();
    api.close();
    api = c.api();
    // Every agent has reported to the new controller (READY alone may be its start-up grace).
    await waitFor(async () => (await api.listNodes({})).nodes.every((n) => n.lastReportMs > restartedAt), 30_000, 'reports to the restarted controller');
    expect(await nodeLabels('node-1')).toEqual({ gpu: 'a100' });
    expect(await nodeLabels('node-2')).toEqual({ disk: 'ssd' });
    expect((await create({ nodeSelector: { gpu: 'a100' } })).nodeId).toBe('node-1');
  });
});

describe('MIGRATION_RETENTION', () => {
  it('removes a finished migration after the retention: GetMigration NOT_FOUND, gone from ListMigrations', async () => {
    const vm = await create({ nodeId: 'node-1' });
    const m = await api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-3' });
    const done = await waitForFinal(api, m.migrationId, 60_000);
    expect(short(done.phase), done.error).toBe('COMPLETED');
    const endedAt = Date.now();
    await waitFor(
      async () => {
        try {
          await api.getMigration({ migrationId: m.migrationId });
          return false;
        } catch (error) {
          return (error as { code?: number }).code === status.NOT_FOUND;
        }
      },
      30_000,
      'the finished migration removed',
    );
    // Not before its retention (the sweep runs every half retention).
    expect(Date.now() - endedAt).toBeGreaterThanOrEqual(RETENTION_MS - 1_000);
    await expectGrpcError(api.getMigration({ migrationId: m.migrationId }), status.NOT_FOUND);
    expect((await api.listMigrations({ vmId: vm.vmId, pageSize: 100, pageToken: '' })).migrations).toEqual([]);
    // The VM itself stays where the migration took it.
    expect(await api.getVm({ vmId: vm.vmId })).toMatchObject({ nodeId: 'node-3', state: cluster.VmState.VM_STATE_RUNNING });
  });
});
