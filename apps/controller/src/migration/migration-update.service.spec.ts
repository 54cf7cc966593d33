import { status } from '@grpc/grpc-js';
import { describe, expect, it, vi } from 'vitest';
import type { Logger } from '../common/logger.js';
import { AgentRejectedError, InvalidArgumentError, MigrationNotUpdatableError } from '../errors.js';
import type { AgentGateway } from '../agent/agent.gateway.js';
import type { MigrationRepository } from '../redis/migration.repository.js';
import type { NodeRepository } from '../redis/node.repository.js';
import type { MigrationRecord } from './migration-record.js';
import { checkUpdateRequest, MigrationUpdater } from './migration-update.service.js';
import type { MigrationService } from './migration.service.js';

const POLICY = { downtimeLimitMs: 1, maxBandwidthMibPerSec: 32, maxRounds: 10_000, autoConverge: false, xbzrle: false, completionTimeoutMs: 600_000, xbzrleCacheMib: 16 };

/** An updater over in-memory fakes of its repositories and the agent gateway (immich newTestService). */
function setup(phase: MigrationRecord['phase'], agentError?: Error) {
  let record = { migrationId: 'mig-1', vmId: 'vm-1', sourceNodeId: 'node-1', phase, policy: { ...POLICY }, round: 3 } as unknown as MigrationRecord;
  const writes: string[] = [];
  const migrations = {
    update: vi.fn(async (_id: string, expected: string, fields: Record<string, string>) => {
      if (record.phase !== expected) return false;
      writes.push(fields.policy!);
      record = { ...record, policy: JSON.parse(fields.policy!) };
      return true;
    }),
  };
  const service = {
    require: vi.fn(async (id: string) => record),
    get: vi.fn(async () => ({ migrationId: record.migrationId, policy: record.policy })),
  };
  const agents = { updateOutgoing: vi.fn(async () => (agentError ? Promise.reject(agentError) : undefined)) };
  const nodes = { get: vi.fn(async () => ({ nodeId: 'node-1', address: '127.0.0.1:1' })) };
  const logger = { info: vi.fn(), warn: vi.fn() } as unknown as Logger;
  const updater = new MigrationUpdater(
    logger,
    service as unknown as MigrationService,
    migrations as unknown as MigrationRepository,
    nodes as unknown as NodeRepository,
    agents as unknown as AgentGateway,
  );
  return { updater, agents, writes, record: () => record };
}

describe('checkUpdateRequest', () => {
  it.each([
    [{ downtimeLimitMs: 0 }, 'downtime_limit_ms'],
    [{ downtimeLimitMs: 60_001 }, 'downtime_limit_ms'],
    [{ maxBandwidthMibPerSec: -2 }, 'max_bandwidth_mib_per_sec'],
    [{ maxBandwidthMibPerSec: 2 ** 21 }, 'max_bandwidth_mib_per_sec'],
  ])('%o is INVALID_ARGUMENT naming %s', (req, field) => {
    expect(() => checkUpdateRequest({ migrationId: 'mig-1', ...req })).toThrow(InvalidArgumentError);
    try {
      checkUpdateRequest({ migrationId: 'mig-1', ...req });
    } catch (error) {
      expect((error as InvalidArgumentError).field).toBe(field);
    }
  });

  it('takes int64 as a string and null as unset', () => {
    expect(checkUpdateRequest({ downtimeLimitMs: '250' as unknown as number, maxBandwidthMibPerSec: null as unknown as number })).toEqual({ downtimeLimitMs: 250, forceComplete: false });
  });
});

describe('MigrationUpdater', () => {
  it('records the new policy, then tells the source', async () => {
    const { updater, agents, record } = setup('PRECOPY');
    const m = await updater.update({ migrationId: 'mig-1', maxBandwidthMibPerSec: 0, forceComplete: true });
    expect(m.policy).toMatchObject({ downtimeLimitMs: 1, maxBandwidthMibPerSec: 0, maxRounds: 10_000 });
    expect(record().policy).toMatchObject({ maxBandwidthMibPerSec: 0 });
    expect(agents.updateOutgoing).toHaveBeenCalledWith(expect.objectContaining({ nodeId: 'node-1' }), {
      migrationId: 'mig-1',
      downtimeLimitMs: undefined,
      maxBandwidthMibPerSec: 0,
      forceComplete: true,
    });
  });

  it.each(['PENDING', 'PREPARING', 'STOP_AND_COPY', 'COMMITTING', 'COMPLETED', 'FAILED', 'CANCELLED'] as const)(
    '%s is MIGRATION_NOT_UPDATABLE, nothing written or sent',
    async (phase) => {
      const { updater, agents, writes } = setup(phase);
      await expect(updater.update({ migrationId: 'mig-1', forceComplete: true })).rejects.toBeInstanceOf(MigrationNotUpdatableError);
      expect(writes).toEqual([]);
      expect(agents.updateOutgoing).not.toHaveBeenCalled();
    },
  );

  it('a source past pre-copy refuses: the recorded policy is put back, MIGRATION_NOT_UPDATABLE', async () => {
    const { updater, record } = setup('PRECOPY', new AgentRejectedError('node-1', status.FAILED_PRECONDITION, 'UpdateOutgoing: switching over', 'MIGRATION_STATE'));
    await expect(updater.update({ migrationId: 'mig-1', downtimeLimitMs: 500 })).rejects.toBeInstanceOf(MigrationNotUpdatableError);
    expect(record().policy).toEqual(POLICY);
  });
});
