// The change journal against a real redis-server: every record write through a RecordScript gets a
// contiguous revision and a history entry; report heartbeats make none; deletions carry the last
// record; the history keeps its cap; the shared reader wakes listeners.
import { beforeEach, describe, expect, it } from 'vitest';
import { cluster } from '@vmm/proto';
import type { ControllerConfig } from '../config.js';
import type { Logger } from '../common/logger.js';
import { testVm } from '../testing/records.js';
import { useSpecRedis } from '../testing/redis-spec.fixture.js';
import { ChangesRepository, parseChange } from './changes.repository.js';
import { NodeRepository, type NodeReportUpdate } from './node.repository.js';
import { PlacementRepository } from './placement.repository.js';
import { redisKeys, type RedisKeys } from './redis-keys.js';
import { VmRepository } from './vm.repository.js';

const db = useSpecRedis();
let keys: RedisKeys;
let nodes: NodeRepository;
let vms: VmRepository;
let placement: PlacementRepository;
let changes: ChangesRepository;
const logger = { warn: () => undefined } as unknown as Logger;

const registration = { nodeId: 'n1', address: '127.0.0.1:1', vcpus: 8, memoryMib: 1000, cpuAllocationRatio: 4, ramAllocationRatio: 1.5, agentVersion: '' };
const report = (memoryUsedBytes: number): NodeReportUpdate => ({
  memoryUsedBytes,
  ksm: undefined,
  ksmKnobs: undefined,
  vms: [],
  reportedVms: [],
  missingGraceMs: 3000,
});
const summary = async (after = 0) => (await changes.after(after, 100)).map((c) => [c.revision, c.kind, c.id, c.type]);

beforeEach(async () => {
  keys = redisKeys(db.newPrefix());
  nodes = new NodeRepository(db.redis, keys);
  vms = new VmRepository(db.redis, keys);
  placement = new PlacementRepository(db.redis, keys);
  changes = new ChangesRepository(db.redis, keys, { watchHistory: 100, redisUrl: '' } as unknown as ControllerConfig, logger);
  await changes.onModuleInit();
});

describe('the change journal', () => {
  it('gives each change a contiguous revision: registration ADDED, VM ADDED, MODIFIED, DELETED', async () => {
    expect(await changes.revision()).toBe(0);
    await nodes.upsertRegistration(registration, Date.now());
    const v = testVm({ vmId: 'vm-1', name: 'one', nodeId: 'n1', memoryMib: 100 });
    expect(await placement.reserve(v, Date.now(), 3000)).toBe('OK');
    expect(await vms.setState('vm-1', cluster.VmState.VM_STATE_PAUSED, [v.state])).toBe(true);
    expect(await placement.release('vm-1')).toBe(true);
    // The node's allocation changed with each placement: MODIFIED in the same step.
    expect(await summary()).toEqual([
      [1, 'node', 'n1', 'ADDED'],
      [2, 'node', 'n1', 'MODIFIED'],
      [3, 'vm', 'vm-1', 'ADDED'],
      [4, 'vm', 'vm-1', 'MODIFIED'],
      [5, 'node', 'n1', 'MODIFIED'],
      [6, 'vm', 'vm-1', 'DELETED'],
    ]);
    expect(await changes.revision()).toBe(6);
    const deleted = (await changes.after(5, 1))[0]!;
    expect(deleted.last).toMatchObject({ vmId: 'vm-1', name: 'one', state: cluster.VmState.VM_STATE_PAUSED });
  });

  it('records nothing for a write that changes nothing a client sees', async () => {
    await nodes.upsertRegistration(registration, Date.now());
    const before = await changes.revision();
    expect(await vms.setState('nope', cluster.VmState.VM_STATE_PAUSED, [])).toBe(false);
    await nodes.setCordoned('n1', false);
    expect(await changes.revision()).toBe(before);
  });

  it('coalesces reports: a heartbeat makes no change, measured figures at most one per window', async () => {
    await nodes.upsertRegistration(registration, Date.now());
    await nodes.applyReport('n1', Date.now(), report(0));
    const afterFirst = await changes.revision();
    await nodes.applyReport('n1', Date.now() + 1, report(0));
    expect(await changes.revision()).toBe(afterFirst);
    await nodes.applyReport('n1', Date.now() + 2, report(1 << 20));
    await nodes.applyReport('n1', Date.now() + 3, report(2 << 20));
    // The registration's event opened the window: the figures wait for it to pass.
    expect(await changes.revision()).toBe(afterFirst);
    await db.redis.hdel(keys.changesLast(), keys.node('n1'));
    await nodes.applyReport('n1', Date.now() + 4, report(3 << 20));
    expect(await summary(afterFirst)).toEqual([[afterFirst + 1, 'node', 'n1', 'MODIFIED']]);
    // A change clients see is never held back.
    await nodes.setCordoned('n1', true);
    expect(await changes.revision()).toBe(afterFirst + 2);
  });

  it('keeps the newest WATCH_HISTORY entries', async () => {
    await db.redis.set(keys.changesCap(), '3');
    await nodes.upsertRegistration(registration, Date.now());
    for (let i = 0; i < 5; i++) await nodes.setCordoned('n1', i % 2 === 0);
    expect(await changes.revision()).toBe(6);
    expect(await changes.oldest()).toBe(4);
    expect((await summary()).map(([rev]) => rev)).toEqual([4, 5, 6]);
  });
});

describe('parseChange', () => {
  it('reads a stream entry, and refuses other shapes', () => {
    expect(parseChange('7-0', ['kind', 'vm', 'id', 'v', 'type', 'DELETED', 'last', '["a","b"]'])).toEqual({
      revision: 7,
      kind: 'vm',
      id: 'v',
      type: 'DELETED',
      last: { a: 'b' },
    });
    expect(parseChange('7-0', ['kind', 'disk', 'id', 'v', 'type', 'ADDED'])).toBeUndefined();
  });
});
