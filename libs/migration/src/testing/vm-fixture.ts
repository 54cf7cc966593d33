/** Source and incoming VMs for engine tests and benchmarks. */
import { FramePool, VirtualMachine, type WorkloadKind } from '@vmm/emulator';

export interface VmPairOptions {
  memoryMib: number;
  workingSetMib: number;
  kind: WorkloadKind;
  dirtyRatePagesPerSec: number;
  seed?: number;
  image?: string;
}

export function makeSourceVm(pool: FramePool, id: string, o: VmPairOptions): VirtualMachine {
  const workingSetPages = o.workingSetMib * 256;
  const vm = new VirtualMachine({
    id,
    pool,
    memoryMib: o.memoryMib,
    vcpus: 2,
    image: o.image ?? 'empty',
    workload: { kind: o.kind, dirtyRatePagesPerSec: o.dirtyRatePagesPerSec, workingSetPages, seed: o.seed ?? 7 },
  });
  if (workingSetPages > 0) vm.memory.fillRandom(0, workingSetPages, o.seed ?? 7);
  return vm;
}

export function makeIncomingVm(pool: FramePool, id: string, memoryMib: number): VirtualMachine {
  return new VirtualMachine({
    id,
    pool,
    memoryMib,
    vcpus: 2,
    image: 'empty',
    workload: { kind: 'idle', dirtyRatePagesPerSec: 0, workingSetPages: 0, seed: 0 },
    incoming: true,
  });
}
