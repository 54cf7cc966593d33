// Migration orchestration end to end in-process: real controller, Redis and BullMQ, fake agents
// that play the source and target ends over gRPC.
import { status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cluster } from '@vmm/proto';
import { FINAL_PHASES } from '../testing/cluster-client.js';
import { waitFor } from '../../../../test/support/wait-for.js';
import { IDLE_WORKLOAD } from '../testing/records.js';
import { defaultProgress, heldProgress } from '../testing/fake-agent.js';
import { startSpecCluster, type SpecCluster } from '../testing/spec-cluster.js';

const { MigrationPhase: P, VmState } = cluster;

let c: SpecCluster;
let seq = 0;

beforeAll(async () => {
  c = await startSpecCluster({
    agents: [
      { nodeId: 'node-1', memoryMib: 4096 },
      { nodeId: 'node-2', memoryMib: 4096 },
      { nodeId: 'node-3', memoryMib: 4096 },
    ],
  });
});

afterAll(async () => {
  await c?.stop();
});

const agent = (nodeId: string) => c.agents.find((a) => a.options.nodeId === nodeId)!;

async function newVm(nodeId: string, memoryMib = 128): Promise<cluster.Vm> {
  return c.api.createVm({ name: `m-${++seq}`, vcpus: 1, memoryMib, workload: IDLE_WORKLOAD, nodeId });
}

async function waitFinal(migrationId: string): Promise<cluster.Migration> {
  let m: cluster.Migration | undefined;
  await waitFor(async () => FINAL_PHASES.has((m = await c.api.getMigration(migrationId)).phase), 15_000, `${migrationId} final`);
  return m!;
}

function watch(migrationId: string): Promise<cluster.Migration[]> {
  return new Promise((resolve, reject) => {
    const seen: cluster.Migration[] = [];
    const s = c.api.client.watchMigration({ migrationId });
    s.on('data', (m: cluster.Migration) => seen.push(m));
    s.on('end', () => resolve(seen));
    s.on('error', reject);
  });
}

describe('a successful migration', () => {
  it('moves the VM to the target under a new epoch, with progress, digests and allocations moved', async () => {
    const vm = await newVm('node-1');
    const m = await c.api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2' });
    expect(m).toMatchObject({ vmId: vm.vmId, sourceNodeId: 'node-1', targetNodeId: 'node-2', phase: P.MIGRATION_PHASE_PENDING, reason: 'user' });
    expect(m.policy).toMatchObject({ downtimeLimitMs: 300, maxRounds: 30 });
    const seen = await watch(m.migrationId);
    const phases = seen.map((x) => x.phase);
    expect(phases.at(-1)).toBe(P.MIGRATION_PHASE_COMPLETED);
    expect(phases).toContain(P.MIGRATION_PHASE_PRECOPY);
    expect(seen.filter((x) => x.phase === P.MIGRATION_PHASE_PRECOPY).map((x) => x.round)).toContain(1);
    // Every step is seen once, in order: each round, the switch-over, the commit, the end.
    expect(phases.slice(-3)).toEqual([P.MIGRATION_PHASE_STOP_AND_COPY, P.MIGRATION_PHASE_COMMITTING, P.MIGRATION_PHASE_COMPLETED]);
    const rounds = seen.map((x) => x.round);
    expect(rounds).toEqual([...rounds].sort((a, b) => a - b));

    const done = await c.api.getMigration(m.migrationId);
    expect(done).toMatchObject({ phase: P.MIGRATION_PHASE_COMPLETED, sourceDigest: 'abc123', targetDigest: 'abc123', pagesTotal: 1000, error: '' });
    expect(done.finishedAtMs).toBeGreaterThan(0);
    expect(await c.api.getVm(vm.vmId)).toMatchObject({ nodeId: 'node-2', state: VmState.VM_STATE_RUNNING, fencingEpoch: 2 });
    expect(agent('node-2').calls).toContain(`commit:${m.migrationId}@2`);
    expect(agent('node-1').calls).toContain(`release:${m.migrationId}@2`);
    expect(await c.api.getNode('node-1')).toMatchObject({ vcpusAllocated: 0, memoryMibAllocated: 0, vmCount: 0 });
    expect(await c.api.getNode('node-2')).toMatchObject({ vcpusAllocated: 1, memoryMibAllocated: 128, vmCount: 1 });
    expect((await c.api.listVms({ nodeId: 'node-2' })).vms.map((v) => v.vmId)).toEqual([vm.vmId]);

    // A finished migration: its final state, then the end.
    expect((await watch(m.migrationId)).map((x) => x.phase)).toEqual([P.MIGRATION_PHASE_COMPLETED]);
    await c.api.deleteVm(vm.vmId);
    expect(agent('node-2').vms.has(vm.vmId)).toBe(false);
  });
});

