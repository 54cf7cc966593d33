// The migration Lua scripts against a real redis-server: creation with the target's room reserved,
// phase compare-and-set by the shared phase model, the switch-over commit, rollback, slots.
import { beforeEach, describe, expect, it } from 'vitest';
import { cluster } from '@vmm/proto';
import type { VmRecord } from '../common/model.js';
import { resolvePolicy } from '@vmm/migration/policy';
import { testVm } from '../testing/records.js';
import { useSpecRedis } from '../testing/redis-spec.fixture.js';
import { MigrationRepository } from './migration.repository.js';
import { NodeRepository } from './node.repository.js';
import { PlacementRepository } from './placement.repository.js';
import { redisKeys } from './redis-keys.js';
import { VmRepository } from './vm.repository.js';

const STALE_MS = 3000;
const db = useSpecRedis();
let nodes: NodeRepository;
let vms: VmRepository;
let placement: PlacementRepository;
let migrations: MigrationRepository;

const node = (nodeId: string, memoryMib = 1000) =>
  nodes.upsertRegistration({ nodeId, address: `127.0.0.1:1`, vcpus: 4, memoryMib, cpuAllocationRatio: 1, ramAllocationRatio: 1, agentVersion: '' }, Date.now());

let seq = 0;
async function runningVm(nodeId: string, over: Partial<VmRecord> = {}): Promise<VmRecord> {
  const vm = testVm({ vmId: `vm-${String(++seq).padStart(6, '0')}`, name: `n-${seq}`, nodeId, state: cluster.VmState.VM_STATE_RUNNING, memoryMib: 400, ...over });
  expect(await placement.reserve(vm, Date.now(), STALE_MS)).toBe('OK');
  return vm;
}

const create = (vmId: string, targetNodeId: string, migrationId = `mig-${++seq}`) =>
  migrations
    .create({ migrationId, vmId, targetNodeId, policy: resolvePolicy(undefined, 400 * 1024 * 1024), reason: 'user', createdAtMs: Date.now(), token: 'secret-token' }, Date.now(), STALE_MS)
    .then((outcome) => ({ outcome, migrationId }));
const record = async (migrationId: string) => (await migrations.get(migrationId))!;
const failed = { error: 'test', errorReason: 'TEST' };

/** A migration of a fresh VM from a to b, committed: the VM on b at epoch 2. */
async function committed(group = 'g') {
  const vm = await runningVm('a', { antiAffinityGroup: group });
  const { migrationId } = await create(vm.vmId, 'b');
  for (const phase of ['PREPARING', 'PRECOPY', 'STOP_AND_COPY'] as const) await migrations.advance(migrationId, phase);
  expect(await migrations.commit(await record(migrationId), { sourceDigest: 'x', targetDigest: 'x' })).toBe(2);
  return { vm, migrationId };
}

beforeEach(async () => {
  const keys = redisKeys(db.newPrefix());
  nodes = new NodeRepository(db.redis, keys);
  vms = new VmRepository(db.redis, keys);
  placement = new PlacementRepository(db.redis, keys);
  migrations = new MigrationRepository(db.redis, keys);
  await node('a');
  await node('b');
});

describe('create', () => {
  it('reserves the target room and marks the VM MIGRATING', async () => {
    const vm = await runningVm('a', { antiAffinityGroup: 'g' });
    const { outcome, migrationId } = await create(vm.vmId, 'b');
    expect(outcome).toBe('OK');
    expect(await migrations.openIds()).toEqual([migrationId]);
    expect(await migrations.get(migrationId)).toMatchObject({ phase: 'PENDING', sourceNodeId: 'a', targetNodeId: 'b', reserved: true, memoryMib: 400 });
    expect((await vms.get(vm.vmId))!.state).toBe('VM_STATE_MIGRATING');
    expect(await nodes.get('b')).toMatchObject({ memoryMibAllocated: 400, vcpusAllocated: 1, vmCount: 0 });
    expect(await vms.antiAffinityNodeIds('g')).toEqual(new Set(['a', 'b']));
  });

  it.each([
    ['the VM is already migrating', 'VM_MIGRATING'],
    ['the target is the source', 'SAME_NODE'],
    ['the target lacks memory', 'NO_MEMORY'],
    ['the target is unknown', 'NO_NODE'],
    ['the target is cordoned', 'CORDONED'],
  ] as const)('refuses when %s, changing nothing', async (_case, expected) => {
    const vm = await runningVm('a');
    let target = 'b';
    if (expected === 'VM_MIGRATING') expect((await create(vm.vmId, 'b')).outcome).toBe('OK');
    if (expected === 'SAME_NODE') target = 'a';
    if (expected === 'NO_MEMORY') await runningVm('b', { memoryMib: 700 });
    if (expected === 'NO_NODE') target = 'zz';
    if (expected === 'CORDONED') await nodes.setCordoned('b', true);
    const before = await nodes.get('b');
    expect((await create(vm.vmId, target)).outcome).toBe(expected);
    expect(await nodes.get('b')).toEqual(before);
  });
});

