// The reservation Lua script against a real redis-server: admission rules, atomicity under 50
// concurrent reservations, and release giving everything back.
import { beforeEach, describe, expect, it } from 'vitest';
import { cluster } from '@vmm/proto';
import type { VmRecord } from '../common/model.js';
import { testVm } from '../testing/records.js';
import { useSpecRedis } from '../testing/redis-spec.fixture.js';
import { NodeRepository } from './node.repository.js';
import { PlacementRepository } from './placement.repository.js';
import { redisKeys, type RedisKeys } from './redis-keys.js';
import { VmRepository } from './vm.repository.js';

const STALE_MS = 3000;
const db = useSpecRedis();
let keys: RedisKeys;
let nodes: NodeRepository;
let vms: VmRepository;
let placement: PlacementRepository;

beforeEach(async () => {
  keys = redisKeys(db.newPrefix());
  nodes = new NodeRepository(db.redis, keys);
  vms = new VmRepository(db.redis, keys);
  placement = new PlacementRepository(db.redis, keys);
  await nodes.upsertRegistration(
    { nodeId: 'n1', address: '127.0.0.1:1', vcpus: 8, memoryMib: 1000, cpuAllocationRatio: 4, ramAllocationRatio: 1.5, agentVersion: '' },
    Date.now(),
  );
});

let seq = 0;
const vm = (over: Partial<VmRecord> = {}): VmRecord =>
  testVm({ vmId: `vm-${String(++seq).padStart(6, '0')}`, name: `name-${seq}`, nodeId: 'n1', memoryMib: 150, labels: { a: 'b' }, ...over });
const reserve = (v: VmRecord) => placement.reserve(v, Date.now(), STALE_MS);

describe('reserve', () => {
  it('records the VM, its name, indexes and the node allocation at once', async () => {
    const v = vm({ antiAffinityGroup: 'g' });
    expect(await reserve(v)).toBe('OK');
    expect(await vms.get(v.vmId)).toEqual(v);
    expect(await vms.idByName(v.name)).toBe(v.vmId);
    expect((await vms.listPage('', 10, '')).vms.map((x) => x.vmId)).toEqual([v.vmId]);
    expect(await vms.idsOnNode('n1')).toEqual([v.vmId]);
    expect(await vms.antiAffinityNodeIds('g')).toEqual(new Set(['n1']));
    expect(await nodes.get('n1')).toMatchObject({ vcpusAllocated: 1, memoryMibAllocated: 150, vmCount: 1 });
    expect((await nodes.list())[0]!.imageCounts).toEqual({ empty: 1 });
    await placement.release(v.vmId);
    expect((await nodes.list())[0]!.imageCounts).toEqual({});
  });

  it.each([
    ['an unknown node', { nodeId: 'nope' }, 'NO_NODE'],
    ['too much memory for the ratio', { memoryMib: 1501 }, 'NO_MEMORY'],
    ['too many vcpus for the ratio', { vcpus: 33 }, 'NO_VCPUS'],
  ] as const)('refuses %s and changes nothing', async (_case, over, outcome) => {
    expect(await reserve(vm(over))).toBe(outcome);
    expect(await nodes.get('n1')).toMatchObject({ vcpusAllocated: 0, memoryMibAllocated: 0, vmCount: 0 });
    expect((await vms.listPage('', 10, '')).vms).toEqual([]);
  });

  it('refuses a name in use, a cordoned node, a silent node and a second VM of a group', async () => {
    const first = vm({ antiAffinityGroup: 'g' });
    expect(await reserve(first)).toBe('OK');
    expect(await reserve(vm({ name: first.name }))).toBe('NAME_TAKEN');
    expect(await reserve(vm({ antiAffinityGroup: 'g' }))).toBe('ANTI_AFFINITY');
    await nodes.setCordoned('n1', true);
    expect(await reserve(vm())).toBe('CORDONED');
    await nodes.setCordoned('n1', false);
    expect(await placement.reserve(vm(), Date.now() + STALE_MS + 1, STALE_MS)).toBe('NOT_READY');
    expect(await nodes.get('n1')).toMatchObject({ vcpusAllocated: 1, memoryMibAllocated: 150, vmCount: 1 });
  });

  it('adopt skips the node checks (a VM that already runs there)', async () => {
    await nodes.setCordoned('n1', true);
    expect(await placement.reserve(vm({ memoryMib: 5000 }), Date.now(), STALE_MS, true)).toBe('OK');
    expect((await nodes.get('n1'))!.memoryMibAllocated).toBe(5000);
  });

  it('50 concurrent reservations on a node with room for 10: exactly 10 succeed', async () => {
    const outcomes = await Promise.all(Array.from({ length: 50 }, () => reserve(vm())));
    expect(outcomes.filter((o) => o === 'OK')).toHaveLength(10);
    expect(outcomes.filter((o) => o === 'NO_MEMORY')).toHaveLength(40);
    expect(await nodes.get('n1')).toMatchObject({ memoryMibAllocated: 1500, vcpusAllocated: 10, vmCount: 10 });
    expect((await vms.listPage('', 100, '')).vms).toHaveLength(10);
  });

  it('50 concurrent reservations of one name: exactly one succeeds', async () => {
    const outcomes = await Promise.all(Array.from({ length: 50 }, () => reserve(vm({ name: 'same', memoryMib: 1 }))));
    expect(outcomes.filter((o) => o === 'OK')).toHaveLength(1);
    expect(outcomes.filter((o) => o === 'NAME_TAKEN')).toHaveLength(49);
  });
});