describe('a source that holds at the switch-over (QEMU pause-before-switchover)', () => {
  it('goes on only on ContinueSwitchover, sent once STOP_AND_COPY is recorded; STOP_AND_COPY is seen once', async () => {
    const vm = await newVm('node-1');
    const source = agent('node-1');
    source.progressScript = heldProgress;
    let phaseAtContinue: cluster.MigrationPhase | undefined;
    source.beforeContinue = async (id) => void (phaseAtContinue = (await c.api.getMigration(id)).phase);
    try {
      const m = await c.api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2' });
      const phases = (await watch(m.migrationId)).map((x) => x.phase);
      expect(phases.slice(-3)).toEqual([P.MIGRATION_PHASE_STOP_AND_COPY, P.MIGRATION_PHASE_COMMITTING, P.MIGRATION_PHASE_COMPLETED]);
      expect(phases.filter((p) => p === P.MIGRATION_PHASE_STOP_AND_COPY)).toHaveLength(1);
      expect(phaseAtContinue).toBe(P.MIGRATION_PHASE_STOP_AND_COPY);
      const calls = source.calls.filter((call) => call.endsWith(m.migrationId) || call.includes(`${m.migrationId}@`));
      expect(calls).toEqual([`start:${m.migrationId}`, `continue:${m.migrationId}`, `release:${m.migrationId}@2`]);
      expect(await c.api.getVm(vm.vmId)).toMatchObject({ nodeId: 'node-2', fencingEpoch: 2 });
    } finally {
      source.progressScript = defaultProgress;
      source.beforeContinue = async () => undefined;
      await c.api.deleteVm(vm.vmId);
    }
  });

  it('a CancelMigration while the source holds wins: CANCELLED, nothing committed, the VM on its source', async () => {
    const vm = await newVm('node-1');
    const source = agent('node-1');
    source.progressScript = heldProgress;
    // The cancel lands between the recorded STOP_AND_COPY and the source's last pages.
    source.beforeContinue = async (id) => void (await cancel(id));
    try {
      const m = await c.api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2' });
      const done = await waitFinal(m.migrationId);
      expect(done.phase).toBe(P.MIGRATION_PHASE_CANCELLED);
      expect(agent('node-2').calls).not.toContain(`commit:${m.migrationId}@2`);
      expect(await c.api.getVm(vm.vmId)).toMatchObject({ nodeId: 'node-1', fencingEpoch: 1 });
    } finally {
      source.progressScript = defaultProgress;
      source.beforeContinue = async () => undefined;
      await c.api.deleteVm(vm.vmId);
    }
  });

  it('a ContinueSwitchover that fails is a refusal: FAILED AGENT_UNAVAILABLE, the stream cancelled, the VM on its source', async () => {
    const vm = await newVm('node-1');
    const source = agent('node-1');
    source.progressScript = heldProgress;
    source.failContinue = true;
    try {
      const m = await c.api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2' });
      const done = await waitFinal(m.migrationId);
      expect(done).toMatchObject({ phase: P.MIGRATION_PHASE_FAILED, errorReason: 'AGENT_UNAVAILABLE' });
      expect(done.error).toMatch(/switch-over could not be continued/);
      expect(await c.api.getVm(vm.vmId)).toMatchObject({ nodeId: 'node-1', fencingEpoch: 1 });
      expect(agent('node-2').calls).toContain(`abort:${m.migrationId}`);
    } finally {
      source.progressScript = defaultProgress;
      source.failContinue = false;
      await c.api.deleteVm(vm.vmId);
    }
  });

  it('is refused when the target is not ready at the switch-over: no ContinueSwitchover, FAILED, the VM stays on its source', async () => {
    const vm = await newVm('node-1');
    const source = agent('node-1');
    const target = agent('node-3');
    // Pre-copy rounds long enough for the target to go NOT_READY before the switch-over.
    const script = heldProgress();
    source.progressScript = () => [...Array.from({ length: 8 }, () => script[0]!), ...script];
    source.progressDelayMs = 250;
    try {
      const m = await c.api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-3' });
      await waitFor(async () => (await c.api.getMigration(m.migrationId)).phase === P.MIGRATION_PHASE_PRECOPY, 5000, 'PRECOPY');
      target.stopReporting();
      const done = await waitFinal(m.migrationId);
      expect(done).toMatchObject({ phase: P.MIGRATION_PHASE_FAILED, errorReason: 'AGENT_UNAVAILABLE' });
      expect(done.error).toMatch(/node-3 is not ready at the switch-over/);
      expect(source.calls).not.toContain(`continue:${m.migrationId}`);
      expect(await c.api.getVm(vm.vmId)).toMatchObject({ nodeId: 'node-1', fencingEpoch: 1 });
      expect(await c.api.getNode('node-3')).toMatchObject({ vcpusAllocated: 0, memoryMibAllocated: 0 });
    } finally {
      source.progressScript = defaultProgress;
      source.progressDelayMs = 20;
      await target.register(c.controller.address);
      await waitFor(async () => (await c.api.getNode('node-3')).state !== cluster.NodeState.NODE_STATE_NOT_READY, 5000, 'node-3 ready again');
      await c.api.deleteVm(vm.vmId);
    }
  });
});

