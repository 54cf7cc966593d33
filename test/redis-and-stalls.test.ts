// Redis is the controller's memory, and every wait has a bound (docs/design.md, "Failure
// semantics"), against real processes:
// - a Redis SIGKILLed mid-migration (AOF, appendfsync always, restarted on its data by the
//   supervisor) loses no acknowledged write, and a WatchMigration open across the restart still ends
//   on the final phase;
// - a Redis that comes back empty is rebuilt from the agents: they register again and their VMs are
//   adopted where they run;
// - a target that goes silent (SIGSTOP) while the source is paused in STOP_AND_COPY does not keep
//   the VM paused until the completion timeout: the source runs on within the switch-over bound.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cluster } from '@vmm/proto';
import { AgentRelay } from './support/agent-relay.js';
import { startTestCluster, type TestCluster } from './support/cluster.js';
import { agentVms, openWatch, policy, short, waitForFinal, waitForPhase, MigrationPhase, workload, WorkloadKind } from './support/migration.js';
import { listAllVms, vmRequest } from './support/vms.js';
import { waitFor } from './support/wait-for.js';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';

const REPORT_INTERVAL_MS = 250;

describe('Redis restarts', () => {
  let c: TestCluster;
  let api: ClusterApi;
  beforeAll(async () => {
    c = await startTestCluster({ agents: 2, reportIntervalMs: REPORT_INTERVAL_MS, privateRedis: true, supervise: true });
    api = c.api();
  });
  afterAll(async () => {
    api?.close();
    await c?.stop();
  });

  it('a SIGKILLed Redis loses nothing, and a watch open across its restart ends on the final phase', async () => {
    const vm = await api.createVm(vmRequest({ memoryMib: 128, image: 'debian-12', nodeId: 'node-1', workload: workload(WorkloadKind.WORKLOAD_KIND_UNIFORM, 2_000, 16) }));
    const m = await api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2', policy: policy({ maxBandwidthMibPerSec: 16 }) });
    const watch = openWatch(api, m.migrationId, 90_000);
    await waitForPhase(api, m.migrationId, [MigrationPhase.MIGRATION_PHASE_PRECOPY], 30_000, 20);
    const restarts = c.restartsOf('redis');
    c.signal('redis', 'SIGKILL');
    await c.waitForRestart('redis', { after: restarts, timeoutMs: 20_000 });
    const watched = await watch.done;
    expect(watched.ended, 'the watch ended by itself').toBe(true);
    const last = watched.messages.at(-1)!;
    expect(['COMPLETED', 'FAILED']).toContain(short(last.phase));
    const done = await waitForFinal(api, m.migrationId, 30_000);
    expect(done.phase).toBe(last.phase);
    // Acknowledged writes survived: the VM, its nodes and the migration are all there.
    const after = await api.getVm({ vmId: vm.vmId });
    expect(short(after.state)).toBe('RUNNING');
    expect(after.nodeId).toBe(short(done.phase) === 'COMPLETED' ? 'node-2' : 'node-1');
    expect((await api.listNodes({})).nodes.map((n) => n.nodeId)).toEqual(['node-1', 'node-2']);
    await waitFor(async () => (await agentVms(c.agents[after.nodeId === 'node-1' ? 0 : 1]!.address)).some((v) => v.vmId === vm.vmId && short(v.state) === 'RUNNING'), 20_000, 'the VM running where the record says');
    await api.deleteVm({ vmId: vm.vmId });
  });

  it('a Redis that comes back empty is rebuilt from the agents: nodes register again and their VMs are adopted', async () => {
    const a = await api.createVm(vmRequest({ nodeId: 'node-1', name: 'keep-a' }));
    const b = await api.createVm(vmRequest({ nodeId: 'node-2', name: 'keep-b' }));
    const redis = new Redis(c.redisUrl);
    try {
      await redis.flushall();
    } finally {
      redis.disconnect();
    }
    await waitFor(async () => {
      const vms = await listAllVms(api).catch(() => []);
      return vms.some((v) => v.vmId === a.vmId && v.nodeId === 'node-1') && vms.some((v) => v.vmId === b.vmId && v.nodeId === 'node-2');
    }, 30_000, 'both VMs adopted on their nodes');
    await c.waitForNodes();
    expect((await api.getVm({ vmId: a.vmId })).name).toBe('keep-a');
    expect((await api.getNode({ nodeId: 'node-1' })).vmCount).toBe(1);
    await api.deleteVm({ vmId: a.vmId });
    await api.deleteVm({ vmId: b.vmId });
  });
});

describe('a target that goes silent during STOP_AND_COPY', () => {
  let c: TestCluster;
  let api: ClusterApi;
  let relay: AgentRelay;
  beforeAll(async () => {
    relay = await AgentRelay.start();
    // The relay sits between the controller and agent 0, which mutual TLS keeps out: plaintext on purpose.
    c = await startTestCluster({ agents: 2, insecure: true, reportIntervalMs: REPORT_INTERVAL_MS, controllerEnv: { NODE_LEASE_MS: '1000' }, agentEnv: (i): Record<string, string> => (i === 0 ? { AGENT_ADVERTISE_ADDRESS: relay.address } : {}) });
    relay.connect(c.agents[0]!.address);
    api = c.api();
  });
  afterAll(async () => {
    api?.close();
    await c?.stop();
    await relay?.stop();
  });

  it('does not keep the source paused: it runs on within the switch-over bound, and the target discards its copy once back', async () => {
    // A busy guest over a capped link: the last round under pause takes most of the 1 s limit,
    // long enough for the target to freeze in the middle of it.
    const vm = await api.createVm(vmRequest({ memoryMib: 128, image: 'debian-12', nodeId: 'node-1', workload: workload(WorkloadKind.WORKLOAD_KIND_UNIFORM, 3_000, 64) }));
    let frozen = false;
    relay.onProgress = (p) => {
      if (p.phase !== cluster.MigrationPhase.MIGRATION_PHASE_STOP_AND_COPY || frozen) return;
      frozen = true;
      c.signal('node-2', 'SIGSTOP');
    };
    try {
      const m = await api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2', policy: policy({ maxBandwidthMibPerSec: 16, downtimeLimitMs: 1_000, maxRounds: 1_000 }) });
      // Bounded by the switch-over timeout (10 s here) or, had the target verified first, by two leases: not by the 150 s completion timeout.
      const done = await waitForFinal(api, m.migrationId, 40_000);
      expect(frozen).toBe(true);
      expect(short(done.phase)).toBe('FAILED');
      expect(['SWITCHOVER_TIMEOUT', 'CONNECTION_IDLE', 'TARGET_LOST', 'AGENT_UNAVAILABLE']).toContain(done.errorReason);
      const after = await api.getVm({ vmId: vm.vmId });
      expect(after).toMatchObject({ nodeId: 'node-1', state: cluster.VmState.VM_STATE_RUNNING });
      await waitFor(async () => (await agentVms(c.agents[0]!.address)).some((v) => v.vmId === vm.vmId && short(v.state) === 'RUNNING'), 20_000, 'the source running the VM');
    } finally {
      c.signal('node-2', 'SIGCONT');
    }
    await c.waitForNodes();
    await waitFor(async () => !(await api.getNode({ nodeId: 'node-2' })).reportedVms.some((r) => r.vmId === vm.vmId), 20_000, 'the target holding no copy');
    await api.deleteVm({ vmId: vm.vmId });
  });
});