describe('phase changes follow the shared phase model', () => {
  it('advances along allowed transitions only', async () => {
    const vm = await runningVm('a');
    const { migrationId } = await create(vm.vmId, 'b');
    expect(await migrations.advance(migrationId, 'PRECOPY')).toBe(false);
    expect(await migrations.advance(migrationId, 'PREPARING')).toBe(true);
    expect(await migrations.advance(migrationId, 'PRECOPY', { round: 3 })).toBe(true);
    expect(await migrations.advance(migrationId, 'PRECOPY', { round: 4 })).toBe(false);
    expect(await migrations.advance(migrationId, 'PRECOPY', { round: 4 }, true)).toBe(true);
    expect(await migrations.get(migrationId)).toMatchObject({ phase: 'PRECOPY', round: 4 });
  });
});

describe('commit', () => {
  it('moves the VM, bumps the epoch, and moves allocations and group membership; a retry answers the same epoch', async () => {
    const vm = await runningVm('a', { antiAffinityGroup: 'g' });
    const { migrationId } = await create(vm.vmId, 'b');
    await migrations.advance(migrationId, 'PREPARING');
    expect(await migrations.commit(await record(migrationId), {})).toBe(0);
    await migrations.advance(migrationId, 'PRECOPY');
    await migrations.advance(migrationId, 'STOP_AND_COPY');
    expect(await migrations.commit(await record(migrationId), { sourceDigest: 'x', targetDigest: 'x' })).toBe(2);
    expect(await migrations.commit(await record(migrationId), { sourceDigest: 'x', targetDigest: 'x' })).toBe(2);
    expect(await record(migrationId)).toMatchObject({ phase: 'COMMITTING', reserved: false, fencingEpoch: 2, sourceEpoch: 1, sourceDigest: 'x' });
    expect((await record(migrationId)).transitions.map((t) => t.phase)).toEqual(['PENDING', 'PREPARING', 'PRECOPY', 'STOP_AND_COPY', 'COMMITTING']);
    expect(await vms.get(vm.vmId)).toMatchObject({ nodeId: 'b', fencingEpoch: 2, state: 'VM_STATE_MIGRATING' });
    expect(await nodes.get('a')).toMatchObject({ memoryMibAllocated: 0, vcpusAllocated: 0, vmCount: 0 });
    expect(await nodes.get('b')).toMatchObject({ memoryMibAllocated: 400, vcpusAllocated: 1, vmCount: 1 });
    expect(await vms.idsOnNode('b')).toEqual([vm.vmId]);
    expect(await vms.antiAffinityNodeIds('g')).toEqual(new Set(['b']));
    expect(Object.fromEntries((await nodes.list()).map((n) => [n.nodeId, n.imageCounts]))).toEqual({ a: {}, b: { empty: 1 } });
    // Committed: neither a rollback nor a cancel undoes it.
    expect(await migrations.rollback(await record(migrationId), 'CANCELLED', failed)).toBe(false);
    expect((await record(migrationId)).phase).toBe('COMMITTING');
    // COMPLETED only once the target was seen running it.
    expect(await migrations.complete(await record(migrationId), {})).toBe(false);
    expect(await migrations.markTargetResumed(await record(migrationId), 123)).toBe(true);
    expect(await migrations.complete(await record(migrationId), { finishedAtMs: 5 })).toBe(true);
    expect(await record(migrationId)).toMatchObject({ phase: 'COMPLETED', targetResumedAtMs: 123, finishedAtMs: 5 });
    expect(await migrations.openIds()).toEqual([]);
    expect((await vms.get(vm.vmId))!.state).toBe('VM_STATE_RUNNING');
    // Deleting the VM afterwards releases it from the target.
    await placement.release(vm.vmId);
    expect(await nodes.get('b')).toMatchObject({ memoryMibAllocated: 0, vmCount: 0 });
  });

  it('commits from PRECOPY through STOP_AND_COPY in one step, as the phase model allows', async () => {
    const vm = await runningVm('a');
    const { migrationId } = await create(vm.vmId, 'b');
    await migrations.advance(migrationId, 'PREPARING');
    await migrations.advance(migrationId, 'PRECOPY');
    expect(await migrations.commit(await record(migrationId), {})).toBe(2);
    expect((await record(migrationId)).transitions.map((t) => t.phase).slice(-2)).toEqual(['STOP_AND_COPY', 'COMMITTING']);
  });
});