describe('failures roll back to the source', () => {
  it.each([
    ['the source fails', [{ phase: P.MIGRATION_PHASE_PRECOPY, round: 0 }, { phase: P.MIGRATION_PHASE_FAILED, error: 'link down' }], /link down/],
    ['digests differ', [{ phase: P.MIGRATION_PHASE_STOP_AND_COPY }, { phase: P.MIGRATION_PHASE_COMMITTING, sourceDigest: 'aa', targetDigest: 'bb' }], /digest/],
    ['the stream ends early', [{ phase: P.MIGRATION_PHASE_PRECOPY, round: 0 }], /PRECOPY/],
  ])('when %s', async (_case, script, pattern) => {
    const vm = await newVm('node-1');
    agent('node-1').progressScript = () => script;
    try {
      const m = await c.api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-3' });
      const done = await waitFinal(m.migrationId);
      expect(done.phase).toBe(P.MIGRATION_PHASE_FAILED);
      expect(done.error).toMatch(pattern);
      expect(await c.api.getVm(vm.vmId)).toMatchObject({ nodeId: 'node-1', state: VmState.VM_STATE_RUNNING, fencingEpoch: 1 });
      expect(await c.api.getNode('node-3')).toMatchObject({ vcpusAllocated: 0, memoryMibAllocated: 0, vmCount: 0 });
      expect(agent('node-3').calls).toContain(`abort:${m.migrationId}`);
    } finally {
      agent('node-1').progressScript = defaultProgress;
      await c.api.deleteVm(vm.vmId);
    }
  });
});

describe('cancel', () => {
  it('mid-precopy: CANCELLED at once, room given back, VM running on the source, both agents told', async () => {
    const vm = await newVm('node-1');
    const source = agent('node-1');
    source.progressDelayMs = 200;
    try {
      const m = await c.api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2' });
      await waitFor(async () => (await c.api.getMigration(m.migrationId)).phase === P.MIGRATION_PHASE_PRECOPY, 5000, 'PRECOPY');
      const watched = watch(m.migrationId);
      const cancelled = await cancel(m.migrationId);
      expect(cancelled.phase).toBe(P.MIGRATION_PHASE_CANCELLED);
      expect(await c.api.getVm(vm.vmId)).toMatchObject({ nodeId: 'node-1', state: VmState.VM_STATE_RUNNING, fencingEpoch: 1 });
      expect(await c.api.getNode('node-2')).toMatchObject({ memoryMibAllocated: 0 });
      expect(source.calls).toContain(`abort:${m.migrationId}`);
      expect(agent('node-2').calls).toContain(`abort:${m.migrationId}`);
      expect((await watched).at(-1)?.phase).toBe(P.MIGRATION_PHASE_CANCELLED);
      // The orchestrator's own rollback afterwards changes nothing.
      await new Promise((r) => setTimeout(r, 500));
      expect((await c.api.getMigration(m.migrationId)).phase).toBe(P.MIGRATION_PHASE_CANCELLED);
      expect(agent('node-2').calls).not.toContain(`commit:${m.migrationId}@2`);
      // Cancelling again answers the final state.
      expect((await cancel(m.migrationId)).phase).toBe(P.MIGRATION_PHASE_CANCELLED);
    } finally {
      source.progressDelayMs = 20;
      await c.api.deleteVm(vm.vmId);
    }
  });
});

