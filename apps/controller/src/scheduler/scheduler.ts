/**
 * Placement: filter, then weigh. Returns the candidates best first (ties broken by node id, so the
 * order is deterministic) and why each other node was rejected, for the error message.
 */
import type { NodeRecord, PlacementRequest } from '../common/model.js';
import { DEFAULT_FILTERS, firstRejection, type FilterContext, type RejectReason, type SchedulerFilter } from './filters.js';
import { DEFAULT_WEIGHERS, weighNodes, type SchedulerWeigher } from './weighers.js';

export interface Placement {
  candidates: NodeRecord[];
  rejected: Map<string, RejectReason>;
}

export function rankNodes(
  nodes: readonly NodeRecord[],
  request: PlacementRequest,
  ctx: FilterContext,
  filters: readonly SchedulerFilter[] = DEFAULT_FILTERS,
  weighers: readonly SchedulerWeigher[] = DEFAULT_WEIGHERS,
): Placement {
  const rejected = new Map<string, RejectReason>();
  const passed: NodeRecord[] = [];
  for (const node of nodes) {
    const reason = firstRejection(node, request, ctx, filters);
    if (reason) rejected.set(node.nodeId, reason);
    else passed.push(node);
  }
  const weights = weighNodes(passed, request, weighers);
  const weighted = passed.map((node, i) => ({ node, weight: weights[i] }));
  weighted.sort((a, b) => b.weight - a.weight || (a.node.nodeId < b.node.nodeId ? -1 : 1));
  return { candidates: weighted.map((w) => w.node), rejected };
}

/** "node-a: memory, node-b: not ready" — for RESOURCE_EXHAUSTED messages. */
export function describeRejections(rejected: ReadonlyMap<string, RejectReason>): string {
  if (rejected.size === 0) return 'no nodes';
  return [...rejected].map(([id, reason]) => `${id}: ${reason}`).join(', ');
}
