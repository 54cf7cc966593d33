// Sharing-aware placement: the scheduler's same-image weigher puts VMs of one image together, so that
// ksmd can merge their image pages. Six idle VMs (3 × debian-12, 3 × ubuntu-24.04) created one after
// another without node_id on two equal nodes must end up grouped by image, and, once ksmd has
// converged, merge more pages in total than the same six VMs spread explicitly (node_id) so that each
// node runs both images — measured, not computed.
//
// The creation order alternates images (debian, ubuntu, debian, …): a headroom-only (spreading)
// scheduler would then alternate nodes too and mix both images on each node.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { cluster } from '@vmm/proto';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { startTestCluster, stopTestCluster, type TestCluster } from './support/cluster.js';
import {
  deleteVmsAndWait,
  expectedNodeSharing,
  imageShape,
  imageVm,
  MIB,
  nodeFigures,
  PAGE_BYTES,
  waitForKsmSettled,
  waitForNode,
} from './support/ksm.js';

const DEBIAN = 'debian-12';
const UBUNTU = 'ubuntu-24.04';
const ORDER = [DEBIAN, UBUNTU, DEBIAN, UBUNTU, DEBIAN, UBUNTU];
const NODES = ['node-1', 'node-2'];
/** The spread placement: both images on both nodes. */
const SPREAD: Record<string, string[]> = { 'node-1': [DEBIAN, DEBIAN, UBUNTU], 'node-2': [DEBIAN, UBUNTU, UBUNTU] };

interface Measured {
  placement: Record<string, Record<string, number>>; // node → image → VMs
  pagesSharing: number;
  memoryMibUsed: number;
  nodes: cluster.Node[];
}

function countByImage(vms: readonly cluster.Vm[]): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = Object.fromEntries(NODES.map((n) => [n, {}]));
  for (const v of vms) out[v.nodeId]![v.image] = (out[v.nodeId]![v.image] ?? 0) + 1;
  return out;
}

/** Waits for ksmd on every node to settle at ≥ 95% of what its VMs allow; sums the figures. */
async function measure(api: ClusterApi, vms: readonly cluster.Vm[]): Promise<Measured> {
  const placement = countByImage(vms);
  const nodes: cluster.Node[] = [];
  for (const nodeId of NODES) {
    const expected = expectedNodeSharing(placement[nodeId]!);
    const n = await waitForKsmSettled(api, nodeId, Math.ceil(0.95 * expected), 150_000);
    expect(n.ksm!.pagesSharing, `${nodeId} cannot merge more than its duplicates`).toBeLessThanOrEqual(expected);
    nodes.push(n);
  }
  return {
    placement,
    nodes,
    pagesSharing: nodes.reduce((s, n) => s + n.ksm!.pagesSharing, 0),
    memoryMibUsed: nodes.reduce((s, n) => s + n.memoryMibUsed, 0),
  };
}

const describeLine = (m: Measured) =>
  `${JSON.stringify(m.placement)} total pages_sharing=${m.pagesSharing} used=${m.memoryMibUsed.toFixed(1)}MiB; ` +
  m.nodes.map(nodeFigures).join('; ');

