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

export const DEFAULT_WEIGHERS: readonly SchedulerWeigher[] = [freeMemoryWeigher];

export function weightOf(
  node: NodeRecord,
  request: PlacementRequest,
  weighers: readonly SchedulerWeigher[] = DEFAULT_WEIGHERS,
): number {
  let total = 0;
  for (const w of weighers) total += w.multiplier * w.weigh(node, request);
  return total;
}
