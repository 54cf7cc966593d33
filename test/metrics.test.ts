// The controller's HTTP port on a real cluster: /metrics scraped while a real migration runs shows its
// series moving, and after it the outcome and the nodes' figures agree with what the API says;
// /livez and /readyz answer, and /readyz turns 503 (saying why) while Redis is unreachable.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '@vmm/local-cluster/ports';
import { startTestCluster, type TestCluster } from './support/cluster.js';
import { vmRequest } from './support/vms.js';
import { waitFor } from './support/wait-for.js';
import { policy, short, startMigrationCluster, waitForFinal, WorkloadKind, type MigrationTestCluster } from './support/migration.js';

let t: MigrationTestCluster;
let base: string;

beforeAll(async () => {
  const httpPort = await freePort();
  const agentHttpPorts = [await freePort(), await freePort()];
  t = await startMigrationCluster({ agents: 2, reportIntervalMs: 250, httpPort, agentEnv: (i) => ({ AGENT_HTTP_PORT: String(agentHttpPorts[i]) }) });
  base = `http://127.0.0.1:${httpPort}`;
});

afterAll(async () => {
  await t?.stop();
});

async function scrape(url = `${base}/metrics`): Promise<Map<string, number>> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  const series = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    series.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return series;
}

describe('controller /metrics, /livez, /readyz', () => {
  it('is live and ready on a healthy cluster', async () => {
    expect((await fetch(`${base}/livez`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
  });

  it('shows a running migration moving, then its outcome and the nodes as the API has them', async () => {
    const { api } = t;
    const vm = await api.createVm(vmRequest({
      memoryMib: 256, nodeId: 'node-1',
      workload: { kind: WorkloadKind.WORKLOAD_KIND_UNIFORM, dirtyRatePagesPerSec: 20_000, workingSetMib: 64, seed: 5 },
    }));
    try {
      const before = await scrape();
      const succeededBefore = before.get('vmm_migration_succeeded_total') ?? 0;
      const histogramCount = (s: Map<string, number>, name: string) => s.get(`${name}_count`) ?? 0;
      const histograms = ['vmm_migration_downtime_seconds', 'vmm_migration_total_time_seconds', 'vmm_migration_rounds', 'vmm_migration_sent_over_vm_size'];
      const countsBefore = histograms.map((h) => histogramCount(before, h));
      // The agent's own /metrics, at the URL its node advertises, shows the VM's measured figures.
      const node1 = await api.getNode({ nodeId: 'node-1' });
      expect(node1.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      const vmLabels = (node: string) => `{vm="${vm.vmId}",node="${node}",image="${vm.image}"}`;
      const onAgent = await waitFor(async () => {
        const s = await scrape(node1.metricsUrl);
        return (s.get(`vmm_vm_dirty_memory_rate_bytes${vmLabels('node-1')}`) ?? 0) > 0 ? s : undefined;
      }, 20_000, "the agent's /metrics to show the VM's dirty rate");
      expect(onAgent.get(`vmm_vm_working_set_bytes${vmLabels('node-1')}`)).toBeGreaterThan(0);
      expect(onAgent.get(`vmm_vm_resident_pages${vmLabels('node-1')}`)).toBeGreaterThan(0);
      expect(onAgent.get('vmm_agent_controller_link_up{node="node-1"}')).toBe(1);
      expect(onAgent.get('process_resident_memory_bytes')).toBeGreaterThan(0);
      // Dirtying faster than the capped link sends: it converges only as auto-converge throttles, round
      // after round (the record's progress moves per round).
      const started = await api.migrateVm({ vmId: vm.vmId, targetNodeId: 'node-2', policy: policy({ maxBandwidthMibPerSec: 48, downtimeLimitMs: 300, autoConverge: true }) });
      const key = `vmm_migration_data_processed_bytes{migration="${started.migrationId}",vm="${vm.vmId}",source="node-1",target="node-2"}`;
      const seen = new Set<number>();
      await waitFor(async () => {
        const s = await scrape();
        const bytes = s.get(key);
        if (bytes !== undefined && bytes > 0) seen.add(bytes);
        if (seen.size >= 2) return true;
        const phase = short((await api.getMigration({ migrationId: started.migrationId })).phase);
        throw new Error(`phase ${phase}, seen ${[...seen].join(',')}; ${[...s].filter(([k]) => k.startsWith('vmm_migration')).join(' ')}`);
      }, 60_000, 'vmm_migration_data_processed_bytes to take two values while the migration runs', 100);

      const done = await waitForFinal(api, started.migrationId, 90_000);
      expect(short(done.phase)).toBe('COMPLETED');
      const after = await scrape();
      expect(after.get('vmm_migration_succeeded_total')).toBe(succeededBefore + 1);
      expect(after.has(key), 'a finished migration leaves the per-migration series').toBe(false);
      // Its outcome in each histogram; the VM's series on the controller name its new node.
      histograms.forEach((h, i) => expect(histogramCount(after, h), h).toBe(countsBefore[i]! + 1));
      expect(after.get(`vmm_migration_rounds_sum`)).toBeGreaterThanOrEqual(done.round);
      expect(after.get(`vmm_migration_downtime_seconds_sum`)).toBeGreaterThan(0);
      expect(after.get('vmm_migration_queue_depth{state="waiting"}')).toBeGreaterThanOrEqual(0);
      expect(after.get('vmm_reconcile_duration_seconds_count{loop="node report"}')).toBeGreaterThan(0);
      expect(after.get('vmm_reconcile_duration_seconds_count{loop="node readiness"}')).toBeGreaterThan(0);
      expect(after.get('vmm_node_report_lag_seconds{node="node-2"}')).toBeGreaterThanOrEqual(0);
      await waitFor(async () => (await scrape()).has(`vmm_vm_resident_pages${vmLabels('node-2')}`), 20_000, 'the VM on node-2 in the controller\'s series');
      const migrations = (await api.listMigrations({})).migrations;
      expect(after.get('vmm_migrations_in_phase{phase="COMPLETED"}')).toBe(migrations.filter((m) => short(m.phase) === 'COMPLETED').length);
      for (const node of (await api.listNodes({})).nodes) {
        expect(after.get(`vmm_node_memory_allocated_bytes{node="${node.nodeId}"}`), node.nodeId).toBe(Number(node.memoryMibAllocated) * 2 ** 20);
        expect(after.get(`vmm_node_vms{node="${node.nodeId}"}`), node.nodeId).toBe(node.vmCount);
      }
      expect(after.get('process_resident_memory_bytes')).toBeGreaterThan(0);
      // The interceptor saw this test's calls and the agents' reports, each with its status code.
      expect(after.get('vmm_grpc_server_handled_total{method="/cluster.v1.ClusterService/MigrateVm",code="OK"}')).toBeGreaterThanOrEqual(1);
      expect(after.get('vmm_grpc_server_handling_seconds_count{method="/cluster.v1.ClusterService/MigrateVm"}')).toBeGreaterThanOrEqual(1);
      await expect(api.getVm({ vmId: 'no-such-vm' })).rejects.toThrow();
      expect((await scrape()).get('vmm_grpc_server_handled_total{method="/cluster.v1.ClusterService/GetVm",code="NOT_FOUND"}')).toBeGreaterThanOrEqual(1);
    } finally {
      await api.deleteVm({ vmId: vm.vmId }).catch(() => {});
    }
  }, 150_000);
});

describe('controller /readyz while Redis is down', () => {
  let c: TestCluster | undefined;
  let url: string;
  beforeAll(async () => {
    const httpPort = await freePort();
    // Its own Redis, unsupervised: a killed Redis stays down for as long as the test looks.
    c = await startTestCluster({ agents: 1, privateRedis: true, httpPort });
    url = `http://127.0.0.1:${httpPort}`;
  });
  afterAll(async () => {
    // Every process and the private Redis's directory are gone either way; only the removal of the
    // prefix's keys fails, against the Redis this test killed (whose data goes with its directory).
    await c?.stop().catch((err: unknown) => {
      if (!/ECONNREFUSED/.test(String(err))) throw err;
    });
  });

  it('is 503 saying why, while /livez stays 200', async () => {
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    c!.signal('redis', 'SIGKILL');
    const body = await waitFor(async () => {
      const res = await fetch(`${url}/readyz`);
      return res.status === 503 ? res.text() : undefined;
    }, 20_000, '/readyz to turn 503');
    expect(body).toMatch(/redis is unreachable/);
    expect((await fetch(`${url}/livez`)).status).toBe(200);
  });
});
