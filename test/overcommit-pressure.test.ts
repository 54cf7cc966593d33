// Run-time overcommit: a node whose real memory use crosses its high watermark (90% of physical
// memory) gets VMs migrated off (Migration.reason 'memory-pressure'), the cheapest to migrate first
// (expected pre-copy cost W/(1−r): with equal dirty rates, the fewest resident pages), to a node
// with room, until it is under the low watermark (80%); then the balancer leaves it alone.
//
// node-1 has 1024 MiB of physical memory (high 921.6 MiB, low 819.2 MiB). Its VMs
// write real memory: `sequential` workloads sweep their whole memory (image `empty`), so a VM's
// resident size grows to its memory size within seconds and its pages stay unique (no KSM relief).
// A (400 MiB), B (300) and C (160) fill it to 860 MiB (84%: no pressure); D (100) takes it to 960
// (94%). It crosses 90% once D holds 61.6 MiB. At equal dirty rates the expected cost W/(1−r) orders
// VMs by resident size, so A and B (the costly ones) must stay: C alone takes the node to 800 MiB
// (78%), D then C (the cheapest step under 90%, then the cheapest covering the rest) to 700 MiB (68%);
// both are least-cost choices. D alone leaves 860 MiB (84%): a balancer without the low watermark
// stops there.
//
// Targets: node-3 (1024 MiB, ratio 1.5) has the most admission headroom (1536 − 880 allocated) and is
// what the headroom weigher prefers, but an 880 MiB writer keeps it at 86% real use, so D or C would
// push it over 90%: it has no room. node-2 (2048 MiB, ratio 1.0) has less headroom (2048 − 1600 held
// by an idle VM that writes nothing) but real room. Every evacuation must go to node-2.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cluster } from '@vmm/proto';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { startTestCluster, stopTestCluster, type TestCluster } from './support/cluster.js';
import { nodeFigures, waitForNode } from './support/ksm.js';
import { expectCompleted, FINAL_PHASES, listAllMigrations, short, waitForFinal } from './support/migration.js';
import { listAllVms } from './support/vms.js';
import { waitFor } from './support/wait-for.js';

const PRESSURED = 'node-1';
const ROOMY = 'node-2';
const PRESSURED_MIB = 1024;
const ROOMY_MIB = 2048;
const CROWDED = 'node-3';
const CROWDED_MIB = 1024;
const ROOMY_HOLD_MIB = 1600; // idle: allocated on node-2, never written
const CROWDED_FILL_MIB = 880; // written: node-3 at 86% real use
const HIGH = 0.9;
const LOW = 0.8;
const REPORT_INTERVAL_MS = 400;
/** The balancer sweeps every max(2 s, 5 report intervals) (memory-pressure.balancer.ts). */
const SWEEP_MS = Math.max(2000, 5 * REPORT_INTERVAL_MS);
const DIRTY_RATE = 8000; // pages/s: a 400 MiB VM is written through in ~13 s
const REASON = 'memory-pressure';

const FIRST_VMS = [
  { name: 'pressure-a', memoryMib: 400 },
  { name: 'pressure-b', memoryMib: 300 },
  { name: 'pressure-c', memoryMib: 160 },
];
const LAST_VM = { name: 'pressure-d', memoryMib: 100 };

function writingVm(name: string, memoryMib: number, seed: number, nodeId = PRESSURED, rate = DIRTY_RATE): cluster.CreateVmRequest {
  return cluster.CreateVmRequest.fromPartial({
    name,
    vcpus: 1,
    memoryMib,
    image: 'empty',
    workload: {
      kind: rate > 0 ? cluster.WorkloadKind.WORKLOAD_KIND_SEQUENTIAL : cluster.WorkloadKind.WORKLOAD_KIND_IDLE,
      dirtyRatePagesPerSec: rate,
      workingSetMib: rate > 0 ? memoryMib : 0,
      seed,
    },
    nodeId,
    antiAffinityGroup: '',
    labels: {},
  });
}

async function pressureMigrations(api: ClusterApi): Promise<cluster.Migration[]> {
  return (await listAllMigrations(api)).filter((m) => m.reason === REASON).sort((a, b) => a.createdAtMs - b.createdAtMs);
}

const usedFraction = (n: cluster.Node) => n.memoryMibUsed / n.memoryMib;

