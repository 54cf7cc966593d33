// The status codes of the migration methods (docs/api.md's table), against a real controller and agents.
// Every refused request leaves the same VMs, the same allocations, no migration record, and every
// process alive; none is answered UNKNOWN or INTERNAL.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { cluster } from '@vmm/proto';
import { expectGrpcError, status, STATUS_NAME } from './support/grpc.js';
import { stateSnapshot, vmRequest } from './support/vms.js';
import { waitFor } from './support/wait-for.js';
import {
  listAllMigrations,
  MigrationPhase,
  policy,
  short,
  startMigrationCluster,
  waitForFinal,
  waitForPhase,
  workload,
  WorkloadKind,
  type MigrationTestCluster,
} from './support/migration.js';

const REPORT_INTERVAL_MS = 250;
const UNKNOWN_ID = 'does-not-exist-0000';

let t: MigrationTestCluster;
let vm: cluster.Vm;

beforeAll(async () => {
  t = await startMigrationCluster({ agents: 3, reportIntervalMs: REPORT_INTERVAL_MS, nodeMemoryMib: 4096, nodeVcpus: 4 });
  vm = await t.api.createVm(vmRequest({ nodeId: 'node-1' }));
});

afterAll(async () => {
  await t?.stop();
});

function expectAlive(): void {
  expect(t.c.controller.running, 'controller alive').toBe(true);
  for (const a of t.c.agents) expect(a.process.running, `${a.nodeId} alive`).toBe(true);
}

/** The call fails with `code` (message matching `pattern`), creates no migration and changes nothing. */
async function rejectsCleanly(call: () => Promise<unknown>, code: status, pattern?: RegExp): Promise<void> {
  const { api } = t;
  const before = await stateSnapshot(api);
  const migrationsBefore = (await listAllMigrations(api)).length;
  const err = await expectGrpcError(call(), code, pattern);
  expect(err.details, 'a message').not.toBe('');
  expect(await stateSnapshot(api)).toEqual(before);
  expect((await listAllMigrations(api)).length, 'no migration created').toBe(migrationsBefore);
  expectAlive();
}

describe('NOT_FOUND', () => {
  it('MigrateVm of an unknown vm', async () => {
    await rejectsCleanly(() => t.api.migrateVm({ vmId: UNKNOWN_ID, targetNodeId: 'node-2', policy: undefined }), status.NOT_FOUND, new RegExp(UNKNOWN_ID));
    await rejectsCleanly(() => t.api.migrateVm({ vmId: UNKNOWN_ID, targetNodeId: '', policy: undefined }), status.NOT_FOUND);
  });

  it('MigrateVm to an unknown node', async () => {
    await rejectsCleanly(() => t.api.migrateVm({ vmId: vm.vmId, targetNodeId: UNKNOWN_ID, policy: undefined }), status.NOT_FOUND, new RegExp(UNKNOWN_ID));
  });

  it.each([
    ['GetMigration', () => t.api.getMigration({ migrationId: UNKNOWN_ID })],
    ['CancelMigration', () => t.api.cancelMigration({ migrationId: UNKNOWN_ID })],
    ['ListMigrations (vm_id)', () => t.api.listMigrations({ vmId: UNKNOWN_ID, pageSize: 0, pageToken: '' })],
    ['DrainNode', () => t.api.drainNode({ nodeId: UNKNOWN_ID })],
    [
      'WatchMigration',
      () =>
        new Promise((resolve, reject) => {
          const stream = t.api.client.watchMigration({ migrationId: UNKNOWN_ID }, { deadline: Date.now() + 10_000 });
          stream.on('data', resolve);
          stream.on('error', reject);
          stream.on('end', () => resolve('ended without an error'));
        }),
    ],
  ] as const)('%s of an unknown id', async (_name, call) => {
    await rejectsCleanly(call, status.NOT_FOUND);
  });
});

