/**
 * A node's state, derived from facts rather than stored: readiness comes from the age of its last
 * report, so a controller that was down while an agent died still answers NOT_READY at once.
 *
 * NOT_READY  no registration or report for more than 3 report intervals (overrides everything)
 * DRAINING   ready, and a drain is in progress
 * CORDONED   ready, and marked unschedulable by an operator
 * READY      ready and schedulable
 */
import { cluster } from '@vmm/proto';
import type { NodeRecord } from '../common/model.js';

export function isNodeReady(node: Pick<NodeRecord, 'lastReportMs'>, nowMs: number, staleAfterMs: number): boolean {
  return nowMs - node.lastReportMs <= staleAfterMs;
}

export function nodeStateOf(
  node: Pick<NodeRecord, 'lastReportMs' | 'cordoned' | 'draining'>,
  nowMs: number,
  staleAfterMs: number,
): cluster.NodeState {
  if (!isNodeReady(node, nowMs, staleAfterMs)) return cluster.NodeState.NODE_STATE_NOT_READY;
  if (node.draining) return cluster.NodeState.NODE_STATE_DRAINING;
  if (node.cordoned) return cluster.NodeState.NODE_STATE_CORDONED;
  return cluster.NodeState.NODE_STATE_READY;
}
