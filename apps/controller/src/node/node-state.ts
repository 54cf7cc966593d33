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

/**
 * Readiness as a restarted controller may judge it: a node recorded ready keeps that until its agent
 * had `staleAfterMs` to report to this process (started at `sinceMs`); a node recorded not ready,
 * or one silent for longer, is judged by its last report.
 */
export function isNodeReadySince(node: Pick<NodeRecord, 'lastReportMs' | 'readyRecorded'>, nowMs: number, staleAfterMs: number, sinceMs: number): boolean {
  if (isNodeReady(node, nowMs, staleAfterMs)) return true;
  return node.readyRecorded && nowMs - sinceMs <= staleAfterMs;
}

export function nodeStateOf(
  node: Pick<NodeRecord, 'lastReportMs' | 'cordoned' | 'draining' | 'readyRecorded'>,
  nowMs: number,
  staleAfterMs: number,
  sinceMs = 0,
): cluster.NodeState {
  if (!isNodeReadySince(node, nowMs, staleAfterMs, sinceMs)) return cluster.NodeState.NODE_STATE_NOT_READY;
  if (node.draining) return cluster.NodeState.NODE_STATE_DRAINING;
  if (node.cordoned) return cluster.NodeState.NODE_STATE_CORDONED;
  return cluster.NodeState.NODE_STATE_READY;
}
