// The memory-pressure balancer against a real controller, Redis and fake agents, sweeps driven by
// the spec: hysteresis between the watermarks, migrations in flight counted toward the goal, and
// the per-node cool-down.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cluster } from '@vmm/proto';
import { FINAL_PHASES } from '../testing/cluster-client.js';
import { waitFor } from '../../../../test/support/wait-for.js';
import { IDLE_WORKLOAD } from '../testing/records.js';
import { startSpecCluster, type SpecCluster } from '../testing/spec-cluster.js';
import { MemoryPressureBalancer } from './memory-pressure.balancer.js';

const MIB = 1024 * 1024;
/** Each VM's resident memory as its agent reports it. */
const RESIDENT_MIB = 300;

let c: SpecCluster;
let balancer: MemoryPressureBalancer;

beforeAll(async () => {
  // node-1: high watermark 3686 MiB (90 %), low 3277 MiB (80 %).
  c = await startSpecCluster({
    agents: [
      { nodeId: 'node-1', memoryMib: 4096 },
      { nodeId: 'node-2', memoryMib: 4096 },
      { nodeId: 'node-3', memoryMib: 4096 },
    ],
  });
  balancer = c.controller.get(MemoryPressureBalancer);
  balancer.onModuleDestroy(); // no background sweeps: the spec runs them
});

afterAll(async () => {
  await c?.stop();
});

const hot = () => c.agents[0]!;

async function reportUsed(usedMib: number): Promise<void> {
  hot().reportOverrides = { memoryUsedBytes: usedMib * MIB };
  await waitFor(async () => Math.abs((await c.api.getNode('node-1')).memoryMibUsed - usedMib) < 0.5, 5000, `node-1 reporting ${usedMib} MiB`);
}

async function waitAllFinal(ids: readonly string[]): Promise<void> {
  await waitFor(async () => (await Promise.all(ids.map((id) => c.api.getMigration(id)))).every((m) => FINAL_PHASES.has(m.phase)), 20_000, 'migrations final');
}

describe('memory-pressure balancer', () => {
  it('starts above high, counts VMs leaving toward the low watermark, stops at or below it, cools down', async () => {
    hot().residentPagesOf = () => (RESIDENT_MIB * MIB) / 4096;
    hot().progressDelayMs = 300;
    const vms: cluster.Vm[] = [];
    try {
      for (let i = 0; i < 5; i++) vms.push(await c.api.createVm({ name: `p-${i}`, vcpus: 1, memoryMib: 512, workload: IDLE_WORKLOAD, nodeId: 'node-1' }));
      await waitFor(async () => (await c.api.getVm(vms[4]!.vmId)).residentPages === (RESIDENT_MIB * MIB) / 4096, 5000, 'resident pages reported');

      // Between the watermarks and not relieving: nothing.
      await reportUsed(3500);
      expect(await balancer.sweep()).toEqual([]);
      expect(balancer.isRelieving('node-1')).toBe(false);

      // Above high: 3800 − 3277 = 523 MiB to free. One VM (300 MiB) now; with it in flight, one more
      // (223 MiB left); with both in flight, none (the goal is covered).
      balancer.cooldownMs = 0;
      await reportUsed(3800);
      const first = await balancer.sweep();
      expect(first).toHaveLength(1);
      expect(balancer.isRelieving('node-1')).toBe(true);
      const second = await balancer.sweep();
      expect(second).toHaveLength(1);
      expect(await balancer.sweep()).toEqual([]);
      const started = [...first, ...second];
      for (const id of started) expect(await c.api.getMigration(id)).toMatchObject({ reason: 'memory-pressure', sourceNodeId: 'node-1' });
      await waitAllFinal(started);

      // Down to the low watermark: relieved. Back between the watermarks: still nothing (hysteresis).
      await reportUsed(3270);
      expect(await balancer.sweep()).toEqual([]);
      expect(balancer.isRelieving('node-1')).toBe(false);
      await reportUsed(3600);
      expect(await balancer.sweep()).toEqual([]);

      // Above high again, with a cool-down: one start, then nothing until the node has cooled down,
      // although 3900 − 300 − 3277 MiB are still to free.
      balancer.cooldownMs = 60_000;
      await reportUsed(3900);
      const third = await balancer.sweep();
      expect(third).toHaveLength(1);
      expect(await balancer.sweep()).toEqual([]);
      await waitAllFinal(third);
      expect(await balancer.sweep()).toEqual([]);
    } finally {
      hot().reportOverrides = {};
      hot().progressDelayMs = 20;
      for (const vm of vms) await c.api.deleteVm(vm.vmId).catch(() => undefined);
    }
  });
});