describe('limits and drain', () => {
  it('at most 2 outbound migrations per node run at once; the rest wait in the queue', async () => {
    const source = agent('node-3');
    source.progressDelayMs = 60;
    const vms = [];
    for (let i = 0; i < 4; i++) vms.push(await newVm('node-3', 64));
    try {
      const drained = await drain('node-3');
      expect(drained.node?.state).toBe(cluster.NodeState.NODE_STATE_DRAINING);
      expect(drained.migrations).toHaveLength(4);
      let maxActive = 0;
      await waitFor(async () => {
        const ms = await Promise.all(drained.migrations.map((m) => c.api.getMigration(m.migrationId)));
        const active = ms.filter((m) => m.phase !== P.MIGRATION_PHASE_PENDING && !FINAL_PHASES.has(m.phase)).length;
        maxActive = Math.max(maxActive, active);
        return ms.every((m) => m.phase === P.MIGRATION_PHASE_COMPLETED);
      }, 20_000, 'every drain migration COMPLETED');
      expect(maxActive).toBeGreaterThanOrEqual(1);
      expect(maxActive).toBeLessThanOrEqual(2);
      expect(await c.api.getNode('node-3')).toMatchObject({ vmCount: 0, memoryMibAllocated: 0 });
      for (const vm of vms) expect((await c.api.getVm(vm.vmId)).nodeId).not.toBe('node-3');
      await expectCode(c.api.createVm({ name: `m-${++seq}`, vcpus: 1, memoryMib: 64, workload: IDLE_WORKLOAD, nodeId: 'node-3' }), status.FAILED_PRECONDITION);
      expect((await c.api.uncordonNode('node-3')).state).toBe(cluster.NodeState.NODE_STATE_READY);
    } finally {
      source.progressDelayMs = 20;
      for (const vm of vms) await c.api.deleteVm(vm.vmId);
    }
  });
});