describe('memory-pressure balancer', () => {
  let c: TestCluster;
  let api: ClusterApi;
  const vms = new Map<string, cluster.Vm>(); // by name
  const nameOf = (vmId: string) => [...vms.values()].find((v) => v.vmId === vmId)?.name ?? vmId;

  beforeAll(async () => {
    c = await startTestCluster({
      agents: 3,
      reportIntervalMs: REPORT_INTERVAL_MS,
      agentEnv: (i): Record<string, string> =>
        [
          { NODE_MEMORY_MIB: String(PRESSURED_MIB) },
          { NODE_MEMORY_MIB: String(ROOMY_MIB), RAM_ALLOCATION_RATIO: '1.0' },
          { NODE_MEMORY_MIB: String(CROWDED_MIB), RAM_ALLOCATION_RATIO: '1.5' },
        ][i]!,
    });
    api = c.api();
  });

  afterAll(() => stopTestCluster(c, api, [...vms.values()].map((vm) => vm.vmId)));

  it('leaves a node under its high watermark alone, then migrates VMs off once real use crosses it, to a node with room', async () => {
    vms.set('hold', await api.createVm(writingVm('hold', ROOMY_HOLD_MIB, 20, ROOMY, 0)));
    vms.set('fill', await api.createVm(writingVm('fill', CROWDED_FILL_MIB, 21, CROWDED, 3 * DIRTY_RATE)));
    for (const [i, spec] of FIRST_VMS.entries()) vms.set(spec.name, await api.createVm(writingVm(spec.name, spec.memoryMib, i + 1)));
    const firstMib = FIRST_VMS.reduce((s, v) => s + v.memoryMib, 0);
    const filled = await waitForNode(api, PRESSURED, (n) => n.memoryMibUsed >= firstMib - 1, 90_000, `${PRESSURED} written to ${firstMib} MiB`);
    const crowded = await waitForNode(api, CROWDED, (n) => n.memoryMibUsed >= CROWDED_FILL_MIB - 1, 90_000, `${CROWDED} written to ${CROWDED_FILL_MIB} MiB`);
    const roomy = await api.getNode({ nodeId: ROOMY });
    const headroom = (n: cluster.Node) => n.memoryMib * n.ramAllocationRatio - n.memoryMibAllocated;
    // The premise: by admission headroom node-3 looks better than node-2; by real use it has no room.
    expect(headroom(crowded)).toBeGreaterThan(headroom(roomy));
    expect(crowded.memoryMibUsed + LAST_VM.memoryMib / 2).toBeGreaterThan(HIGH * crowded.memoryMib);
    expect(usedFraction(crowded)).toBeLessThan(HIGH);
    // Several sweeps ran while it filled up: at 84% nothing may have moved.
    expect(usedFraction(filled)).toBeLessThan(HIGH);
    expect(await pressureMigrations(api)).toEqual([]);

    vms.set(LAST_VM.name, await api.createVm(writingVm(LAST_VM.name, LAST_VM.memoryMib, 9)));
    let peak = filled;
    let seenVms = '';
    const [first] = await waitFor(
      async () => {
        const n = await api.getNode({ nodeId: PRESSURED });
        if (n.memoryMibUsed > peak.memoryMibUsed) peak = n;
        const ms = await pressureMigrations(api);
        if (ms.length === 0) {
          seenVms = (await listAllVms(api, PRESSURED))
            .map((v) => `${v.name}:${short(v.state)} resident=${v.residentPages} rate=${v.dirtyRatePagesPerSec.toFixed(0)}`)
            .join(', ');
        }
        return ms.length > 0 ? ms : undefined;
      },
      90_000,
      `a ${REASON} migration off ${PRESSURED}`,
      100,
    );
    console.info(
      `overcommit-pressure: peak ${nodeFigures(peak)} (${(100 * usedFraction(peak)).toFixed(1)}%); first migration ${first!.migrationId} ` +
        `${nameOf(first!.vmId)} ${first!.sourceNodeId}→${first!.targetNodeId}; VMs just before: ${seenVms}`,
    );
    expect(usedFraction(peak), 'the node did cross its high watermark').toBeGreaterThan(HIGH);
    expect(first!.sourceNodeId).toBe(PRESSURED);
    expect(first!.targetNodeId).toBe(ROOMY);
    expectCompleted(await waitForFinal(api, first!.migrationId, 90_000), 'of the first memory-pressure migration');
    expect((await api.getVm({ vmId: first!.vmId })).nodeId).toBe(ROOMY);
  });

  it('brings the node under its low watermark (80%) at the least expected migration cost', async () => {
    const under = await waitFor(
      async () => {
        const ms = await pressureMigrations(api);
        if (ms.some((m) => !FINAL_PHASES.has(m.phase))) return undefined;
        const n = await api.getNode({ nodeId: PRESSURED });
        return usedFraction(n) < LOW ? { n, ms } : undefined;
      },
      90_000,
      `${PRESSURED} under ${LOW * 100}% of ${PRESSURED_MIB} MiB`,
      200,
    ).catch(async (err: Error) => {
      const n = await api.getNode({ nodeId: PRESSURED });
      const ms = await pressureMigrations(api);
      throw new Error(
        `${err.message}; now ${nodeFigures(n)} (${(100 * usedFraction(n)).toFixed(1)}%), ${REASON} migrations: ` +
          ms.map((m) => `${nameOf(m.vmId)}:${short(m.phase)}`).join(' '),
      );
    });
    console.info(
      `overcommit-pressure: under low watermark ${nodeFigures(under.n)} (${(100 * usedFraction(under.n)).toFixed(1)}%) after ` +
        under.ms.map((m) => `${nameOf(m.vmId)}→${m.targetNodeId}:${short(m.phase)}`).join(', '),
    );
    for (const m of under.ms) {
      expectCompleted(m, `of ${nameOf(m.vmId)}`);
      expect(m.sourceNodeId).toBe(PRESSURED);
      expect(m.targetNodeId).toBe(ROOMY);
    }
    // C had to go (nothing else cheap gets under 80%); A and B, the costly ones, never.
    const names = under.ms.map((m) => nameOf(m.vmId));
    expect(names).toContain('pressure-c');
    for (const name of names) expect(['pressure-c', LAST_VM.name], `${name} moved: ${names.join(', ')}`).toContain(name);
    expect(new Set(names).size, 'no VM moved twice').toBe(names.length);
  });

  it('then stops: the number of memory-pressure migrations stays constant over several sweeps', async () => {
    // Whatever the previous test saw, wait for a quiet node under its high watermark first.
    await waitFor(
      async () => {
        const ms = await pressureMigrations(api);
        const n = await api.getNode({ nodeId: PRESSURED });
        return ms.length > 0 && ms.every((m) => FINAL_PHASES.has(m.phase)) && usedFraction(n) < HIGH;
      },
      90_000,
      'memory-pressure migrations finished',
      200,
    );
    const settled = await pressureMigrations(api);
    const observeUntil = Date.now() + 4 * SWEEP_MS + 2 * REPORT_INTERVAL_MS;
    let samples = 0;
    while (Date.now() < observeUntil) {
      const ms = await pressureMigrations(api);
      expect(ms.map((m) => m.migrationId), 'no new memory-pressure migration').toEqual(settled.map((m) => m.migrationId));
      for (const nodeId of [PRESSURED, ROOMY, CROWDED]) {
        const n = await api.getNode({ nodeId });
        expect(usedFraction(n), `${nodeFigures(n)} stays under its high watermark`).toBeLessThan(HIGH);
      }
      samples++;
      await new Promise((r) => setTimeout(r, 250));
    }
    const [p, r, x] = await Promise.all([PRESSURED, ROOMY, CROWDED].map((nodeId) => api.getNode({ nodeId })));
    console.info(
      `overcommit-pressure: quiet for ${samples} samples over ${4 * SWEEP_MS + 2 * REPORT_INTERVAL_MS} ms with ${settled.length} ${REASON} migrations; ` +
        `${nodeFigures(p!)}; ${nodeFigures(r!)}; ${nodeFigures(x!)}`,
    );
    // The VMs moved off really run on the roomy node; the rest stayed where they were created.
    const migrated = new Set(settled.map((m) => m.vmId));
    for (const vm of vms.values()) {
      const now = await api.getVm({ vmId: vm.vmId });
      expect(now.state).toBe(cluster.VmState.VM_STATE_RUNNING);
      expect(now.nodeId, vm.name).toBe(migrated.has(vm.vmId) ? ROOMY : vm.nodeId);
    }
  });
});
