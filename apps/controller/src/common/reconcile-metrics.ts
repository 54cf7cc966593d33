/**
 * How long the controller's reconcile passes take: each background sweep's pass (node readiness, HA
 * restart, memory pressure, drain, migration resync) and each node report applied, by `loop`. One
 * histogram for the process, registered on no registry here: createClusterMetrics adds it to the
 * controller's (a metric may sit on several registries, as in-process specs start several controllers).
 */
import { Histogram } from 'prom-client';

export const reconcileSeconds = new Histogram({
  name: 'vmm_reconcile_duration_seconds',
  help: 'Duration of one reconcile pass (a sweep, or applying one node report), by loop.',
  labelNames: ['loop'],
  buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
  registers: [],
});
