/**
 * VM ids that sort by creation time (fixed-width base-36 milliseconds, then randomness), so the
 * lexicographic index used for pagination lists VMs oldest first.
 */
import { randomBytes } from 'node:crypto';

export function newVmId(nowMs: number = Date.now()): string {
  return `vm-${nowMs.toString(36).padStart(9, '0')}-${randomBytes(5).toString('hex')}`;
}
