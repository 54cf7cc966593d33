import { VmFencedError } from '../errors.js';

/**
 * Fencing epochs of VM ids this node gave up. A migration commit bumps a VM's epoch; the source is
 * then fenced at the new epoch and must never run the VM under an older one (split-brain guard).
 * Kept for the agent's lifetime: a few bytes per VM that ever left the node.
 */
export class FenceRegistry {
  private readonly fencedAt = new Map<string, number>();

  /** Raises the fence of `vmId` to `epoch` (never lowers it). */
  fence(vmId: string, epoch: number): void {
    const current = this.fencedAt.get(vmId);
    if (current === undefined || epoch > current) this.fencedAt.set(vmId, epoch);
  }

  /** The epoch `vmId` is fenced at, or undefined. */
  epochOf(vmId: string): number | undefined {
    return this.fencedAt.get(vmId);
  }

  /** @throws VmFencedError when `epoch` is older than the fence of `vmId` */
  check(vmId: string, epoch: number): void {
    const fenced = this.fencedAt.get(vmId);
    if (fenced !== undefined && epoch < fenced) throw new VmFencedError(vmId, epoch, fenced);
  }
}
