/**
 * The controller's Prometheus registry (prom-client). Cluster series are read from the stored records at
 * scrape time rather than counted in memory: Redis is the source of truth, so the figures agree with the
 * API and survive a controller restart. Names follow KubeVirt's kubevirt_vmi_migration_* with our vmm_
 * prefix (API.md, Version 2).
 */
import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { MIGRATION_PHASES, isFinal } from '@vmm/migration/phase';
import type { NodeRecord, VmRecord } from '../common/model.js';
import { reconcileSeconds } from '../common/reconcile-metrics.js';
import type { MigrationRecord } from '../migration/migration-record.js';

const PAGE_BYTES = 4096;

/** What a scrape reads: the same records the API answers from. */
export interface MetricsSource {
  nodes(): Promise<NodeRecord[]>;
  migrations(): Promise<MigrationRecord[]>;
  /** Optional (specs of the node and migration series leave them out). */
  vms?(): Promise<VmRecord[]>;
  /** The migration queue's jobs by state. */
  queueDepth?(): Promise<Record<string, number>>;
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
  const vmGauge = (name: string, help: string, value: (v: VmRecord) => number) =>
    gauge(name, help, ['vm', 'node', 'image'], async (g) => {
      for (const v of (await source.vms?.()) ?? []) if (v.nodeId) g.set({ vm: v.vmId, node: v.nodeId, image: v.image }, value(v));
    });
  vmGauge('vmm_vm_dirty_memory_rate_bytes', 'Measured guest dirty rate, bytes per second (last report).', (v) => v.dirtyRatePagesPerSec * PAGE_BYTES);
  vmGauge('vmm_vm_working_set_bytes', 'Distinct bytes the guest wrote over the recent window.', (v) => v.workingSetPages * PAGE_BYTES);
  vmGauge('vmm_vm_resident_pages', 'Guest pages backed by a host frame.', (v) => v.residentPages);

  gauge('vmm_migration_queue_depth', 'Migration jobs in the queue, by BullMQ state.', ['state'], async (g) => {
    for (const [state, n] of Object.entries((await source.queueDepth?.()) ?? {})) g.set({ state }, n);
  });
  registry.registerMetric(reconcileSeconds);

  // Outcome histograms of the completed migrations, rebuilt from the records at each scrape (like the
  // counts above: they agree with the API and survive a restart).
  const completed = (name: string, help: string, buckets: number[], value: (m: MigrationRecord) => number | undefined) =>
    new Histogram({
      name, help, buckets, registers: [registry],
      async collect() {
        this.reset();
        for (const m of await source.migrations()) {
          const v = m.phase === 'COMPLETED' ? value(m) : undefined;
          if (v !== undefined && Number.isFinite(v)) this.observe(v);
        }
      },
    });
  completed('vmm_migration_downtime_seconds', 'Measured downtime (source paused to target running) of completed migrations.',
    [0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5], (m) => m.downtimeMs / 1000);
  completed('vmm_migration_total_time_seconds', 'Start to completion of completed migrations.',
    [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900], (m) => m.totalTimeMs / 1000);
  completed('vmm_migration_rounds', 'Rounds (pre-copy plus the paused pass) of completed migrations.',
    [1, 2, 3, 5, 8, 13, 21, 30, 50, 100], (m) => m.round);
  completed('vmm_migration_sent_over_vm_size', "Bytes sent over the VM's memory size, of completed migrations.",
    [0.5, 1, 1.1, 1.25, 1.5, 2, 3, 5, 10], (m) => (m.pagesTotal > 0 ? m.bytesSent / (m.pagesTotal * PAGE_BYTES) : undefined));

  perNode('vmm_node_report_lag_seconds', "Time since the node's last report.", (n) => (n.lastReportMs ? (Date.now() - n.lastReportMs) / 1000 : undefined));
  return registry;
}
