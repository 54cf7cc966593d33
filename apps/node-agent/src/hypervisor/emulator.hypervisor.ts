import { VirtualMachine, type FramePool } from '@vmm/emulator';
import { SourceRunner, type OutgoingRunner, type SourceRunnerOptions } from '../migration/source.runner.js';
import { TargetRunner, type IncomingRunner, type TargetRunnerOptions } from '../migration/target.runner.js';
import { DirtyTracker, type DirtySampler } from '../vm/dirty-tracker.js';
import type { ValidatedVmSpec } from '../vm/vm-spec.js';
import { asEmulated } from './emulated-vm.js';
import type { GuestVm, Hypervisor, RediscoveredGuest } from './hypervisor.js';

/**
 * The built-in driver: VMs are @vmm/emulator VirtualMachines in the agent's one FramePool, migrated by
 * @vmm/migration's engine over the agents' own data connection. Everything is in this process, so
 * nothing outlives it and every call is done when it returns.
 */
export class EmulatorHypervisor implements Hypervisor {
  readonly kind = 'emulator' as const;

  constructor(readonly pool: FramePool) {}

  createGuest(valid: ValidatedVmSpec, incoming: boolean): GuestVm {
    const vm = new VirtualMachine({
      id: valid.spec.vmId,
      pool: this.pool,
      memoryMib: valid.memoryMib,
      vcpus: valid.vcpus,
      image: valid.image,
      workload: valid.workload,
      incoming,
    });
    if (!incoming) vm.start();
    return vm;
  }

  dirtySampler(vm: GuestVm, nowMs: number): DirtySampler {
    const emulated = asEmulated(vm);
    return new DirtyTracker(emulated.memory.createDirtyLog(), emulated.memory.pageCount, nowMs);
  }

  outgoing(opts: SourceRunnerOptions): OutgoingRunner {
    return new SourceRunner(opts);
  }

  incoming(opts: TargetRunnerOptions): IncomingRunner {
    return new TargetRunner(opts);
  }

  memoryUsedBytes(): number {
    return this.pool.bytesInUse;
  }

  recordSpec(): void {}

  rediscovered(): RediscoveredGuest[] {
    return [];
  }

  async shutdown(): Promise<void> {}
}
