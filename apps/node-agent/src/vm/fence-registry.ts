import { assertFencingEpoch } from '@vmm/migration';
import type { AgentStateStore } from '../state/agent-state.store.js';
import { VmFencedError } from '../errors.js';

/**
 * Fencing epochs of VM ids this node gave up. A migration commit bumps a VM's epoch; the source is
 * then fenced at the new epoch and must never run the VM under an older one (split-brain guard).
 * Kept in STATE_DIR (AgentStateStore), so that a restarted agent still refuses the old epochs: a few
 * bytes per VM that ever left the node.
 */
export class FenceRegistry {
  constructor(private readonly store: AgentStateStore) {}

  /**
   * Raises the fence of `vmId` to `epoch` (never lowers it); durable when it returns.
   * @throws InvalidFencingEpochError unless `epoch` is a whole number in 0..2^53−1
   */
  fence(vmId: string, epoch: number): void {
    assertFencingEpoch(epoch);
    const current = this.epochOf(vmId);
    if (current !== undefined && epoch <= current) return;
    this.store.update((s) => {
      s.fences[vmId] = epoch;
    });
  }

  /** The epoch `vmId` is fenced at, or undefined. */
  epochOf(vmId: string): number | undefined {
    return this.store.fences()[vmId];
  }

  /**
   * @throws InvalidFencingEpochError unless `epoch` is a whole number in 0..2^53−1 (an int64 the wire
   *   rounded would compare equal to a neighbour); VmFencedError when it is older than the fence of `vmId`
   */
  check(vmId: string, epoch: number): void {
    assertFencingEpoch(epoch);
    const fenced = this.epochOf(vmId);
    if (fenced !== undefined && epoch < fenced) throw new VmFencedError(vmId, epoch, fenced);
  }
}