describe('release', () => {
  it('gives back allocation, group, name and index entries, and is idempotent', async () => {
    const v = vm({ antiAffinityGroup: 'g' });
    await reserve(v);
    expect(await placement.release(v.vmId)).toBe(true);
    expect(await placement.release(v.vmId)).toBe(false);
    expect(await vms.get(v.vmId)).toBeUndefined();
    expect(await vms.idByName(v.name)).toBeUndefined();
    expect(await vms.antiAffinityNodeIds('g')).toEqual(new Set());
    expect(await vms.idsOnNode('n1')).toEqual([]);
    expect(await nodes.get('n1')).toMatchObject({ vcpusAllocated: 0, memoryMibAllocated: 0, vmCount: 0 });
    expect(await reserve(vm({ name: v.name, antiAffinityGroup: 'g' }))).toBe('OK');
  });
});

describe('pagination index', () => {
  it('pages in id order, optionally per node', async () => {
    await nodes.upsertRegistration(
      { nodeId: 'n2', address: '127.0.0.1:2', vcpus: 8, memoryMib: 1000, cpuAllocationRatio: 4, ramAllocationRatio: 1.5, agentVersion: '' },
      Date.now(),
    );
    const made = [vm({ memoryMib: 1 }), vm({ memoryMib: 1, nodeId: 'n2' }), vm({ memoryMib: 1 }), vm({ memoryMib: 1 })];
    for (const v of made) expect(await reserve(v)).toBe('OK');
    const p1 = await vms.listPage('', 2, '');
    expect(p1.more).toBe(true);
    const p2 = await vms.listPage(p1.vms[1]!.vmId, 2, '');
    expect(p2.more).toBe(false);
    expect([...p1.vms, ...p2.vms].map((v) => v.vmId)).toEqual(made.map((v) => v.vmId));
    expect((await vms.listPage('', 10, 'n2')).vms.map((v) => v.vmId)).toEqual([made[1]!.vmId]);
  });
});

