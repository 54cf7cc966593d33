// WatchEvents' stream against a real redis-server: the snapshot from 0, changes in order with their
// revisions, the kinds filter, DELETED with the last object, REVISION_COMPACTED past the history.
import { firstValueFrom, take, toArray, type Observable } from 'rxjs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cluster } from '@vmm/proto';
import type { Logger } from '../common/logger.js';
import type { ControllerConfig } from '../config.js';
import { RevisionCompactedError } from '../errors.js';
import { NodeService } from '../node/node.service.js';
import { ChangesRepository } from '../redis/changes.repository.js';
import { MigrationRepository } from '../redis/migration.repository.js';
import { NodeRepository } from '../redis/node.repository.js';
import { PlacementRepository } from '../redis/placement.repository.js';
import { redisKeys, type RedisKeys } from '../redis/redis-keys.js';
import { VmRepository } from '../redis/vm.repository.js';
import { testVm } from '../testing/records.js';
import { useSpecRedis } from '../testing/redis-spec.fixture.js';
import { waitFor } from '../../../../test/support/wait-for.js';
import type { AgentGateway } from '../agent/agent.gateway.js';
import { EventsService, isCompacted, requestedKinds } from './events.service.js';

const { EventType, EventKind, VmState } = cluster;
const db = useSpecRedis();
let keys: RedisKeys;
let nodes: NodeRepository;
let vms: VmRepository;
let placement: PlacementRepository;
let changes: ChangesRepository;
let events: EventsService;

const registration = { nodeId: 'n1', address: '127.0.0.1:1', vcpus: 8, memoryMib: 1000, cpuAllocationRatio: 4, ramAllocationRatio: 1.5, agentVersion: '' };
const first = (stream: Observable<cluster.Event>, n: number) => firstValueFrom(stream.pipe(take(n), toArray()));
const brief = (e: cluster.Event) => [e.revision, e.type, e.vm?.vmId ?? e.node?.nodeId ?? e.migration?.migrationId];

beforeEach(async () => {
  keys = redisKeys(db.newPrefix());
  const { host, port } = db.redis.options;
  const config = { watchHistory: 1000, redisUrl: `redis://${host}:${port}`, nodeStaleAfterMs: 3000, startedAtMs: 0 } as unknown as ControllerConfig;
  nodes = new NodeRepository(db.redis, keys);
  vms = new VmRepository(db.redis, keys);
  placement = new PlacementRepository(db.redis, keys);
  changes = new ChangesRepository(db.redis, keys, config, { warn: () => undefined } as unknown as Logger);
  await changes.onModuleInit();
  const nodeService = new NodeService(config, nodes, undefined as unknown as AgentGateway);
  events = new EventsService(changes, vms, nodes, nodeService, new MigrationRepository(db.redis, keys));
  await nodes.upsertRegistration(registration, Date.now());
});

afterEach(() => changes.onModuleDestroy());

describe('requestedKinds and isCompacted', () => {
  it.each([
    [[], ['vm', 'node', 'migration']],
    [[EventKind.EVENT_KIND_UNSPECIFIED], ['vm', 'node', 'migration']],
    [[EventKind.EVENT_KIND_MIGRATION, EventKind.EVENT_KIND_VM], ['migration', 'vm']],
  ])('%j → %j', (kinds, expected) => {
    expect([...requestedKinds(kinds)]).toEqual(expected);
  });

  it.each([
    [5, 6, 10, false], // the history starts right after 5
    [4, 6, 10, true],
    [10, 6, 10, false], // nothing after the current revision yet
    [12, 6, 10, false], // a revision from the future waits
    [3, undefined, 10, true],
    [0, undefined, 0, false],
  ])('since %i, oldest %s, current %i → %s', (since, oldest, current, compacted) => {
    expect(isCompacted(since, oldest, current)).toBe(compacted);
  });
});

describe('EventsService.watch', () => {
  it('from 0: the current objects ADDED at one revision, then the changes after it', async () => {
    await placement.reserve(testVm({ vmId: 'vm-1', name: 'one', nodeId: 'n1', memoryMib: 100 }), Date.now(), 3000);
    const rev = await changes.revision();
    const got: cluster.Event[] = [];
    const subscription = events.watch({ sinceRevision: 0, kinds: [] }).subscribe((e) => got.push(e));
    // The snapshot first, so that it shows the objects as they were at `rev`.
    await waitFor(() => got.length >= 2, 5_000, 'the snapshot');
    await vms.setState('vm-1', VmState.VM_STATE_RUNNING, [VmState.VM_STATE_PENDING]);
    await placement.release('vm-1');
    await waitFor(() => got.length >= 5, 5_000, 'the changes');
    subscription.unsubscribe();
    expect(got.map(brief)).toEqual([
      [rev, EventType.EVENT_TYPE_ADDED, 'n1'],
      [rev, EventType.EVENT_TYPE_ADDED, 'vm-1'],
      [rev + 1, EventType.EVENT_TYPE_MODIFIED, 'vm-1'],
      [rev + 2, EventType.EVENT_TYPE_MODIFIED, 'n1'],
      [rev + 3, EventType.EVENT_TYPE_DELETED, 'vm-1'],
    ]);
    expect(got[1]!.vm).toMatchObject({ vmId: 'vm-1', state: VmState.VM_STATE_PENDING });
    expect(got[4]!.vm).toMatchObject({ vmId: 'vm-1', name: 'one', state: VmState.VM_STATE_RUNNING });
    expect(got).toHaveLength(5);
  });

  it('from a revision: only what came after, only of the kinds asked for', async () => {
    const since = await changes.revision();
    const collected = first(events.watch({ sinceRevision: since, kinds: [EventKind.EVENT_KIND_VM] }), 2);
    await placement.reserve(testVm({ vmId: 'vm-2', name: 'two', nodeId: 'n1', memoryMib: 100 }), Date.now(), 3000);
    await nodes.setCordoned('n1', true);
    await placement.release('vm-2');
    expect((await collected).map(brief)).toEqual([
      [since + 2, EventType.EVENT_TYPE_ADDED, 'vm-2'],
      [since + 5, EventType.EVENT_TYPE_DELETED, 'vm-2'],
    ]);
  });

  it('a revision older than the history kept: REVISION_COMPACTED, nothing sent', async () => {
    await db.redis.set(keys.changesCap(), '2');
    for (let i = 0; i < 4; i++) await nodes.setCordoned('n1', i % 2 === 0);
    await expect(first(events.watch({ sinceRevision: 1, kinds: [] }), 1)).rejects.toBeInstanceOf(RevisionCompactedError);
    // From the oldest kept - 1 the watch is fine.
    const oldest = (await changes.oldest())!;
    const collected = first(events.watch({ sinceRevision: oldest - 1, kinds: [] }), 2);
    expect((await collected).map((e) => e.revision)).toEqual([oldest, oldest + 1]);
  });
});
