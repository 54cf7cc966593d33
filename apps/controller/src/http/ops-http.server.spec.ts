import { afterEach, describe, expect, it } from 'vitest';
import type { NodeRecord, VmRecord } from '../common/model.js';
import type { MigrationRecord } from '../migration/migration-record.js';
import { createClusterMetrics } from './cluster-metrics.js';
import { startOpsHttpServer, type OpsHttpServer } from './ops-http.server.js';

const node = { nodeId: 'n1', memoryMib: 1024, memoryMibAllocated: 1536, vcpus: 4, vcpusAllocated: 2, vmCount: 3, memoryUsedBytes: 5, lastReportMs: Date.now(), ksm: { pagesShared: 7, pagesSharing: 21, pagesUnshared: 1, pagesVolatile: 0, fullScans: 2, generalProfitBytes: 0 } } as NodeRecord;
const mig = (id: string, phase: MigrationRecord['phase'], more: Partial<MigrationRecord> = {}) =>
  ({ migrationId: id, vmId: `vm-${id}`, sourceNodeId: 'n1', targetNodeId: 'n2', phase, bytesSent: 0, dirtyPagesRemaining: 0, dirtyRatePagesPerSec: 0, throughputBytesPerSec: 0, errorReason: '', ...more }) as MigrationRecord;

let server: OpsHttpServer | undefined;
afterEach(async () => { await server?.close(); server = undefined; });

async function serve(migrations: MigrationRecord[], notReady?: string) {
  const vms = [{ vmId: 'vm-1', nodeId: 'n1', image: 'debian-12', dirtyRatePagesPerSec: 10, workingSetPages: 3, residentPages: 7 } as VmRecord];
  const registry = createClusterMetrics({
    nodes: async () => [node], migrations: async () => migrations, vms: async () => vms, queueDepth: async () => ({ waiting: 2, active: 1 }),
  });
  server = await startOpsHttpServer('127.0.0.1', 0, registry, { notReadyReason: () => notReady });
  return (path: string) => fetch(`http://127.0.0.1:${server!.port}${path}`);
}

describe('controller HTTP port', () => {
  it('serves the migration, node and process series from the records', async () => {
    const get = await serve([
      mig('a', 'COMPLETED'), mig('b', 'FAILED', { errorReason: 'NOT_CONVERGED' }), mig('c', 'FAILED', { errorReason: 'NOT_CONVERGED' }),
      mig('d', 'PRECOPY', { bytesSent: 8192, dirtyPagesRemaining: 3, throughputBytesPerSec: 1000 }),
    ]);
    const res = await get('/metrics');
    expect(res.status).toBe(200);
    const body = await res.text();
    expect(body).toContain('vmm_migrations_in_phase{phase="PRECOPY"} 1');
    expect(body).toContain('vmm_migrations_in_phase{phase="PENDING"} 0');
    expect(body).toContain('vmm_migration_succeeded_total 1');
    expect(body).toContain('vmm_migration_failed_total{reason="NOT_CONVERGED"} 2');
    expect(body).toContain('vmm_migration_data_processed_bytes{migration="d",vm="vm-d",source="n1",target="n2"} 8192');
    expect(body).toContain('vmm_migration_data_remaining_bytes{migration="d",vm="vm-d",source="n1",target="n2"} 12288');
    expect(body).not.toContain('migration="a"');
    expect(body).toContain('vmm_node_ksm_pages_sharing{node="n1"} 21');
    expect(body).toContain('vmm_node_memory_overcommit_ratio{node="n1"} 1.5');
    expect(body).toContain('process_cpu_seconds_total');
    expect(body).toContain('vmm_vm_dirty_memory_rate_bytes{vm="vm-1",node="n1",image="debian-12"} 40960');
    expect(body).toContain('vmm_vm_working_set_bytes{vm="vm-1",node="n1",image="debian-12"} 12288');
    expect(body).toContain('vmm_vm_resident_pages{vm="vm-1",node="n1",image="debian-12"} 7');
    expect(body).toContain('vmm_migration_queue_depth{state="waiting"} 2');
    expect(body).toContain('vmm_reconcile_duration_seconds');
  });

  it('rebuilds the outcome histograms from the completed migrations', async () => {
    const get = await serve([
      mig('a', 'COMPLETED', { downtimeMs: 120, totalTimeMs: 4000, round: 4, bytesSent: 2 * 4096 * 100, pagesTotal: 100 }),
      mig('b', 'COMPLETED', { downtimeMs: 40, totalTimeMs: 1500, round: 2, bytesSent: 4096 * 110, pagesTotal: 100 }),
      mig('c', 'FAILED', { downtimeMs: 0, totalTimeMs: 9000, round: 30 }),
    ]);
    const body = await (await get('/metrics')).text();
    expect(body).toContain('vmm_migration_downtime_seconds_count 2');
    expect(body).toContain('vmm_migration_downtime_seconds_bucket{le="0.05"} 1');
    expect(body).toContain('vmm_migration_downtime_seconds_bucket{le="0.2"} 2');
    expect(body).toContain('vmm_migration_total_time_seconds_sum 5.5');
    expect(body).toContain('vmm_migration_rounds_bucket{le="3"} 1');
    expect(body).toContain('vmm_migration_rounds_count 2');
    expect(body).toContain('vmm_migration_sent_over_vm_size_bucket{le="1.1"} 1');
    expect(body).toContain('vmm_migration_sent_over_vm_size_bucket{le="2"} 2');
    // Scraped again: rebuilt, not added to.
    expect(await (await get('/metrics')).text()).toContain('vmm_migration_downtime_seconds_count 2');
  });

  it('is live and ready, and says why it is not ready', async () => {
    let get = await serve([]);
    expect((await get('/livez')).status).toBe(200);
    expect((await get('/readyz')).status).toBe(200);
    await server!.close();
    get = await serve([], 'redis is unreachable');
    expect((await get('/livez')).status).toBe(200);
    const res = await get('/readyz');
    expect(res.status).toBe(503);
    expect(await res.text()).toContain('redis is unreachable');
    expect((await get('/nope')).status).toBe(404);
  });
});