describe('reports', () => {
  const report = (vms: { vmId: string; state: cluster.VmState; fencingEpoch: number; residentPages?: number; outgoing?: boolean }[], over: object = {}) => ({
    memoryUsedBytes: 0,
    ksm: undefined,
    ksmKnobs: undefined,
    reportedVms: [],
    missingGraceMs: 1_000,
    vms: vms.map(({ residentPages = 1, ...v }) => ({
      outgoing: false,
      ...v,
      measured: { dirtyRatePagesPerSec: 1.5, workingSetPages: 1, residentPages },
    })),
    ...over,
  });

  it('update the node and its VMs; skip VMs placed elsewhere; unknown node is reported', async () => {
    const v = vm();
    await reserve(v);
    await vms.setState(v.vmId, cluster.VmState.VM_STATE_RUNNING, [cluster.VmState.VM_STATE_PENDING]);
    const reportedVms = [{ vmId: v.vmId, state: cluster.VmState.VM_STATE_PAUSED, fencingEpoch: 1, migrationRole: cluster.MigrationRole.MIGRATION_ROLE_NONE, migrationId: '' }];
    const r = await nodes.applyReport(
      'n1',
      42,
      report(
        [
          { vmId: v.vmId, state: cluster.VmState.VM_STATE_PAUSED, fencingEpoch: v.fencingEpoch, residentPages: 12 },
          { vmId: 'vm-unknown', state: cluster.VmState.VM_STATE_RUNNING, fencingEpoch: 0 },
        ],
        {
          memoryUsedBytes: 3 * 1024 * 1024,
          ksm: { pagesShared: 1, pagesSharing: 2, pagesUnshared: 0, pagesVolatile: 0, fullScans: 3, generalProfitBytes: 4096 },
          ksmKnobs: { run: 1 },
          reportedVms,
        },
      ),
    );
    expect(r).toEqual({ known: true, wasNotReady: false, missing: [] });
    expect(await vms.get(v.vmId)).toMatchObject({ state: 'VM_STATE_PAUSED', dirtyRatePagesPerSec: 1.5, workingSetPages: 1, residentPages: 12 });
    expect(await vms.get('vm-unknown')).toBeUndefined();
    expect(await nodes.get('n1')).toMatchObject({ lastReportMs: 42, memoryUsedBytes: 3 * 1024 * 1024, ksmKnobs: { run: 1 }, reportedVms });
    const gone = await nodes.applyReport('ghost', 1, report([]));
    expect(gone.known).toBe(false);
    expect(await db.redis.exists(keys.node('ghost'))).toBe(0);
  });

  it('leave copies of VMs placed elsewhere, or at another epoch, untouched', async () => {
    const v = vm();
    await reserve(v);
    await vms.setFields(v.vmId, { state: cluster.VmState.VM_STATE_RUNNING, fencingEpoch: '3', residentPages: '5' });
    await nodes.upsertRegistration(
      { nodeId: 'n2', address: '127.0.0.1:2', vcpus: 8, memoryMib: 1000, cpuAllocationRatio: 4, ramAllocationRatio: 1.5, agentVersion: '' },
      Date.now(),
    );
    await nodes.applyReport('n2', Date.now(), report([{ vmId: v.vmId, state: cluster.VmState.VM_STATE_PAUSED, fencingEpoch: 3, residentPages: 99 }]));
    await nodes.applyReport('n1', Date.now(), report([{ vmId: v.vmId, state: cluster.VmState.VM_STATE_PAUSED, fencingEpoch: 2, residentPages: 99 }]));
    expect(await vms.get(v.vmId)).toMatchObject({ nodeId: 'n1', state: cluster.VmState.VM_STATE_RUNNING, residentPages: 5 });
  });

  it('mark a VM the node leaves out as missing, and return it once the grace has passed', async () => {
    const v = vm();
    await reserve(v);
    await vms.setState(v.vmId, cluster.VmState.VM_STATE_RUNNING, [cluster.VmState.VM_STATE_PENDING]);
    const pending = vm();
    await reserve(pending); // PENDING (being created): never missing
    expect((await nodes.applyReport('n1', 10_000, report([]))).missing).toEqual([]);
    expect((await nodes.applyReport('n1', 10_999, report([]))).missing).toEqual([]);
    expect((await nodes.applyReport('n1', 11_000, report([]))).missing).toEqual([v.vmId]);
    // Reported again: no longer missing, and the clock starts over.
    await nodes.applyReport('n1', 11_500, report([{ vmId: v.vmId, state: cluster.VmState.VM_STATE_RUNNING, fencingEpoch: v.fencingEpoch }]));
    expect((await nodes.applyReport('n1', 12_000, report([]))).missing).toEqual([]);
    // A migration's source copy is its migration's business: reported, it is present, and its state is left alone.
    await nodes.applyReport('n1', 12_100, report([{ vmId: v.vmId, state: cluster.VmState.VM_STATE_MIGRATING, fencingEpoch: v.fencingEpoch, outgoing: true }]));
    expect((await vms.get(v.vmId))!.state).toBe(cluster.VmState.VM_STATE_RUNNING);
    expect((await nodes.applyReport('n1', 13_500, report([]))).missing).toEqual([]);
  });

  it('readiness transitions are recorded once, and a newer report wins', async () => {
    const node = (await nodes.get('n1'))!;
    expect(await nodes.recordReadiness('n1', false, node.lastReportMs)).toBe(true);
    expect(await nodes.recordReadiness('n1', false, node.lastReportMs)).toBe(false);
    expect((await nodes.get('n1'))!.readyRecorded).toBe(false);
    const r = await nodes.applyReport('n1', node.lastReportMs + 1, report([]));
    expect(r.wasNotReady).toBe(true);
    expect(await nodes.recordReadiness('n1', false, node.lastReportMs)).toBe(false);
  });
});