describe('sharing-aware placement', () => {
  let c: TestCluster;
  let api: ClusterApi;
  const vmIds: string[] = [];
  let grouped: Measured | undefined;
  let spreadMeasured: Measured | undefined;

  beforeAll(async () => {
    c = await startTestCluster({ agents: 2, reportIntervalMs: 500, agentEnv: () => ({ KSM_PAGES_TO_SCAN: '1000' }) });
    api = c.api();
  });

  afterAll(() => stopTestCluster(c, api, vmIds));

  it('groups VMs of the same image on one node when the scheduler chooses', async () => {
    const vms: cluster.Vm[] = [];
    for (const [i, image] of ORDER.entries()) {
      const vm = await api.createVm(imageVm(image, `grouped-${i}-${image}`));
      vmIds.push(vm.vmId);
      vms.push(vm);
    }
    const placement = countByImage(vms);
    console.info(`placement-sharing: scheduler placed ${ORDER.join(', ')} as ${JSON.stringify(placement)}`);
    // Each node runs a single image, three VMs of it.
    for (const nodeId of NODES) {
      const images = Object.keys(placement[nodeId]!);
      expect(images, `images on ${nodeId}: ${JSON.stringify(placement)}`).toHaveLength(1);
      expect(placement[nodeId]![images[0]!]).toBe(3);
    }
    grouped = await measure(api, vms);
    console.info(`placement-sharing: grouped ${describeLine(grouped)}`);
  });

  it('merges more pages, and uses less memory, than the same VMs spread over both nodes', async () => {
    expect(grouped, 'the grouped placement was measured').toBeDefined();
    await deleteVmsAndWait(api, vmIds.splice(0), NODES);
    for (const nodeId of NODES) {
      await waitForNode(api, nodeId, (n) => n.ksm!.pagesSharing === 0 && n.ksm!.pagesShared === 0, 30_000, `${nodeId} ksm emptied`);
    }
    const vms: cluster.Vm[] = [];
    for (const [nodeId, images] of Object.entries(SPREAD)) {
      for (const [i, image] of images.entries()) {
        const vm = await api.createVm(imageVm(image, `spread-${nodeId}-${i}-${image}`, nodeId));
        vmIds.push(vm.vmId);
        vms.push(vm);
        expect(vm.nodeId).toBe(nodeId);
      }
    }
    const spread = await measure(api, vms);
    spreadMeasured = spread;
    console.info(`placement-sharing: spread ${describeLine(spread)}`);

    // Grouped, each image's distinct pages are kept once in the cluster; spread, once per node.
    const d = imageShape(DEBIAN).distinctPages;
    const u = imageShape(UBUNTU).distinctPages;
    const gain = spread.pagesSharing === 0 ? Infinity : grouped!.pagesSharing / spread.pagesSharing;
    console.info(
      `placement-sharing: grouped − spread pages_sharing = ${grouped!.pagesSharing - spread.pagesSharing} ` +
        `(model: ${d} + ${u} = ${d + u}), ×${gain.toFixed(3)}; memory used ${grouped!.memoryMibUsed.toFixed(1)} vs ${spread.memoryMibUsed.toFixed(1)} MiB`,
    );
    expect(grouped!.pagesSharing).toBeGreaterThan(spread.pagesSharing);
    expect(grouped!.pagesSharing - spread.pagesSharing).toBeGreaterThanOrEqual(0.9 * (d + u));
    expect(spread.memoryMibUsed - grouped!.memoryMibUsed).toBeGreaterThanOrEqual((0.9 * (d + u) * PAGE_BYTES) / MIB);
  });

  it('groups as well when the images come in blocks (3 × debian-12, then 3 × ubuntu-24.04), after VMs were deleted', async () => {
    // The per-node image counts the weigher uses must have gone down with the deletions: stale
    // counts would pull both images towards the nodes that used to run them.
    await deleteVmsAndWait(api, vmIds.splice(0), NODES);
    const vms: cluster.Vm[] = [];
    for (const [i, image] of [DEBIAN, DEBIAN, DEBIAN, UBUNTU, UBUNTU, UBUNTU].entries()) {
      const vm = await api.createVm(imageVm(image, `blocks-${i}-${image}`));
      vmIds.push(vm.vmId);
      vms.push(vm);
    }
    const placement = countByImage(vms);
    const pairs = NODES.reduce((sum, n) => sum + Object.keys(placement[n]!).length, 0);
    console.info(`placement-sharing: blocks placed as ${JSON.stringify(placement)} (${pairs} node×image pairs; spread 4, grouped 2)`);
    // Strictly better than a spread (every node running both images).
    expect(pairs, JSON.stringify(placement)).toBeLessThan(4);
    const blocks = await measure(api, vms);
    console.info(`placement-sharing: blocks ${describeLine(blocks)}`);
    expect(blocks.pagesSharing).toBeGreaterThan(spreadMeasured!.pagesSharing);
  });
});
