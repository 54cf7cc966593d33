import { assertFencingEpoch } from '@vmm/migration';
import { VmFencedError } from '../errors.js';

/**
 * Fencing epochs of VM ids this node gave up. A migration commit bumps a VM's epoch; the source is
 * then fenced at the new epoch and must never run the VM under an older one (split-brain guard).
 * Kept for the agent's lifetime: a few bytes per VM that ever left the node.
 */
export class FenceRegistry {
  private readonly fencedAt = new Map<string, number>();

  /**
   * Raises the fence of `vmId` to `epoch` (never lowers it).
   * @throws InvalidFencingEpochError unless `epoch` is a whole number in 0..2^53−1
   */
  fence(vmId: string, epoch: number): void {
    assertFencingEpoch(epoch);
    const current = this.fencedAt.get(vmId);
    if (current === undefined || epoch > current) this.fencedAt.set(vmId, epoch);
  }

  /** The epoch `vmId` is fenced at, or undefined. */
  epochOf(vmId: string): number | undefined {
    return this.fencedAt.get(vmId);
  }

  /**
   * @throws InvalidFencingEpochError unless `epoch` is a whole number in 0..2^53−1 (an int64 the wire
   *   rounded would compare equal to a neighbour); VmFencedError when it is older than the fence of `vmId`
   */
  check(vmId: string, epoch: number): void {
    assertFencingEpoch(epoch);
    const fenced = this.fencedAt.get(vmId);
    if (fenced !== undefined && epoch < fenced) throw new VmFencedError(vmId, epoch, fenced);
  }
}
