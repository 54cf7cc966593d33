// The commit is the point of no return (docs/design.md, "Failure semantics"), tried against real
// processes with faults injected at exact steps by a relay between the controller and one agent:
// - an error after the commit (a failed ReleaseOutgoing, then failing Redis writes) never resumes the
//   source: the VM ends on the target, in one place;
// - the target dies after the commit, before CommitIncoming: the source's verified paused copy runs on
//   under a newer epoch (N+2), never both, never none;
// - the controller dies twice while COMMITTING: the migration still completes and its slot is freed;
// - the controller dies between VERIFIED and the commit: the paused source is not left paused.
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { agent, cluster } from '@vmm/proto';
import { AgentRelay, gate } from './support/agent-relay.js';
import { startTestCluster, type TestCluster } from './support/cluster.js';
import { agentVms, policy, short, VmState, waitForFinal, workload, WorkloadKind } from './support/migration.js';
import { vmRequest } from './support/vms.js';
import { waitFor } from './support/wait-for.js';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';

const REPORT_INTERVAL_MS = 250;
const LEASE_MS = 1_000;

interface Setup {
  c: TestCluster;
  api: ClusterApi;
  relay: AgentRelay;
  redis: Redis;
}

/** Two agents, the one at `relayed` (0 or 1) behind an AgentRelay; a private Redis (its config is changed). */
async function setup(relayed: number): Promise<Setup> {
  const relay = await AgentRelay.start();
  let c: TestCluster;
  try {
    c = await startTestCluster({
      agents: 2,
      // The relay is a man in the middle between the controller and an agent: what mutual TLS keeps
      // out. These tests are about the commit point, so their agent plane is plaintext on purpose.
      insecure: true,
      reportIntervalMs: REPORT_INTERVAL_MS,
      privateRedis: true,
      controllerEnv: { NODE_LEASE_MS: String(LEASE_MS) },
      agentEnv: (i): Record<string, string> => (i === relayed ? { AGENT_ADVERTISE_ADDRESS: relay.address } : {}),
    });
  } catch (err) {
    await relay.stop();
    throw err;
  }
  relay.connect(c.agents[relayed]!.address);
  return { c, api: c.api(), relay, redis: new Redis(c.redisUrl) };
}

async function teardown(s: Setup | undefined): Promise<void> {
  if (!s) return;
  s.redis.disconnect();
  s.api.close();
  await s.c.stop();
  await s.relay.stop();
}

const busyVm = (nodeId: string) =>
  vmRequest({ memoryMib: 64, image: 'alpine-3.20', nodeId, workload: workload(WorkloadKind.WORKLOAD_KIND_UNIFORM, 2_000, 16) });

/** Watches both agents' VM lists until stopped; records any moment both held the VM running. */
function watchForTwoCopies(s: Setup, vmId: string): { stop(): Promise<string[]> } {
  const seen: string[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const lists = await Promise.all(s.c.agents.map((a) => agentVms(a.address).catch(() => [] as agent.VmStatus[])));
      const running = lists.map((l, i) => (l.some((v) => v.vmId === vmId && v.state === cluster.VmState.VM_STATE_RUNNING) ? s.c.agents[i]!.nodeId : '')).filter(Boolean);
      if (running.length > 1) seen.push(running.join('+'));
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return seen;
    },
  };
}

/** What each agent holds of `vmId` right now: `node:STATE@epoch`. */
async function copies(s: Setup, vmId: string): Promise<string[]> {
  const out: string[] = [];
  for (const a of s.c.agents) {
    for (const v of await agentVms(a.address)) if (v.vmId === vmId) out.push(`${a.nodeId}:${short(v.state)}@${v.fencingEpoch}`);
  }
  return out;
}

describe('an error after the commit', () => {
  let s: Setup;
  beforeAll(async () => (s = await setup(0)));
  afterAll(() => teardown(s));

  it('never resumes the source: a failed ReleaseOutgoing and failing Redis writes end with the VM on the target only', async () => {
    const vm = await s.api.createVm(busyVm('node-1'));
    const watch = watchForTwoCopies(s, vm.vmId);
    let restore: Promise<unknown> | undefined;
    s.relay.onUnary = async (method) => {
      if (method !== 'releaseOutgoing' || restore) return undefined;
      // Redis refuses every write for a moment (no replica to satisfy min-replicas-to-write), right
      // when the controller goes on from the failed release to complete the migration.
      await s.redis.config('SET', 'min-replicas-to-write', '1');
      restore = new Promise((r) => setTimeout(r, 1_500)).then(() => s.redis.config('SET', 'min-replicas-to-write', '0'));
      return { kind: 'fail', code: 14, details: 'ReleaseOutgoing lost by the test relay' };
    };
    const m = await s.api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2' });
    const done = await waitForFinal(s.api, m.migrationId, 60_000);
    expect(restore, 'the fault was injected').toBeDefined();
    await restore;
    expect(short(done.phase), done.error).toBe('COMPLETED');
    expect(await s.api.getVm({ vmId: vm.vmId })).toMatchObject({ nodeId: 'node-2', state: VmState.VM_STATE_RUNNING, fencingEpoch: 2 });
    // The source's copy goes through its reports (RELEASE_SOURCE), not through the lost call.
    await waitFor(async () => (await copies(s, vm.vmId)).join() === 'node-2:RUNNING@2', 20_000, 'the VM on the target only');
    expect(await watch.stop()).toEqual([]);
  });
});

