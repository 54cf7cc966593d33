// KSM follows a VM across a live migration: the source's ksmd lets go of it (its merged pages are
// no longer counted there, its frames are freed) and the target's ksmd takes it in at commit, so the
// migrated copy merges with the target's VMs of the same image. Three idle debian-12 VMs on node-1
// and one on node-2; one migrates node-1 → node-2: each node must then settle at what 2 copies
// merge, and each node's real use must be what 2 merged copies hold.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { startTestCluster, stopTestCluster, type TestCluster } from './support/cluster.js';
import { expectedPagesSharing, imageShape, imageVm, MIB, nodeFigures, PAGE_BYTES, waitForKsmSettled, waitForNode } from './support/ksm.js';
import { expectCompleted, policy, waitForFinal } from './support/migration.js';

const IMAGE = 'debian-12';
const SOURCE = 'node-1';
const TARGET = 'node-2';

describe('KSM across a live migration', () => {
  let c: TestCluster;
  let api: ClusterApi;
  const vmIds: string[] = [];
  const shape = imageShape(IMAGE);
  // What n merged copies of the image hold: one frame per distinct page.
  const mergedMib = (shape.distinctPages * PAGE_BYTES) / MIB;

  beforeAll(async () => {
    c = await startTestCluster({ agents: 2, reportIntervalMs: 500, agentEnv: () => ({ KSM_PAGES_TO_SCAN: '1000' }) });
    api = c.api();
  });

  afterAll(() => stopTestCluster(c, api, vmIds));

  it('the source stops counting the VM and frees its frames; the target merges it with its own copies', async () => {
    for (let i = 0; i < 3; i++) vmIds.push((await api.createVm(imageVm(IMAGE, `src-${i}`, SOURCE))).vmId);
    vmIds.push((await api.createVm(imageVm(IMAGE, 'dst-0', TARGET))).vmId);
    const src3 = await waitForKsmSettled(api, SOURCE, Math.ceil(0.95 * expectedPagesSharing(IMAGE, 3)), 90_000);
    const dst1 = await waitForKsmSettled(api, TARGET, Math.ceil(0.95 * expectedPagesSharing(IMAGE, 1)), 90_000);
    console.info(`ksm-migration: before ${nodeFigures(src3)}; ${nodeFigures(dst1)}`);

    const m = await api.migrateVm({ vmId: vmIds[0]!, targetNodeId: TARGET, policy: policy() });
    expectCompleted(await waitForFinal(api, m.migrationId, 60_000));
    expect((await api.getVm({ vmId: vmIds[0]! })).nodeId).toBe(TARGET);

    const expected2 = expectedPagesSharing(IMAGE, 2);
    // The source goes down to 2 copies: its count must fall to exactly what 2 copies merge.
    await waitForNode(api, SOURCE, (n) => n.ksm!.pagesSharing <= expected2, 30_000, `${SOURCE} down to 2 copies`);
    const src2 = await waitForKsmSettled(api, SOURCE, Math.ceil(0.95 * expected2), 60_000);
    const dst2 = await waitForKsmSettled(api, TARGET, Math.ceil(0.95 * expected2), 90_000);
    console.info(`ksm-migration: after ${nodeFigures(src2)}; ${nodeFigures(dst2)} (expected pages_sharing ${expected2} each, ${mergedMib.toFixed(1)} MiB used)`);
    for (const n of [src2, dst2]) {
      expect(n.vmCount, n.nodeId).toBe(2);
      expect(n.ksm!.pagesSharing, `${n.nodeId} pages_sharing`).toBeGreaterThanOrEqual(0.95 * expected2);
      expect(n.ksm!.pagesSharing, `${n.nodeId} pages_sharing`).toBeLessThanOrEqual(expected2);
      // Merged, two copies hold one frame per distinct page, plus what is not merged yet.
      const unmergedMib = ((expected2 - n.ksm!.pagesSharing) * PAGE_BYTES) / MIB;
      expect(n.memoryMibUsed, `${n.nodeId} memory_mib_used`).toBeLessThanOrEqual(mergedMib + unmergedMib + 0.5);
      expect(n.memoryMibUsed, `${n.nodeId} memory_mib_used`).toBeGreaterThanOrEqual(mergedMib - 0.5);
    }
  });
});
