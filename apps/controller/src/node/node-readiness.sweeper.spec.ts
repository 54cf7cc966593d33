// The readiness sweep against a real redis-server: transitions are recorded once each way.
import { expect, it } from 'vitest';
import { createLogger } from '../common/logger.js';
import { loadControllerConfig } from '../config.js';
import { NodeRepository } from '../redis/node.repository.js';
import { redisKeys } from '../redis/redis-keys.js';
import { useSpecRedis } from '../testing/redis-spec.fixture.js';
import { NodeReadinessSweeper } from './node-readiness.sweeper.js';

const db = useSpecRedis();
const prefix = db.newPrefix();
const EMPTY_REPORT = { memoryUsedBytes: 0, ksm: undefined, ksmKnobs: undefined, vms: [], reportedVms: [], missingGraceMs: 300 };

it('records NOT_READY after 3 silent intervals and READY again after a report', async () => {
  // A controller that started long before this node's reports: no start-up grace applies.
  const config = { ...loadControllerConfig({ AGENT_PLANE_INSECURE: '1', REPORT_INTERVAL_MS: '100', REDIS_PREFIX: prefix }), startedAtMs: 0 };
  const nodes = new NodeRepository(db.redis, redisKeys(prefix));
  const sweeper = new NodeReadinessSweeper(config, createLogger('silent'), nodes);
  const t0 = 1_000_000;
  await nodes.upsertRegistration({ nodeId: 'n1', address: '127.0.0.1:1', vcpus: 1, memoryMib: 1, cpuAllocationRatio: 1, ramAllocationRatio: 1, agentVersion: '' }, t0);

  expect(await sweeper.sweep(t0 + 300)).toEqual([]);
  expect(await sweeper.sweep(t0 + 301)).toEqual(['n1']);
  expect((await nodes.get('n1'))!.readyRecorded).toBe(false);
  expect(await sweeper.sweep(t0 + 400)).toEqual([]);

  const report = await nodes.applyReport('n1', t0 + 500, EMPTY_REPORT);
  expect(report.wasNotReady).toBe(true);
  expect((await nodes.get('n1'))!.readyRecorded).toBe(true);
  expect(await sweeper.sweep(t0 + 600)).toEqual([]);
});

it('a restarted controller does not judge a node that was ready NOT_READY before its agent could report', async () => {
  const t0 = 5_000_000;
  const own = db.newPrefix();
  const config = { ...loadControllerConfig({ AGENT_PLANE_INSECURE: '1', REPORT_INTERVAL_MS: '100', REDIS_PREFIX: own }), startedAtMs: t0 + 1_000 };
  const nodes = new NodeRepository(db.redis, redisKeys(own));
  const sweeper = new NodeReadinessSweeper(config, createLogger('silent'), nodes);
  await nodes.upsertRegistration({ nodeId: 'n2', address: '127.0.0.1:1', vcpus: 1, memoryMib: 1, cpuAllocationRatio: 1, ramAllocationRatio: 1, agentVersion: '' }, t0);
  // Its last report is 1 s old when this controller starts: within 3 intervals of the start it stays ready.
  expect(await sweeper.sweep(t0 + 1_200)).toEqual([]);
  expect(await sweeper.sweep(t0 + 1_301)).toEqual(['n2']);
  expect((await nodes.get('n2'))!.readyRecorded).toBe(false);
});
