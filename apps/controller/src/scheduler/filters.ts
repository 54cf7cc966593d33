/**
 * Scheduler filters, as in Nova's filter scheduler: each one rejects nodes a VM must not land on.
 * Pure functions over a snapshot; the reservation Lua script re-checks the same rules atomically, so
 * a snapshot that went stale only costs a retry on the next candidate, never an over-commit.
 */
import { allocationLimit, type NodeRecord, type PlacementRequest } from '../common/model.js';
import { matchesSelector } from '../common/labels.js';
import { isNodeReady } from '../node/node-state.js';

export interface FilterContext {
  nowMs: number;
  staleAfterMs: number;
  /** Node ids already holding a VM of the request's anti-affinity group. */
  antiAffinityNodeIds: ReadonlySet<string>;
}

export type RejectReason = 'not ready' | 'cordoned' | 'draining' | 'vcpus' | 'memory' | 'anti-affinity' | 'hypervisor' | 'node selector';

export interface SchedulerFilter {
  readonly reason: RejectReason;
  passes(node: NodeRecord, request: PlacementRequest, ctx: FilterContext): boolean;
}

export const readyFilter: SchedulerFilter = {
  reason: 'not ready',
  passes: (node, _request, ctx) => isNodeReady(node, ctx.nowMs, ctx.staleAfterMs),
};

export const cordonFilter: SchedulerFilter = {
  reason: 'cordoned',
  passes: (node) => !node.cordoned,
};

export const drainFilter: SchedulerFilter = {
  reason: 'draining',
  passes: (node) => !node.draining,
};

/** vCPUs within capacity × cpu_allocation_ratio (Nova's CoreFilter). */
export const vcpuFilter: SchedulerFilter = {
  reason: 'vcpus',
  passes: (node, request) =>
    node.vcpusAllocated + request.vcpus <= allocationLimit(node.vcpus, node.cpuAllocationRatio),
};

/** Memory within capacity × ram_allocation_ratio (Nova's RamFilter). */
export const memoryFilter: SchedulerFilter = {
  reason: 'memory',
  passes: (node, request) =>
    node.memoryMibAllocated + request.memoryMib <= allocationLimit(node.memoryMib, node.ramAllocationRatio),
};

/** At most one VM of an anti-affinity group per node. */
export const antiAffinityFilter: SchedulerFilter = {
  reason: 'anti-affinity',
  passes: (node, request, ctx) => request.antiAffinityGroup === '' || !ctx.antiAffinityNodeIds.has(node.nodeId),
};

/** The node runs the driver the VM asks for (CreateVm.hypervisor; a migration asks for its source's). */
export const hypervisorFilter: SchedulerFilter = {
  reason: 'hypervisor',
  passes: (node, request) => !request.hypervisor || node.hypervisor === request.hypervisor,
};

/** The node carries every label of the VM's node selector (CreateVm.node_selector; Kubernetes' nodeSelector). */
export const nodeSelectorFilter: SchedulerFilter = {
  reason: 'node selector',
  passes: (node, request) => matchesSelector(node.labels, request.nodeSelector),
};

export const DEFAULT_FILTERS: readonly SchedulerFilter[] = [
  hypervisorFilter,
  nodeSelectorFilter,
  readyFilter,
  cordonFilter,
  drainFilter,
  vcpuFilter,
  memoryFilter,
  antiAffinityFilter,
];

/** The first filter a node fails, or undefined when it passes them all. */
export function firstRejection(
  node: NodeRecord,
  request: PlacementRequest,
  ctx: FilterContext,
  filters: readonly SchedulerFilter[] = DEFAULT_FILTERS,
): RejectReason | undefined {
  for (const filter of filters) if (!filter.passes(node, request, ctx)) return filter.reason;
  return undefined;
}