describe('status codes', () => {
  it('NOT_FOUND, FAILED_PRECONDITION, INVALID_ARGUMENT; nothing changes', async () => {
    const vm = await newVm('node-1');
    agent('node-1').progressDelayMs = 150;
    try {
      await expectCode(c.api.getMigration('mig-nope'), status.NOT_FOUND);
      await expectCode(cancel('mig-nope'), status.NOT_FOUND);
      await expectCode(new Promise((resolve, reject) => {
        const s = c.api.client.watchMigration({ migrationId: 'mig-nope' });
        s.on('data', resolve);
        s.on('error', reject);
      }), status.NOT_FOUND);
      await expectCode(c.api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-1' }), status.INVALID_ARGUMENT, /target_node_id/);
      await c.api.cordonNode('node-2');
      await expectCode(c.api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2' }), status.FAILED_PRECONDITION, /cordoned/);
      await c.api.uncordonNode('node-2');
      const m = await c.api.migrateVm({ vmId: vm.vmId });
      await expectCode(c.api.migrateVm({ vmId: vm.vmId }), status.FAILED_PRECONDITION, /migrating/);
      await expectCode(c.api.deleteVm(vm.vmId), status.FAILED_PRECONDITION, /migrating/);
      expect((await c.api.listMigrations({ vmId: vm.vmId })).migrations.map((x) => x.migrationId)).toEqual([m.migrationId]);
      await waitFinal(m.migrationId);
      await expectCode(c.api.listMigrations({ vmId: 'vm-nope' }), status.NOT_FOUND);
    } finally {
      agent('node-1').progressDelayMs = 20;
      await c.api.deleteVm(vm.vmId);
    }
  });
});

describe('the migration policy', () => {
  it('unset fields take the defaults, the completion timeout 150 s per GiB; explicit values are kept or refused, naming the field', async () => {
    const big = await newVm('node-1', 2048);
    try {
      // Nothing set: every field resolved and stored; a 2 GiB VM gets 300 s, not a fixed figure.
      await expectCode(c.api.migrateVm({ vmId: big.vmId, policy: { downtimeLimitMs: 0 } }), status.INVALID_ARGUMENT, /policy.downtime_limit_ms: 0: must be in 1\.\.60000/);
      await expectCode(c.api.migrateVm({ vmId: big.vmId, policy: { maxRounds: 0 } }), status.INVALID_ARGUMENT, /policy.max_rounds/);
      await expectCode(c.api.migrateVm({ vmId: big.vmId, policy: { completionTimeoutMs: 2 ** 31 } }), status.INVALID_ARGUMENT, /policy.completion_timeout_ms/);
      await expectCode(c.api.migrateVm({ vmId: big.vmId, policy: { xbzrle: true, xbzrleCacheMib: 0 } }), status.INVALID_ARGUMENT, /policy.xbzrle_cache_mib/);
      await expectCode(c.api.migrateVm({ vmId: big.vmId, policy: { xbzrleCacheMib: 513 } }), status.INVALID_ARGUMENT, /quarter of the VM's memory \(512 MiB\)/);
      expect((await c.api.listMigrations({ vmId: big.vmId })).migrations).toEqual([]); // nothing half-done
      const m = await c.api.migrateVm({ vmId: big.vmId, policy: { maxBandwidthMibPerSec: 0, autoConverge: false } });
      expect(m.policy).toEqual({
        downtimeLimitMs: 300, maxBandwidthMibPerSec: 0, maxRounds: 30, autoConverge: false, xbzrle: false, completionTimeoutMs: 300_000, xbzrleCacheMib: 64, multifdChannels: 1,
      });
      await waitFinal(m.migrationId);
    } finally {
      await c.api.deleteVm(big.vmId);
    }
  });
});

async function expectCode(p: Promise<unknown>, code: status, pattern?: RegExp): Promise<void> {
  const error = await p.then(
    () => {
      throw new Error(`expected ${status[code]}, got success`);
    },
    (e: ServiceError) => e,
  );
  expect(status[error.code], error.details).toBe(status[code]);
  if (pattern) expect(error.details).toMatch(pattern);
}

function cancel(migrationId: string): Promise<cluster.Migration> {
  return new Promise((resolve, reject) => c.api.client.cancelMigration({ migrationId }, (e, r) => (e ? reject(e) : resolve(r))));
}

function drain(nodeId: string): Promise<cluster.DrainNodeResponse> {
  return new Promise((resolve, reject) => c.api.client.drainNode({ nodeId, requestId: '' }, (e, r) => (e ? reject(e) : resolve(r))));
}

describe('controller restart', () => {
  it('a migration in flight during a graceful restart ends FAILED with the VM running on its source', async () => {
    const vm = await newVm('node-2');
    agent('node-2').progressDelayMs = 300;
    try {
      const m = await c.api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-1' });
      await waitFor(async () => (await c.api.getMigration(m.migrationId)).phase === P.MIGRATION_PHASE_PRECOPY, 5000, 'PRECOPY');
      await c.restart();
      const done = await c.api.getMigration(m.migrationId);
      expect(done).toMatchObject({ phase: P.MIGRATION_PHASE_FAILED, error: expect.stringMatching(/shut down/) });
      expect(await c.api.getVm(vm.vmId)).toMatchObject({ nodeId: 'node-2', state: VmState.VM_STATE_RUNNING, fencingEpoch: 1 });
      expect(await c.api.getNode('node-1')).toMatchObject({ memoryMibAllocated: 0 });
      for (const a of c.agents) await a.register(c.controller.address);
      // The queue works after the restart.
      agent('node-2').progressDelayMs = 20;
      const again = await c.api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-1' });
      expect((await waitFinal(again.migrationId)).phase).toBe(P.MIGRATION_PHASE_COMPLETED);
    } finally {
      agent('node-2').progressDelayMs = 20;
      await c.api.deleteVm(vm.vmId);
    }
  });
});

describe('memory pressure', () => {
  it('a node whose real memory use crosses the watermark gets a VM migrated off (reason memory-pressure)', async () => {
    const vm = await newVm('node-1', 256);
    const hot = agent('node-1');
    hot.reportOverrides = { memoryUsedBytes: 4000 * 1024 * 1024 };
    try {
      let migration: cluster.Migration | undefined;
      await waitFor(async () => {
        migration = (await c.api.listMigrations({ vmId: vm.vmId })).migrations.find((m) => m.reason === 'memory-pressure');
        return migration !== undefined;
      }, 10_000, 'a memory-pressure migration');
      hot.reportOverrides = {};
      expect(migration!.sourceNodeId).toBe('node-1');
      expect((await waitFinal(migration!.migrationId)).phase).toBe(P.MIGRATION_PHASE_COMPLETED);
      expect((await c.api.getVm(vm.vmId)).nodeId).not.toBe('node-1');
    } finally {
      hot.reportOverrides = {};
      await c.api.deleteVm(vm.vmId);
    }
  });
});
