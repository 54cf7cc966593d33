/**
 * The controller's Prometheus registry (prom-client). Cluster series are read from the stored records at
 * scrape time rather than counted in memory: Redis is the source of truth, so the figures agree with the
 * API and survive a controller restart. Names follow KubeVirt's kubevirt_vmi_migration_* with our vmm_
 * prefix (API.md, Version 2).
 */
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { MIGRATION_PHASES, isFinal } from '@vmm/migration/phase';
import type { NodeRecord } from '../common/model.js';
import type { MigrationRecord } from '../migration/migration-record.js';

const PAGE_BYTES = 4096;

/** What a scrape reads: the same records the API answers from. */
export interface MetricsSource {
  nodes(): Promise<NodeRecord[]>;
  migrations(): Promise<MigrationRecord[]>;
}

/** The controller's registry, with Node.js process metrics; the other families register on it. */
export function createMetricsRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

export function createClusterMetrics(source: MetricsSource, registry: Registry = createMetricsRegistry()): Registry {
  const gauge = (name: string, help: string, labelNames: string[], fill: (g: Gauge) => Promise<void>) =>
    new Gauge({ name, help, labelNames, registers: [registry], async collect() { this.reset(); await fill(this); } });

  gauge('vmm_migrations_in_phase', 'Migrations in each phase.', ['phase'], async (g) => {
    const counts = new Map(MIGRATION_PHASES.map((p) => [p, 0]));
    for (const m of await source.migrations()) counts.set(m.phase, (counts.get(m.phase) ?? 0) + 1);
    for (const [phase, n] of counts) g.set({ phase }, n);
  });
  // Counts of stored outcomes: monotonic while migration records are kept (they are not expired).
  gauge('vmm_migration_succeeded_total', 'Migrations that completed.', [], async (g) => {
    g.set((await source.migrations()).filter((m) => m.phase === 'COMPLETED').length);
  });
  gauge('vmm_migration_failed_total', 'Migrations that failed, by stable reason.', ['reason'], async (g) => {
    for (const m of await source.migrations()) if (m.phase === 'FAILED') g.inc({ reason: m.errorReason || 'UNKNOWN' });
  });
  const running = (name: string, help: string, value: (m: MigrationRecord) => number) =>
    gauge(name, help, ['migration', 'vm', 'source', 'target'], async (g) => {
      for (const m of await source.migrations()) {
        if (!isFinal(m.phase)) g.set({ migration: m.migrationId, vm: m.vmId, source: m.sourceNodeId, target: m.targetNodeId }, value(m));
      }
    });
  running('vmm_migration_data_processed_bytes', 'Bytes sent so far by a running migration.', (m) => m.bytesSent);
  running('vmm_migration_data_remaining_bytes', 'Dirty bytes left to send.', (m) => m.dirtyPagesRemaining * PAGE_BYTES);
  running('vmm_migration_dirty_memory_rate_bytes', 'Guest dirty rate, bytes per second.', (m) => m.dirtyRatePagesPerSec * PAGE_BYTES);
  running('vmm_migration_memory_transfer_rate_bytes', 'Transfer rate, bytes per second.', (m) => m.throughputBytesPerSec);

  const perNode = (name: string, help: string, value: (n: NodeRecord) => number | undefined) =>
    gauge(name, help, ['node'], async (g) => {
      for (const n of await source.nodes()) {
        const v = value(n);
        if (v !== undefined) g.set({ node: n.nodeId }, v);
      }
    });
  perNode('vmm_node_memory_capacity_bytes', 'Physical memory of the node.', (n) => n.memoryMib * 2 ** 20);
  perNode('vmm_node_memory_allocated_bytes', 'Memory allocated to its VMs.', (n) => n.memoryMibAllocated * 2 ** 20);
  perNode('vmm_node_memory_used_bytes', 'Host frames held for guest memory (after KSM).', (n) => n.memoryUsedBytes);
  perNode('vmm_node_vcpus_capacity', 'vCPUs of the node.', (n) => n.vcpus);
  perNode('vmm_node_vcpus_allocated', 'vCPUs allocated to its VMs.', (n) => n.vcpusAllocated);
  perNode('vmm_node_vms', 'VMs placed on the node.', (n) => n.vmCount);
  perNode('vmm_node_memory_overcommit_ratio', 'Allocated over physical memory.', (n) => (n.memoryMib ? n.memoryMibAllocated / n.memoryMib : 0));
  perNode('vmm_node_vcpu_overcommit_ratio', 'Allocated over physical vCPUs.', (n) => (n.vcpus ? n.vcpusAllocated / n.vcpus : 0));
  perNode('vmm_node_ksm_pages_shared', 'KSM pages_shared.', (n) => n.ksm?.pagesShared);
  perNode('vmm_node_ksm_pages_sharing', 'KSM pages_sharing.', (n) => n.ksm?.pagesSharing);
  perNode('vmm_node_ksm_pages_unshared', 'KSM pages_unshared.', (n) => n.ksm?.pagesUnshared);
  perNode('vmm_node_ksm_full_scans', 'KSM full_scans.', (n) => n.ksm?.fullScans);
  perNode('vmm_node_report_lag_seconds', "Time since the node's last report.", (n) => (n.lastReportMs ? (Date.now() - n.lastReportMs) / 1000 : undefined));
  return registry;
}