describe('revert', () => {
  it('gives a committed VM back to its source under N+2 while the target has not resumed it', async () => {
    const { vm, migrationId } = await committed();
    expect(await migrations.revert(await record(migrationId), { error: 'target lost', errorReason: 'TARGET_LOST' })).toBe(3);
    expect(await record(migrationId)).toMatchObject({ phase: 'FAILED', errorReason: 'TARGET_LOST', revertedEpoch: 3 });
    expect(await vms.get(vm.vmId)).toMatchObject({ nodeId: 'a', fencingEpoch: 3, state: 'VM_STATE_RUNNING', migrationId: '' });
    expect(await nodes.get('a')).toMatchObject({ memoryMibAllocated: 400, vcpusAllocated: 1, vmCount: 1 });
    expect(await nodes.get('b')).toMatchObject({ memoryMibAllocated: 0, vcpusAllocated: 0, vmCount: 0 });
    expect(await vms.idsOnNode('a')).toEqual([vm.vmId]);
    expect(await vms.antiAffinityNodeIds('g')).toEqual(new Set(['a']));
    expect(await migrations.openIds()).toEqual([]);
    // Final: it cannot be reverted again, nor resumed on the target.
    expect(await migrations.revert(await record(migrationId), failed)).toBe(0);
    expect(await migrations.markTargetResumed({ migrationId, fencingEpoch: 2 }, 1)).toBe(false);
  });

  it('is refused once the target resumed, and while the target reported after the silence bound', async () => {
    const first = await committed('');
    const since = Date.now() - 60_000;
    expect(await migrations.revert(await record(first.migrationId), failed, since)).toBe(0); // b reported after `since`
    expect(await migrations.markTargetResumed(await record(first.migrationId), 7)).toBe(true);
    expect(await migrations.revert(await record(first.migrationId), failed)).toBe(0);
    expect((await record(first.migrationId)).phase).toBe('COMMITTING');
    expect((await vms.get(first.vm.vmId))!.nodeId).toBe('b');
  });
});

describe('rollback', () => {
  it('gives the room back once, keeps a CANCELLED phase, and puts the VM back to RUNNING', async () => {
    const vm = await runningVm('a', { antiAffinityGroup: 'g' });
    const { migrationId } = await create(vm.vmId, 'b');
    expect(await migrations.rollback(await record(migrationId), 'CANCELLED', { error: 'cancelled', errorReason: 'CANCELLED' })).toBe(true);
    expect(await migrations.rollback(await record(migrationId), 'FAILED', { error: 'late failure', errorReason: 'X' })).toBe(false);
    expect(await record(migrationId)).toMatchObject({ phase: 'CANCELLED', error: 'cancelled', errorReason: 'CANCELLED', reserved: false });
    expect((await record(migrationId)).finishedAtMs).toBeGreaterThan(0);
    expect(await vms.get(vm.vmId)).toMatchObject({ state: 'VM_STATE_RUNNING', nodeId: 'a', fencingEpoch: 1 });
    expect(await nodes.get('b')).toMatchObject({ memoryMibAllocated: 0, vcpusAllocated: 0 });
    expect(await vms.antiAffinityNodeIds('g')).toEqual(new Set(['a']));
    expect(await migrations.advance(migrationId, 'PREPARING')).toBe(false);
    expect(await migrations.openIds()).toEqual([]);
    expect((await create(vm.vmId, 'b')).outcome).toBe('OK');
  });
});

describe('slots', () => {
  it('limit the cluster, each source and each target; a holder re-acquires idempotently', async () => {
    const limits = { cluster: 3, outboundPerNode: 2, inboundPerNode: 2 };
    const m = (id: string, s: string, t: string) => ({ migrationId: id, sourceNodeId: s, targetNodeId: t });
    expect(await migrations.acquireSlot(m('1', 'a', 'b'), limits)).toBe('OK');
    expect(await migrations.acquireSlot(m('1', 'a', 'b'), limits)).toBe('OK');
    expect(await migrations.acquireSlot(m('2', 'a', 'c'), limits)).toBe('OK');
    expect(await migrations.acquireSlot(m('3', 'a', 'd'), limits)).toBe('OUTBOUND');
    expect(await migrations.acquireSlot(m('4', 'c', 'b'), limits)).toBe('OK');
    expect(await migrations.acquireSlot(m('5', 'e', 'f'), limits)).toBe('CLUSTER');
    await migrations.releaseSlot(m('1', 'a', 'b'));
    expect(await migrations.acquireSlot(m('6', 'd', 'b'), limits)).toBe('OK');
    expect(await migrations.acquireSlot(m('7', 'x', 'b'), limits)).toBe('CLUSTER');
    await migrations.releaseSlot(m('2', 'a', 'c'));
    expect(await migrations.acquireSlot(m('7', 'x', 'b'), limits)).toBe('INBOUND');
    // None of these is open: all are stranded slots to give back.
    expect((await migrations.strandedSlots()).sort()).toEqual(['4', '6']);
  });
});