describe('the target dies after the commit, before it resumed the VM', () => {
  let s: Setup;
  beforeAll(async () => (s = await setup(1)));
  afterAll(() => teardown(s));

  it("the source's verified paused copy runs on under N+2; the restarted target holds no copy", async () => {
    const vm = await s.api.createVm(busyVm('node-1'));
    const watch = watchForTwoCopies(s, vm.vmId);
    let killed = false;
    s.relay.onUnary = async (method) => {
      if (method !== 'commitIncoming' || killed) return undefined;
      killed = true;
      // SIGKILL between the commit in Redis and CommitIncoming; the agent comes back with its STATE_DIR.
      await s.c.killAgent(1, 'SIGKILL');
      await s.c.startAgent(1);
      return undefined;
    };
    const m = await s.api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2' });
    const done = await waitForFinal(s.api, m.migrationId, 60_000);
    expect(killed).toBe(true);
    expect(short(done.phase)).toBe('FAILED');
    expect(done.errorReason).toBe('TARGET_LOST');
    expect(await s.api.getVm({ vmId: vm.vmId })).toMatchObject({ nodeId: 'node-1', state: VmState.VM_STATE_RUNNING, fencingEpoch: 3 });
    await waitFor(async () => (await copies(s, vm.vmId)).join() === 'node-1:RUNNING@3', 20_000, 'the source running it at epoch 3');
    expect(await watch.stop()).toEqual([]);
    expect((await s.api.getNode({ nodeId: 'node-2' })).memoryMibAllocated).toBe(0);
  });
});

describe('the controller dies twice while COMMITTING', () => {
  let s: Setup;
  beforeAll(async () => (s = await setup(1)));
  afterAll(() => teardown(s));
  afterEach(() => (s.relay.onUnary = undefined));

  it('the migration completes, the VM runs on the target only, and no slot is left taken', async () => {
    const vm = await s.api.createVm(busyVm('node-1'));
    const held = gate();
    s.relay.onUnary = async (method) => {
      if (method === 'commitIncoming') await held.wait;
      return undefined;
    };
    const m = await s.api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2' });
    const commits = () => s.relay.calls.filter((c) => c === `commitIncoming:${m.migrationId}`).length;
    for (let crash = 1; crash <= 2; crash++) {
      await waitFor(() => commits() >= crash, 60_000, `CommitIncoming #${crash}`);
      await s.c.stopController('SIGKILL');
      await s.c.startController();
    }
    await waitFor(() => commits() >= 3, 60_000, 'CommitIncoming after the second restart');
    held.open();
    s.api.close();
    s.api = s.c.api();
    const done = await waitForFinal(s.api, m.migrationId, 60_000);
    expect(short(done.phase), done.error).toBe('COMPLETED');
    expect(await s.api.getVm({ vmId: vm.vmId })).toMatchObject({ nodeId: 'node-2', state: VmState.VM_STATE_RUNNING, fencingEpoch: 2 });
    await waitFor(async () => (await copies(s, vm.vmId)).join() === 'node-2:RUNNING@2', 20_000, 'the VM on the target only');
    await waitFor(async () => (await s.redis.scard(`${s.c.prefix}:mig-active`)) === 0, 10_000, 'no slot held');
  });
});

describe('the controller dies between VERIFIED and the commit', () => {
  let s: Setup;
  beforeAll(async () => (s = await setup(0)));
  afterAll(() => teardown(s));

  it('the paused, verified source is not left paused: the restarted controller ends it with the VM running in one place', async () => {
    const vm = await s.api.createVm(busyVm('node-1'));
    const watch = watchForTwoCopies(s, vm.vmId);
    const verified = gate();
    let heldOnce = false;
    s.relay.onProgress = async (p) => {
      if (p.phase !== cluster.MigrationPhase.MIGRATION_PHASE_COMMITTING || heldOnce) return;
      heldOnce = true;
      verified.open();
      await new Promise(() => undefined); // this controller never hears it
    };
    const m = await s.api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2', policy: policy({}) });
    await verified.wait;
    await s.c.stopController('SIGKILL');
    await s.c.startController();
    s.api.close();
    s.api = s.c.api();
    const done = await waitForFinal(s.api, m.migrationId, 60_000);
    const final = await s.api.getVm({ vmId: vm.vmId });
    expect(short(final.state)).toBe('RUNNING');
    const expected = short(done.phase) === 'COMPLETED' ? `node-2:RUNNING@${final.fencingEpoch}` : `node-1:RUNNING@${final.fencingEpoch}`;
    expect(final.nodeId).toBe(expected.split(':')[0]);
    await waitFor(async () => (await copies(s, vm.vmId)).join() === expected, 20_000, `the VM running on ${final.nodeId} only`);
    expect(await watch.stop()).toEqual([]);
  });
});
