// DrainNode against real processes: a node running 6 busy VMs is drained onto two others. Every VM
// must leave (COMPLETED, equal digests, RUNNING elsewhere) and, sampled all along from ListMigrations,
// never more than MAX_MIGRATIONS_OUTBOUND_PER_NODE (2) migrations leave the node at once, never more
// than MAX_MIGRATIONS_CLUSTER (5) are in flight, never more than 2 enter one node.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { cluster } from '@vmm/proto';
import { listAllVms, vmRequest } from './support/vms.js';
import {
  agentAddress,
  agentVms,
  expectCompleted,
  FINAL_PHASES,
  listAllMigrations,
  MigrationPhase,
  short,
  startMigrationCluster,
  workload,
  WorkloadKind,
  type MigrationTestCluster,
} from './support/migration.js';

const DRAINED = 'node-1';
const VM_COUNT = 6;
const MAX_OUTBOUND_PER_NODE = 2;
const MAX_INBOUND_PER_NODE = 2;
const MAX_CLUSTER = 5;
const IN_FLIGHT: ReadonlySet<cluster.MigrationPhase> = new Set([
  MigrationPhase.MIGRATION_PHASE_PREPARING,
  MigrationPhase.MIGRATION_PHASE_PRECOPY,
  MigrationPhase.MIGRATION_PHASE_STOP_AND_COPY,
  MigrationPhase.MIGRATION_PHASE_COMMITTING,
]);

let t: MigrationTestCluster;

beforeAll(async () => {
  t = await startMigrationCluster({ agents: 3, reportIntervalMs: 500 });
});

afterAll(async () => {
  await t?.stop();
});

describe('DrainNode', () => {
  it(`moves all ${VM_COUNT} VMs off the node within the migration limits`, async () => {
    const { api, c } = t;
    const vms: cluster.Vm[] = [];
    try {
      for (let i = 0; i < VM_COUNT; i++) {
        vms.push(
          await api.createVm(
            vmRequest({ memoryMib: 128, image: 'debian-12', nodeId: DRAINED, workload: workload(WorkloadKind.WORKLOAD_KIND_UNIFORM, 5_000, 64, i + 1) }),
          ),
        );
      }
      const epochs = new Map(vms.map((v) => [v.vmId, v.fencingEpoch]));

      const drained = await api.drainNode({ nodeId: DRAINED });
      expect(short(drained.node!.state)).toBe('DRAINING');
      expect(drained.migrations).toHaveLength(VM_COUNT);
      expect(new Set(drained.migrations.map((m) => m.vmId))).toEqual(new Set(vms.map((v) => v.vmId)));
      for (const m of drained.migrations) {
        expect(m.sourceNodeId).toBe(DRAINED);
        expect(m.targetNodeId).not.toBe(DRAINED);
        expect(m.reason).toBe('drain');
      }
      const ids = new Set(drained.migrations.map((m) => m.migrationId));

      // Sample until every migration is final; check the bounds on every sample.
      let samples = 0;
      let maxOutbound = 0;
      let maxInFlight = 0;
      const deadline = Date.now() + 150_000;
      for (;;) {
        const all = (await listAllMigrations(api)).filter((m) => ids.has(m.migrationId));
        const inFlight = all.filter((m) => IN_FLIGHT.has(m.phase));
        const outbound = inFlight.filter((m) => m.sourceNodeId === DRAINED).length;
        const perTarget = new Map<string, number>();
        for (const m of inFlight) perTarget.set(m.targetNodeId, (perTarget.get(m.targetNodeId) ?? 0) + 1);
        const where = inFlight.map((m) => `${m.vmId}:${short(m.phase)}→${m.targetNodeId}`).join(' ');
        expect(outbound, `outbound from ${DRAINED}: ${where}`).toBeLessThanOrEqual(MAX_OUTBOUND_PER_NODE);
        expect(inFlight.length, `in flight: ${where}`).toBeLessThanOrEqual(MAX_CLUSTER);
        for (const [node, n] of perTarget) expect(n, `inbound to ${node}: ${where}`).toBeLessThanOrEqual(MAX_INBOUND_PER_NODE);
        samples++;
        maxOutbound = Math.max(maxOutbound, outbound);
        maxInFlight = Math.max(maxInFlight, inFlight.length);
        if (all.length === VM_COUNT && all.every((m) => FINAL_PHASES.has(m.phase))) break;
        if (Date.now() > deadline) throw new Error(`drain did not finish: ${all.map((m) => `${m.vmId}:${short(m.phase)}`).join(' ')}`);
        // While the drain runs the node says so.
        expect(short((await api.getNode({ nodeId: DRAINED })).state)).toBe('DRAINING');
        await new Promise((r) => setTimeout(r, 25));
      }
      console.info(`drain: ${samples} samples, max outbound ${maxOutbound}, max in flight ${maxInFlight}`);
      // The sampler did see migrations running (it is not checking an empty list).
      expect(maxOutbound).toBeGreaterThan(0);

      for (const id of ids) expectCompleted(await api.getMigration({ migrationId: id }), 'of the drain');
      const after = await listAllVms(api);
      for (const v of vms) {
        const now = after.find((x) => x.vmId === v.vmId)!;
        expect(now.nodeId, `${v.name} moved`).not.toBe(DRAINED);
        expect(short(now.state)).toBe('RUNNING');
        expect(now.fencingEpoch).toBeGreaterThan(epochs.get(v.vmId)!);
      }
      const node = await api.getNode({ nodeId: DRAINED });
      expect(node.vmCount).toBe(0);
      expect(node.vcpusAllocated).toBe(0);
      expect(node.memoryMibAllocated).toBe(0);
      expect(await agentVms(agentAddress(c, DRAINED))).toEqual([]);
      // Nothing new lands on a drained node.
      expect(short(node.state)).toBe('DRAINING');
    } finally {
      for (const v of vms) await api.deleteVm({ vmId: v.vmId }).catch(() => {});
    }
  }, 200_000);
});
