/**
 * Scheduler weighers: higher is better. Free memory (Nova's RAMWeigher, spreading) is the one used
 * for now; the KSM-affinity weigher of the design can be added to `DEFAULT_WEIGHERS` with a multiplier.
 */
import { allocationLimit, type NodeRecord, type PlacementRequest } from '../common/model.js';

export interface SchedulerWeigher {
  readonly name: string;
  readonly multiplier: number;
  weigh(node: NodeRecord, request: PlacementRequest): number;
}

/** MiB still admissible on the node after placing the VM (capacity × ratio − allocated − request). */
export const freeMemoryWeigher: SchedulerWeigher = {
  name: 'free-memory',
  multiplier: 1,
  weigh: (node, request) =>
    allocationLimit(node.memoryMib, node.ramAllocationRatio) - node.memoryMibAllocated - request.memoryMib,
};

/**
 * Expected KSM sharing: a node already running VMs of the same image can merge the new VM's image
 * pages with theirs, so its real memory grows less. A bonus in MiB-equivalents, small next to the
 * headroom, so that it breaks near-ties and never overrides a clearly emptier node.
 */
export const KSM_SHARING_BONUS_MIB = 128;
export const sameImageWeigher: SchedulerWeigher = {
  name: 'ksm-same-image',
  multiplier: 1,
  weigh: (node, request) =>
    request.image && request.image !== 'empty' && (node.imageCounts[request.image] ?? 0) > 0 ? KSM_SHARING_BONUS_MIB : 0,
};

export const DEFAULT_WEIGHERS: readonly SchedulerWeigher[] = [freeMemoryWeigher, sameImageWeigher];

export function weightOf(
  node: NodeRecord,
  request: PlacementRequest,
  weighers: readonly SchedulerWeigher[] = DEFAULT_WEIGHERS,
): number {
  let total = 0;
  for (const w of weighers) total += w.multiplier * w.weigh(node, request);
  return total;
}
