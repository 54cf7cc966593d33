/**
 * The faults a chaos run injects, and the phase of a migration each is aimed at. A fault is chosen
 * before the migration starts and fired when the migration's watch shows that phase, so that every
 * phase gets its share of crashes, stalls and races rather than whatever a timer happens to hit.
 */
import { OPEN_PHASES, type MigrationPhase } from '@vmm/migration';
import type { Rng } from './rng.js';

export const FAULT_KINDS = [
  'kill-source',
  'kill-target',
  'kill-controller',
  'kill-controller-twice',
  'kill-redis',
  'stop-source',
  'stop-target',
  'stop-controller',
  'delete-vm',
  'cancel',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** The phases a fault is aimed at (the ones a migration spends time in, or crosses the commit in). */
/** The phases a fault can aim at: those a running migration passes through (not PENDING, which waits). */
export type FaultPhase = Exclude<MigrationPhase, 'PENDING' | 'COMPLETED' | 'FAILED' | 'CANCELLED'>;
export const FAULT_PHASES = OPEN_PHASES.filter((p): p is FaultPhase => p !== 'PENDING');

export interface FaultPlan {
  kind: FaultKind;
  phase: FaultPhase;
  /** SIGSTOP faults: how long the process stays stopped. */
  stopMs: number;
}

/** SIGSTOP for 1–20 s, as the issue asks. */
export const MIN_STOP_MS = 1_000;
export const MAX_STOP_MS = 20_000;

export function planFault(rng: Rng, maxStopMs = MAX_STOP_MS): FaultPlan {
  return {
    kind: rng.pick(FAULT_KINDS),
    phase: rng.pick(FAULT_PHASES),
    stopMs: rng.int(MIN_STOP_MS, Math.max(MIN_STOP_MS, maxStopMs)),
  };
}

/** What a fault does to which process of the cluster (by launcher name), or an API call it races. */
export type FaultAction =
  | { kind: 'signal'; process: string; signal: 'SIGKILL' }
  | { kind: 'stop'; process: string; ms: number }
  | { kind: 'kill-twice'; process: string }
  | { kind: 'delete-vm' }
  | { kind: 'cancel' };

export function actionOf(plan: FaultPlan, sourceNode: string, targetNode: string): FaultAction {
  switch (plan.kind) {
    case 'kill-source':
      return { kind: 'signal', process: sourceNode, signal: 'SIGKILL' };
    case 'kill-target':
      return { kind: 'signal', process: targetNode, signal: 'SIGKILL' };
    case 'kill-controller':
      return { kind: 'signal', process: 'controller', signal: 'SIGKILL' };
    case 'kill-controller-twice':
      return { kind: 'kill-twice', process: 'controller' };
    case 'kill-redis':
      return { kind: 'signal', process: 'redis', signal: 'SIGKILL' };
    case 'stop-source':
      return { kind: 'stop', process: sourceNode, ms: plan.stopMs };
    case 'stop-target':
      return { kind: 'stop', process: targetNode, ms: plan.stopMs };
    case 'stop-controller':
      return { kind: 'stop', process: 'controller', ms: plan.stopMs };
    case 'delete-vm':
      return { kind: 'delete-vm' };
    case 'cancel':
      return { kind: 'cancel' };
  }
}
