import { beforeAll, describe, expect, it } from 'vitest';
import { decodeDeviceState, DEVICE_STATE_VERSION, encodeDeviceState, type DeviceState } from './device-state.js';
import { initHashing } from './digest.js';
import { CorruptStateError } from './errors.js';
import { FramePool, PAGE_SIZE } from './frame-pool.js';
import type { WorkloadKind } from './vcpu-workload.js';
import { VirtualMachine } from './virtual-machine.js';

beforeAll(async () => {
  await initHashing();
});

const sample: DeviceState = {
  pageCount: 262144,
  workload: { kind: 'hotcold', dirtyRatePagesPerSec: 12345.5, workingSetPages: 65536, seed: 2 ** 40 + 3 },
  workingSetPages: 65536,
  salt: 0xdeadbeef,
  rngState: Uint32Array.from([1, 2, 3, 0xffffffff]),
  writes: 2 ** 40 + 17,
  sweepPage: 100,
  throttlePercent: 37.5,
  vcpus: 2,
  registers: Uint32Array.from({ length: 16 }, (_, i) => i * 0x10000001),
};

describe('device state encoding', () => {
  it('round-trips every field', () => {
    const bytes = encodeDeviceState(sample);
    expect(decodeDeviceState(bytes)).toEqual(sample);
    const shifted = new Uint8Array(bytes.length + 3);
    shifted.set(bytes, 3);
    expect(decodeDeviceState(shifted.subarray(3))).toEqual(sample); // any byteOffset
  });

  const corrupt = (edit: (b: Uint8Array, v: DataView) => Uint8Array | void) => {
    const b = encodeDeviceState(sample);
    return edit(b, new DataView(b.buffer)) ?? b;
  };
  it.each([
    ['empty input', () => new Uint8Array(0)],
    ['bad magic', () => corrupt((b) => void (b[0] ^= 1))],
    ['a newer version', () => corrupt((_b, v) => v.setUint16(4, DEVICE_STATE_VERSION + 1, true))],
    ['an unknown workload kind', () => corrupt((b) => void (b[6] = 9))],
    ['truncated registers', () => corrupt((b) => b.subarray(0, b.length - 4))],
    ['trailing bytes', () => corrupt((b) => Uint8Array.from([...b, 0]))],
    ['a negative dirty rate', () => corrupt((_b, v) => v.setFloat64(8, -1, true))],
  ])('rejects %s', (_name, make) => {
    expect(() => decodeDeviceState(make())).toThrow(CorruptStateError);
  });
});

describe('device state restores the workload position', () => {
  it.each<WorkloadKind>(['uniform', 'hotcold', 'sequential'])(
    '%s: a VM restored over a copy of the memory continues the identical write sequence',
    (kind) => {
      const pool = new FramePool();
      const workload = { kind, dirtyRatePagesPerSec: 1000, workingSetPages: 3000, seed: 11 };
      const source = new VirtualMachine({ id: 'vm-a', pool, memoryMib: 16, vcpus: 2, image: 'empty', workload });
      source.setThrottle(20);
      source.workload.step(12_345);

      const target = new VirtualMachine({ id: 'vm-a', pool, memoryMib: 16, vcpus: 2, image: 'empty', workload, incoming: true });
      const buf = new Uint8Array(PAGE_SIZE);
      for (let p = 0; p < source.memory.pageCount; p++) {
        if (source.memory.readPage(p, buf)) target.memory.writePage(p, buf);
      }
      target.loadDeviceState(source.saveDeviceState());
      expect(target.memory.digest()).toBe(source.memory.digest());
      expect(target.writesTotal).toBe(12_345);
      expect(target.throttlePercent).toBe(20);
      expect(target.vcpuRegisters).toEqual(source.vcpuRegisters);

      const sourceLog = source.memory.createDirtyLog();
      const targetLog = target.memory.createDirtyLog();
      for (const n of [1, 500, 7000]) {
        source.workload.step(n);
        target.workload.step(n);
        expect(targetLog.sync()).toEqual(sourceLog.sync()); // same pages
        expect(target.memory.digest()).toBe(source.memory.digest()); // same values
      }
      source.stop();
      target.stop();
      expect(pool.framesInUse).toBe(0);
    },
  );

  it('the constructor option deviceState restores it too', () => {
    const pool = new FramePool();
    const workload = { kind: 'uniform' as const, dirtyRatePagesPerSec: 1000, workingSetPages: 0, seed: 1 };
    const a = new VirtualMachine({ id: 'x', pool, memoryMib: 4, vcpus: 1, image: 'empty', workload });
    a.workload.step(10);
    const b = new VirtualMachine({ id: 'x', pool, memoryMib: 4, vcpus: 1, image: 'empty', workload, incoming: true, deviceState: a.saveDeviceState() });
    expect(b.writesTotal).toBe(10);
    expect(b.workload.rng.state).toEqual(a.workload.rng.state);
  });
});
