/**
 * When a node sheds memory, and how much: hysteresis between two watermarks, so that a node hovering
 * around one threshold does not start and stop evacuations on every report (oVirt MOM's high/low).
 * Pure.
 *
 *   not relieving ── real use > high ──▶ relieving ── use ≤ low ──▶ not relieving
 *
 * While relieving, the goal is to bring the use down to the low watermark. VMs already leaving the
 * node (outbound migrations in flight, whatever their reason) count toward it, so a sweep that runs
 * while a migration is still copying does not start another one for the same memory. Each step
 * first covers what is above the high watermark (the urgent part, with the cheapest VM that covers
 * it), then what is above the low one.
 */

const MIB = 1024 * 1024;

export interface Watermarks {
  highPercent: number;
  lowPercent: number;
}

export interface PressureInput {
  memoryMib: number;
  memoryUsedBytes: number;
  /** Resident memory of this node's VMs that are migrating away right now. */
  leavingMib: number;
}

export interface PressureDecision {
  relieving: boolean;
  /** MiB still to free beyond what is already leaving (≤ 0: nothing more to start). */
  goalMib: number;
  /** What the next migration should free: the part above high if any, else the goal. */
  stepMib: number;
}

export function memoryPressure(node: PressureInput, wasRelieving: boolean, w: Watermarks): PressureDecision {
  const usedMib = node.memoryUsedBytes / MIB;
  const highMib = (node.memoryMib * w.highPercent) / 100;
  const lowMib = (node.memoryMib * w.lowPercent) / 100;
  const relieving = usedMib > highMib || (wasRelieving && usedMib > lowMib);
  if (!relieving) return { relieving, goalMib: 0, stepMib: 0 };
  const stayingMib = usedMib - node.leavingMib;
  const goalMib = stayingMib - lowMib;
  return { relieving, goalMib, stepMib: stayingMib > highMib ? stayingMib - highMib : goalMib };
}

/** Whether a target can take `addMib` more and stay at or below the high watermark. */
export function staysUnderHighWatermark(
  target: { memoryMib: number; memoryUsedBytes: number },
  addMib: number,
  highPercent: number,
): boolean {
  return target.memoryUsedBytes / MIB + addMib <= (target.memoryMib * highPercent) / 100;
}
