// Overcommit made safe by KSM, and what happens when the sharing goes away. node-1 (1024 MiB,
// ratio 1.5) takes 19 idle debian-12 VMs of 64 MiB: 1216 MiB allocated, more than its physical
// memory, and 19 × 51 MiB = 970 MiB of image frames (95%) before merging; after KSM its real use is
// ~41 MiB, so the memory-pressure balancer must leave it alone (real use, not allocation, is what
// counts). Then SetNodeKsm run=2 unmerges everything: real use jumps over the high watermark (90%)
// and the balancer must move VMs to node-2 until node-1 is under its low watermark (80%), and stop.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { cluster } from '@vmm/proto';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { startTestCluster, stopTestCluster, type TestCluster } from './support/cluster.js';
import {
  expectedPagesSharing,
  imageShape,
  imageVm,
  MIB,
  nodeFigures,
  PAGE_BYTES,
  waitForKsmSettled,
  waitForNode,
} from './support/ksm.js';
import { expectCompleted, FINAL_PHASES, listAllMigrations, short } from './support/migration.js';
import { waitFor } from './support/wait-for.js';

const IMAGE = 'debian-12';
const NODE = 'node-1';
const OTHER = 'node-2';
const NODE_MIB = 1024;
const COPIES = 19;
const BATCH = 4;
const HIGH = 0.9;
const LOW = 0.8;
const REPORT_INTERVAL_MS = 400;
const SWEEP_MS = Math.max(2000, 5 * REPORT_INTERVAL_MS);
const REASON = 'memory-pressure';

async function pressureMigrations(api: ClusterApi): Promise<cluster.Migration[]> {
  return (await listAllMigrations(api)).filter((m) => m.reason === REASON).sort((a, b) => a.createdAtMs - b.createdAtMs);
}

describe(`${COPIES} idle ${IMAGE} VMs on a ${NODE_MIB} MiB node`, () => {
  let c: TestCluster;
  let api: ClusterApi;
  const vmIds: string[] = [];
  const imageMib = (imageShape(IMAGE).nonZeroPages * PAGE_BYTES) / MIB;

  beforeAll(async () => {
    c = await startTestCluster({
      agents: 2,
      reportIntervalMs: REPORT_INTERVAL_MS,
      agentEnv: (i): Record<string, string> => ({
        NODE_MEMORY_MIB: String(i === 0 ? NODE_MIB : 4096),
        RAM_ALLOCATION_RATIO: '1.5',
        KSM_PAGES_TO_SCAN: '2000',
      }),
    });
    api = c.api();
  });

  afterAll(() => stopTestCluster(c, api, vmIds));

  it('stay on the node while KSM keeps its real use low, though their allocation exceeds its physical memory', async () => {
    expect(COPIES * imageMib, 'the premise: unmerged, the images would cross the high watermark').toBeGreaterThan(HIGH * NODE_MIB);
    // In batches, each merged before the next, so that real use never crosses 90% on the way.
    while (vmIds.length < COPIES) {
      const n = Math.min(BATCH, COPIES - vmIds.length);
      for (let i = 0; i < n; i++) vmIds.push((await api.createVm(imageVm(IMAGE, `ksm-overcommit-${vmIds.length}`, NODE))).vmId);
      await waitForKsmSettled(api, NODE, Math.ceil(0.95 * expectedPagesSharing(IMAGE, vmIds.length)), 90_000);
    }
    const node = await api.getNode({ nodeId: NODE });
    console.info(`overcommit-ksm: merged ${nodeFigures(node)} allocated=${node.memoryMibAllocated}MiB`);
    expect(node.vmCount).toBe(COPIES);
    expect(node.memoryMibAllocated).toBeGreaterThan(NODE_MIB);
    expect(node.memoryMibUsed).toBeLessThan(0.1 * NODE_MIB);

    // Several balancer sweeps with the node overcommitted in allocation but not in real use: none moves.
    const until = Date.now() + 3 * SWEEP_MS;
    while (Date.now() < until) {
      expect(await pressureMigrations(api)).toEqual([]);
      await new Promise((r) => setTimeout(r, 250));
    }
    expect((await api.getNode({ nodeId: NODE })).vmCount).toBe(COPIES);
  });

  it('unmerged (run=2), the node crosses its high watermark and VMs move to node-2 until it is under the low watermark', async () => {
    await api.setNodeKsm({ nodeId: NODE, knobs: { run: 2 } });
    let peak: cluster.Node | undefined;
    const done = await waitFor(
      async () => {
        const n = await api.getNode({ nodeId: NODE });
        if (!peak || n.memoryMibUsed > peak.memoryMibUsed) peak = n;
        const ms = await pressureMigrations(api);
        const quiet = ms.length > 0 && ms.every((m) => FINAL_PHASES.has(m.phase));
        return quiet && n.memoryMibUsed < LOW * NODE_MIB ? { n, ms } : undefined;
      },
      150_000,
      `${NODE} relieved to under ${LOW * 100}%`,
      200,
    );
    console.info(
      `overcommit-ksm: unmerged peak ${nodeFigures(peak!)}; relieved ${nodeFigures(done.n)} after ${done.ms.length} ${REASON} migrations ` +
        done.ms.map((m) => `${m.vmId}→${m.targetNodeId}:${short(m.phase)}`).join(', '),
    );
    expect(peak!.memoryMibUsed, 'unmerged, the node was over its high watermark').toBeGreaterThan(HIGH * NODE_MIB);
    // Each idle VM frees one image's frames: the fewest that get under 80% from the peak.
    const needed = Math.ceil((peak!.memoryMibUsed - LOW * NODE_MIB) / imageMib);
    expect(done.ms.length).toBeGreaterThanOrEqual(needed);
    for (const m of done.ms) {
      expectCompleted(m, `of ${m.vmId}`);
      expect(m.sourceNodeId).toBe(NODE);
      expect(m.targetNodeId).toBe(OTHER);
    }

    // And then quiet: no new memory-pressure migration over several sweeps.
    const count = done.ms.length;
    const until = Date.now() + 3 * SWEEP_MS;
    while (Date.now() < until) {
      expect((await pressureMigrations(api)).length).toBe(count);
      await new Promise((r) => setTimeout(r, 250));
    }
    const [n1, n2] = await Promise.all([api.getNode({ nodeId: NODE }), api.getNode({ nodeId: OTHER })]);
    console.info(`overcommit-ksm: after ${nodeFigures(n1)}; ${nodeFigures(n2)}`);
    expect(n1.vmCount + n2.vmCount).toBe(COPIES);
    expect(n2.vmCount).toBe(count);
    expect(n1.memoryMibUsed).toBeLessThan(LOW * NODE_MIB);
    // node-1 keeps ksmd unmerged (run=2), node-2 merges the VMs it received.
    expect(n1.ksm!.pagesSharing).toBe(0);
    await waitForKsmSettled(api, OTHER, Math.ceil(0.95 * expectedPagesSharing(IMAGE, count)), 60_000);
  });
});
