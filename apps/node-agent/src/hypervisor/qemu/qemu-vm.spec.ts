import { GuestNotFoundError, type QemuDriver } from '@vmm/qemu';
import { describe, expect, it } from 'vitest';
import { QemuVm } from './qemu-vm.js';

/** A driver that records its calls in order and fails the ones named in `failing`. */
function fakeDriver(failing: Record<string, Error> = {}) {
  const calls: string[] = [];
  const op = (name: string) => async () => {
    calls.push(name);
    await new Promise((r) => setTimeout(r, 5));
    if (failing[name]) throw failing[name];
  };
  const driver = { create: op('create'), pause: op('pause'), resume: op('resume'), delete: op('delete') } as unknown as QemuDriver;
  return { driver, calls };
}

const spec = { vmId: 'vm-1', memoryMib: 256, vcpus: 1, image: 'empty', workload: { kind: 'idle' as const, dirtyRatePagesPerSec: 0, workingSetPages: 0, seed: 0 } };

describe('QemuVm', () => {
  it('takes a state change at once and carries the QMP work out behind it, in order', async () => {
    const { driver, calls } = fakeDriver();
    const vm = new QemuVm('vm-1', driver, 256, 'running');
    vm.boot(spec);
    vm.pause();
    expect(vm.state).toBe('paused');
    vm.pause(); // already paused: nothing more to do
    vm.resume();
    await vm.settled();
    expect(calls).toEqual(['create', 'pause', 'resume']);
    expect(vm.memory.pageCount).toBe(65_536);
  });

  it('reports a failed boot through settled() and reads as stopped', async () => {
    const { driver } = fakeDriver({ create: new Error('no ready line') });
    const vm = new QemuVm('vm-1', driver, 256, 'running');
    vm.boot(spec);
    await expect(vm.settled()).rejects.toThrow('no ready line');
    expect(vm.state).toBe('stopped');
  });

  it('refuses to pause or resume a stopped guest (INVALID_VM_STATE, as the emulator does); a stop of a gone guest is fine', async () => {
    const { driver, calls } = fakeDriver({ delete: new GuestNotFoundError('vm-1') });
    const vm = new QemuVm('vm-1', driver, 256, 'running');
    vm.hasProcess = true;
    vm.stop();
    await vm.settled();
    expect(calls).toEqual(['delete']);
    expect(() => vm.pause()).toThrow(expect.objectContaining({ code: 'INVALID_VM_STATE' }));
    expect(() => vm.resume()).toThrow(expect.objectContaining({ code: 'INVALID_VM_STATE' }));
    expect(vm.memory.residentPages).toBe(0);
  });
});
