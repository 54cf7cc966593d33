/**
 * Which VM to migrate off a node under memory pressure: the one that relieves the pressure at the
 * lowest expected pre-copy cost. Pure.
 *
 * Cost model (Clark et al. 2005): with W resident pages and a dirty rate that is a fraction r of
 * the link's page rate, pre-copy sends about W·(1 + r + r² + …) = W / (1 − r) pages.
 */
import { cluster } from '@vmm/proto';
import type { VmRecord } from '../common/model.js';

export const PAGE_BYTES = 4096;
const MIB = 1024 * 1024;
/** Assumed link speed for the estimate: 1 GiB/s in 4 KiB pages. */
export const LINK_PAGES_PER_SEC = (1024 * MIB) / PAGE_BYTES;
/** r is capped so that a VM that would never converge gets a large, finite cost. */
const MAX_DIRTY_FRACTION = 0.95;

/** Expected pages sent to migrate the VM. */
export function expectedMigrationPages(vm: Pick<VmRecord, 'residentPages' | 'dirtyRatePagesPerSec'>): number {
  const r = Math.min(Math.max(vm.dirtyRatePagesPerSec, 0) / LINK_PAGES_PER_SEC, MAX_DIRTY_FRACTION);
  return Math.max(vm.residentPages, 0) / (1 - r);
}

/**
 * Among RUNNING VMs, the cheapest one whose resident memory covers `excessMib`; if none covers it,
 * the one freeing the most (pressure is then relieved over several sweeps). Undefined if none runs.
 */
export function pickVmToEvacuate(vms: readonly VmRecord[], excessMib: number): VmRecord | undefined {
  const running = vms.filter((v) => v.state === cluster.VmState.VM_STATE_RUNNING && v.residentPages > 0);
  if (running.length === 0) return undefined;
  const excessPages = (excessMib * MIB) / PAGE_BYTES;
  const covering = running.filter((v) => v.residentPages >= excessPages);
  if (covering.length > 0) {
    return covering.reduce((best, v) => (expectedMigrationPages(v) < expectedMigrationPages(best) ? v : best));
  }
  return running.reduce((best, v) => (v.residentPages > best.residentPages ? v : best));
}
