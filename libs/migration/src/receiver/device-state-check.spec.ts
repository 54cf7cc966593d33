import { afterEach, describe, expect, it } from 'vitest';
import { decodeDeviceState, encodeDeviceState, FramePool, type DeviceState, type VirtualMachine } from '@vmm/emulator';
import { makeIncomingVm, makeSourceVm } from '../testing/vm-fixture.js';
import { checkDeviceState } from './device-state-check.js';

const vms: VirtualMachine[] = [];
afterEach(() => {
  for (const vm of vms.splice(0)) if (vm.state !== 'stopped') vm.stop();
});

function pair() {
  const pool = new FramePool();
  const source = makeSourceVm(pool, 'vm-1', { memoryMib: 4, workingSetMib: 1, kind: 'uniform', dirtyRatePagesPerSec: 1000 });
  const target = makeIncomingVm(new FramePool(), 'vm-1', 4);
  vms.push(source, target);
  return { state: decodeDeviceState(source.saveDeviceState()), target };
}

describe('checkDeviceState', () => {
  it('accepts the device state of the same VM', () => {
    const { state, target } = pair();
    expect(() => checkDeviceState(encodeDeviceState(state), target)).not.toThrow();
  });

  it.each<[string, (s: DeviceState) => DeviceState, RegExp]>([
    ['a dirty rate the vCPU cannot keep (it would spin the event loop)', (s) => ({ ...s, workload: { ...s.workload, dirtyRatePagesPerSec: 1e300 } }), /dirty rate/],
    ['a negative seed', (s) => ({ ...s, workload: { ...s.workload, seed: -5 } }), /seed/],
    ['another page count', (s) => ({ ...s, pageCount: 2048, workingSetPages: 0 }), /2048 pages/],
    ['other vCPUs', (s) => ({ ...s, vcpus: 3, registers: new Uint32Array(3 * 8) }), /3 vCPUs/],
    ['a working set outside the memory', (s) => ({ ...s, workload: { ...s.workload, workingSetPages: 4096 } }), /working set/],
  ])('refuses %s', (_what, change, message) => {
    const { state, target } = pair();
    expect(() => checkDeviceState(encodeDeviceState(change(state)), target)).toThrow(expect.objectContaining({ code: 'PROTOCOL_ERROR', message: expect.stringMatching(message) }));
  });

  it('refuses bytes that are not a device state', () => {
    const { target } = pair();
    expect(() => checkDeviceState(new Uint8Array(100).fill(7), target)).toThrow(/DEVICE_STATE: .*magic/);
    expect(() => checkDeviceState(new Uint8Array(3), target)).toThrow(/DEVICE_STATE/);
  });
});
