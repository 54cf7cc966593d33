// LabelNode against a real redis-server: set and remove, kept across re-registration, validated.
import { beforeEach, describe, expect, it } from 'vitest';
import type { AgentGateway } from '../agent/agent.gateway.js';
import type { ControllerConfig } from '../config.js';
import { InvalidArgumentError, NodeNotFoundError } from '../errors.js';
import { NodeRepository } from '../redis/node.repository.js';
import { redisKeys } from '../redis/redis-keys.js';
import { useSpecRedis } from '../testing/redis-spec.fixture.js';
import { NodeService } from './node.service.js';

const db = useSpecRedis();
let nodes: NodeRepository;
let service: NodeService;
const register = () =>
  nodes.upsertRegistration({ nodeId: 'n1', address: '127.0.0.1:1', vcpus: 4, memoryMib: 1024, cpuAllocationRatio: 1, ramAllocationRatio: 1, agentVersion: '' }, Date.now());

beforeEach(async () => {
  nodes = new NodeRepository(db.redis, redisKeys(db.newPrefix()));
  const config = { nodeStaleAfterMs: 3000, startedAtMs: 0 } as ControllerConfig;
  service = new NodeService(config, nodes, {} as AgentGateway);
  await register();
});

describe('NodeService.label', () => {
  it('sets and removes labels, and a registration keeps them', async () => {
    expect((await service.label('n1', { disk: 'ssd', zone: 'a' }, [])).labels).toEqual({ disk: 'ssd', zone: 'a' });
    expect((await service.label('n1', { rack: '7' }, ['zone'])).labels).toEqual({ disk: 'ssd', rack: '7' });
    await register();
    expect((await service.get('n1')).labels).toEqual({ disk: 'ssd', rack: '7' });
    expect((await nodes.list())[0]!.labels).toEqual({ disk: 'ssd', rack: '7' });
  });

  it('loses no key when calls race', async () => {
    await Promise.all(Array.from({ length: 4 }, (_, i) => service.label('n1', { [`k${i}`]: 'v' }, [])));
    expect(Object.keys((await service.get('n1')).labels).sort()).toEqual(['k0', 'k1', 'k2', 'k3']);
  });

  it('refuses unknown nodes and bad labels, changing nothing', async () => {
    await expect(service.label('nope', { a: 'b' }, [])).rejects.toBeInstanceOf(NodeNotFoundError);
    await expect(service.label('n1', { '': 'b' }, [])).rejects.toMatchObject({ field: 'labels' });
    await expect(service.label('n1', { a: 'b' }, ['a'])).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(service.label('', { a: 'b' }, [])).rejects.toMatchObject({ field: 'node_id' });
    expect((await service.get('n1')).labels).toEqual({});
  });
});
