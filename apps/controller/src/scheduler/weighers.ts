/**
 * Scheduler weighers, as Nova composes them: each weigher scores every candidate (higher is better),
 * the scores are normalized to [0, 1] across the candidates, and the normalized scores are summed
 * with the weighers' multipliers. Normalizing is what lets weighers with different units (MiB of
 * headroom, "runs this image") be combined without one silently drowning the other.
 */
import { allocationLimit, type NodeRecord, type PlacementRequest } from '../common/model.js';

export interface SchedulerWeigher {
  readonly name: string;
  readonly multiplier: number;
  weigh(node: NodeRecord, request: PlacementRequest): number;
}

/** MiB still admissible on the node after placing the VM (Nova's RAMWeigher: spreads VMs). */
export const freeMemoryWeigher: SchedulerWeigher = {
  name: 'free-memory',
  multiplier: 1,
  weigh: (node, request) =>
    allocationLimit(node.memoryMib, node.ramAllocationRatio) - node.memoryMibAllocated - request.memoryMib,
};

/**
 * Expected KSM sharing: on a node already running a VM of the same image, the new VM's copy of the
 * image merges with the existing one, so the node's real memory grows by less than the VM's size.
 * Its multiplier outweighs free memory, so VMs of one image gather on a node while the filters
 * (allocation ratios) and the memory-pressure balancer keep that node within its limits.
 */
export const sameImageWeigher: SchedulerWeigher = {
  name: 'ksm-same-image',
  multiplier: 2,
  weigh: (node, request) =>
    request.image && request.image !== 'empty' && (node.imageCounts[request.image] ?? 0) > 0 ? 1 : 0,
};

export const DEFAULT_WEIGHERS: readonly SchedulerWeigher[] = [freeMemoryWeigher, sameImageWeigher];

/** The combined weight of each node (same order as `nodes`). */
export function weighNodes(
  nodes: readonly NodeRecord[],
  request: PlacementRequest,
  weighers: readonly SchedulerWeigher[] = DEFAULT_WEIGHERS,
): Float64Array {
  const totals = new Float64Array(nodes.length);
  const raw = new Float64Array(nodes.length);
  for (const w of weighers) {
    let min = Infinity;
    let max = -Infinity;
    for (let i = 0; i < nodes.length; i++) {
      raw[i] = w.weigh(nodes[i], request);
      if (raw[i] < min) min = raw[i];
      if (raw[i] > max) max = raw[i];
    }
    const range = max - min;
    if (range === 0) continue; // every candidate alike: this weigher cannot tell them apart
    for (let i = 0; i < nodes.length; i++) totals[i] += (w.multiplier * (raw[i] - min)) / range;
  }
  return totals;
}
