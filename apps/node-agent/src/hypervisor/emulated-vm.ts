import { VirtualMachine } from '@vmm/emulator';
import type { GuestVm } from './hypervisor.js';

/** The emulator's VM behind a guest of the emulator driver (its migration engine and ksmd need the real one). */
export function asEmulated(vm: GuestVm): VirtualMachine {
  if (!(vm instanceof VirtualMachine)) throw new Error(`VM ${vm.id} is not an emulated VM`);
  return vm;
}