describe('INVALID_ARGUMENT names the field', () => {
  it.each([
    ['negative downtime_limit_ms', { downtimeLimitMs: -1 }, /downtime_limit_ms/],
    ['negative max_bandwidth_mib_per_sec', { maxBandwidthMibPerSec: -8 }, /max_bandwidth_mib_per_sec/],
    ['non-finite max_bandwidth_mib_per_sec', { maxBandwidthMibPerSec: Number.NaN }, /max_bandwidth_mib_per_sec/],
    ['negative max_rounds', { maxRounds: -3 }, /max_rounds/],
    ['negative completion_timeout_ms', { completionTimeoutMs: -1000 }, /completion_timeout_ms/],
    ['negative xbzrle_cache_mib', { xbzrleCacheMib: -64 }, /xbzrle_cache_mib/],
  ] as const)('MigrateVm with %s', async (_name, bad, pattern) => {
    await rejectsCleanly(() => t.api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2', policy: policy(bad) }), status.INVALID_ARGUMENT, pattern);
  });

  it('MigrateVm with an empty vm_id', async () => {
    await rejectsCleanly(() => t.api.migrateVm({ vmId: '', targetNodeId: 'node-2', policy: undefined }), status.INVALID_ARGUMENT, /vm_id/);
  });

  it('MigrateVm to the node the VM already runs on (the controller documents INVALID_ARGUMENT on target_node_id)', async () => {
    await rejectsCleanly(() => t.api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-1', policy: undefined }), status.INVALID_ARGUMENT, /target_node_id/);
  });
});

describe('FAILED_PRECONDITION', () => {
  it('MigrateVm to a cordoned node; with no target given, a cordoned node is never picked', async () => {
    const { api } = t;
    await api.cordonNode({ nodeId: 'node-2' });
    try {
      await rejectsCleanly(() => api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2', policy: undefined }), status.FAILED_PRECONDITION, /cordon/i);
      await api.cordonNode({ nodeId: 'node-3' });
      await rejectsCleanly(() => api.migrateVm({ vmId: vm.vmId, targetNodeId: '', policy: undefined }), status.RESOURCE_EXHAUSTED);
    } finally {
      await api.uncordonNode({ nodeId: 'node-2' });
      await api.uncordonNode({ nodeId: 'node-3' });
    }
  });

  it('MigrateVm of a VM that is already migrating', async () => {
    const { api } = t;
    const busy = await api.createVm(
      vmRequest({ memoryMib: 256, image: 'debian-12', nodeId: 'node-1', workload: workload(WorkloadKind.WORKLOAD_KIND_UNIFORM, 20_000, 128) }),
    );
    try {
      const first = await api.migrateVm({ vmId: busy.vmId, targetNodeId: 'node-2', policy: policy({ maxBandwidthMibPerSec: 8, maxRounds: 1000 }) });
      await waitForPhase(api, first.migrationId, [MigrationPhase.MIGRATION_PHASE_PRECOPY], 30_000, 20);
      const allocBefore = (await api.listNodes({})).nodes.map((n) => `${n.nodeId} ${n.vcpusAllocated} ${n.memoryMibAllocated}`);
      for (const targetNodeId of ['node-3', 'node-2', '']) {
        await expectGrpcError(api.migrateVm({ vmId: busy.vmId, targetNodeId, policy: undefined }), status.FAILED_PRECONDITION, /migrating/i);
      }
      // Only the first migration exists; no second room was reserved.
      expect((await listAllMigrations(api, busy.vmId)).map((m) => m.migrationId)).toEqual([first.migrationId]);
      expect((await api.listNodes({})).nodes.map((n) => `${n.nodeId} ${n.vcpusAllocated} ${n.memoryMibAllocated}`)).toEqual(allocBefore);
      expectAlive();

      await api.cancelMigration({ migrationId: first.migrationId });
      expect(short((await waitForFinal(api, first.migrationId, 30_000)).phase)).toBe('CANCELLED');
    } finally {
      await api.deleteVm({ vmId: busy.vmId }).catch(() => {});
    }
  });
});

describe('RESOURCE_EXHAUSTED', () => {
  it('MigrateVm to a node without room for the VM (4096 MiB × 1.5 allocatable per node)', async () => {
    const { api } = t;
    const big = (nodeId: string) => vmRequest({ memoryMib: 4096, nodeId });
    const fillers = [await api.createVm(big('node-2')), await api.createVm(big('node-3'))];
    const mover = await api.createVm(big('node-1'));
    try {
      await rejectsCleanly(() => api.migrateVm({ vmId: mover.vmId, targetNodeId: 'node-2', policy: undefined }), status.RESOURCE_EXHAUSTED, /node-2/);
      await rejectsCleanly(() => api.migrateVm({ vmId: mover.vmId, targetNodeId: '', policy: undefined }), status.RESOURCE_EXHAUSTED);
    } finally {
      for (const v of [mover, ...fillers]) await api.deleteVm({ vmId: v.vmId }).catch(() => {});
    }
  });
});

describe('never UNKNOWN or INTERNAL', () => {
  it('a burst of bad migration requests gets only documented codes', async () => {
    const { api } = t;
    const calls: Promise<unknown>[] = [
      api.migrateVm({ vmId: UNKNOWN_ID, targetNodeId: UNKNOWN_ID, policy: policy({ downtimeLimitMs: -1 }) }),
      api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-1', policy: policy({ maxRounds: -1 }) }),
      api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-1', policy: undefined }),
      api.getMigration({ migrationId: '' }),
      api.cancelMigration({ migrationId: '' }),
      api.getMigration({ migrationId: 'x'.repeat(5000) }),
      api.listMigrations({ vmId: '', pageSize: -1, pageToken: 'not-a-token' }),
    ];
    const codes = await Promise.all(calls.map((p) => p.then(() => 'OK', (e: { code: number }) => STATUS_NAME[e.code])));
    for (const code of codes) expect(['INVALID_ARGUMENT', 'NOT_FOUND', 'FAILED_PRECONDITION', 'OK']).toContain(code);
    expectAlive();
  });
});

// Last: it kills node-3's agent and starts it again, so that no case before it meets a restarted
// node-3 (the restart itself is covered in migration-failures.test.ts).
describe('FAILED_PRECONDITION, not-ready target', () => {
  it('MigrateVm to a node whose agent stopped reporting (NOT_READY)', async () => {
    const { api, c } = t;
    await c.killAgent(2, 'SIGKILL');
    try {
      await waitFor(async () => short((await api.getNode({ nodeId: 'node-3' })).state) === 'NOT_READY', 15_000, 'node-3 NOT_READY');
      const before = await stateSnapshot(api);
      const err = await expectGrpcError(api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-3', policy: undefined }), status.FAILED_PRECONDITION, /ready/i);
      expect(err.details).toMatch(/node-3/);
      expect(await stateSnapshot(api)).toEqual(before);
      expect(c.controller.running).toBe(true);
    } finally {
      await c.startAgent(2);
      await c.waitForNodes();
    }
  });
});
