/**
 * DEVICE_STATE from the sender, checked as CreateVm checks a VM before the target loads it: the
 * layout (the emulator's decoder), the VM it was saved for (pages, vCPUs), and the workload it would
 * run (a known kind, a dirty rate the emulated vCPU can keep, a working set inside the memory, a
 * seed ≥ 0). A state that would make the resumed VM spin or write outside its memory never loads.
 */
import { decodeDeviceState, MAX_DIRTY_RATE_PAGES_PER_SEC, validateWorkloadConfig, type VirtualMachine } from '@vmm/emulator';
import { ProtocolError } from '../errors.js';

/** @throws ProtocolError naming what is wrong */
export function checkDeviceState(bytes: Uint8Array, vm: VirtualMachine): void {
  const bad = (detail: string) => new ProtocolError(`DEVICE_STATE: ${detail}`);
  let state: ReturnType<typeof decodeDeviceState>;
  try {
    state = decodeDeviceState(bytes);
  } catch (error) {
    throw bad(error instanceof Error ? error.message : String(error));
  }
  if (state.pageCount !== vm.memory.pageCount) throw bad(`saved for ${state.pageCount} pages, the incoming VM has ${vm.memory.pageCount}`);
  if (state.vcpus !== vm.vcpus) throw bad(`saved for ${state.vcpus} vCPUs, the incoming VM has ${vm.vcpus}`);
  const w = state.workload;
  if (!(w.dirtyRatePagesPerSec >= 0 && w.dirtyRatePagesPerSec <= MAX_DIRTY_RATE_PAGES_PER_SEC)) {
    throw bad(`workload dirty rate ${w.dirtyRatePagesPerSec} is not in 0..${MAX_DIRTY_RATE_PAGES_PER_SEC} pages/s`);
  }
  if (!Number.isSafeInteger(w.seed) || w.seed < 0) throw bad(`workload seed ${w.seed} is not a whole number ≥ 0`);
  try {
    validateWorkloadConfig(w, vm.memory.pageCount);
  } catch (error) {
    throw bad(error instanceof Error ? error.message : String(error));
  }
}
