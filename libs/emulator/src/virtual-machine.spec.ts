import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { initHashing } from './digest.js';
import { InvalidArgumentError, InvalidVmStateError, UnknownImageError } from './errors.js';
import { FramePool } from './frame-pool.js';
import { imageTemplate } from './images.js';
import type { WorkloadConfig } from './vcpu-workload.js';
import { VirtualMachine, type VmState, type VirtualMachineOptions } from './virtual-machine.js';

beforeAll(async () => {
  await initHashing();
});

const vms: VirtualMachine[] = [];
afterEach(() => {
  for (const vm of vms.splice(0)) if (vm.state !== 'stopped') vm.stop();
});

const idle: WorkloadConfig = { kind: 'idle', dirtyRatePagesPerSec: 0, workingSetPages: 0, seed: 1 };

function makeVm(opts: Partial<VirtualMachineOptions> = {}): VirtualMachine {
  const vm = new VirtualMachine({ id: 'vm-1', pool: new FramePool(), memoryMib: 16, vcpus: 1, image: 'empty', workload: idle, ...opts });
  vms.push(vm);
  return vm;
}

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('VirtualMachine lifecycle', () => {
  it.each<[VmState, 'start' | 'resume' | 'pause' | 'stop', VmState | 'error']>([
    ['paused', 'start', 'running'],
    ['paused', 'resume', 'running'],
    ['paused', 'pause', 'paused'],
    ['paused', 'stop', 'stopped'],
    ['running', 'pause', 'paused'],
    ['running', 'start', 'running'],
    ['running', 'stop', 'stopped'],
    ['stopped', 'start', 'error'],
    ['stopped', 'resume', 'error'],
    ['stopped', 'pause', 'error'],
    ['stopped', 'stop', 'stopped'],
  ])('%s --%s--> %s', (from, op, to) => {
    const vm = makeVm();
    if (from === 'running') vm.start();
    if (from === 'stopped') vm.stop();
    if (to === 'error') {
      expect(() => vm[op]()).toThrow(InvalidVmStateError);
      expect(vm.state).toBe(from);
    } else {
      vm[op]();
      expect(vm.state).toBe(to);
    }
  });

  it('is created paused with its image loaded into its own frames', () => {
    const pool = new FramePool();
    const vm = makeVm({ pool, image: 'debian-12', memoryMib: 128 });
    const t = imageTemplate('debian-12');
    expect(vm.state).toBe('paused');
    expect(vm.memory.pageCount).toBe(128 * 256);
    expect(vm.memory.residentPages).toBe(t.spec.pages - t.zeroPages);
    expect(pool.framesInUse).toBe(t.spec.pages - t.zeroPages);
  });

  it('incoming: paused, empty memory, no image', () => {
    const pool = new FramePool();
    const vm = makeVm({ pool, image: 'debian-12', memoryMib: 128, incoming: true });
    expect(vm.state).toBe('paused');
    expect(vm.memory.residentPages).toBe(0);
    expect(pool.framesInUse).toBe(0);
    expect(vm.image).toBe('debian-12');
  });

  it('a paused VM makes no writes; resume continues', async () => {
    const vm = makeVm({ workload: { kind: 'uniform', dirtyRatePagesPerSec: 20_000, workingSetPages: 0, seed: 3 } });
    vm.start();
    await until(() => vm.writesTotal > 100);
    vm.pause();
    const writes = vm.writesTotal;
    const digest = vm.memory.digest();
    await sleep(100); // 20 timer periods
    expect(vm.writesTotal).toBe(writes);
    expect(vm.memory.digest()).toBe(digest);
    vm.resume();
    await until(() => vm.writesTotal > writes);
  });

  it('stop releases every frame', () => {
    const pool = new FramePool();
    const vm = makeVm({ pool, image: 'alpine-3.20' });
    vm.workload.step(100);
    expect(pool.framesInUse).toBeGreaterThan(0);
    vm.stop();
    expect(pool.framesInUse).toBe(0);
    expect(pool.slabsLive).toBe(0);
  });

  it('loads device state only while paused', () => {
    const vm = makeVm();
    const state = vm.saveDeviceState();
    vm.start();
    expect(() => vm.loadDeviceState(state)).toThrow(InvalidVmStateError);
    vm.pause();
    vm.loadDeviceState(state);
    const other = makeVm({ memoryMib: 32 });
    expect(() => other.loadDeviceState(state)).toThrow(InvalidArgumentError);
  });

  it('setWorkload changes the rate and keeps the counter', () => {
    const vm = makeVm({ workload: { kind: 'uniform', dirtyRatePagesPerSec: 10, workingSetPages: 0, seed: 3 } });
    vm.workload.step(5);
    vm.setThrottle(30);
    vm.setWorkload({ kind: 'sequential', dirtyRatePagesPerSec: 500, workingSetPages: 10, seed: 3 });
    expect(vm.writesTotal).toBe(5);
    expect(vm.throttlePercent).toBe(30);
    expect(vm.workload.config.kind).toBe('sequential');
  });

  it.each<[string, Partial<VirtualMachineOptions>, new (...a: never[]) => Error]>([
    ['an empty id', { id: '' }, InvalidArgumentError],
    ['zero memory', { memoryMib: 0 }, InvalidArgumentError],
    ['fractional memory', { memoryMib: 1.5 }, InvalidArgumentError],
    ['zero vCPUs', { vcpus: 0 }, InvalidArgumentError],
    ['an unknown image', { image: 'Plan 9' }, UnknownImageError],
    ['memory smaller than the image', { image: 'debian-12', memoryMib: 32 }, InvalidArgumentError],
    ['a negative rate', { workload: { ...idle, kind: 'uniform', dirtyRatePagesPerSec: -5 } }, InvalidArgumentError],
    ['a working set beyond memory', { workload: { ...idle, workingSetPages: 1 << 20 } }, InvalidArgumentError],
    ['corrupt device state', { deviceState: new Uint8Array(10) }, Error],
  ])('rejects %s and holds no frames', (_name, opts, error) => {
    const pool = new FramePool();
    expect(() => new VirtualMachine({ id: 'bad', pool, memoryMib: 16, vcpus: 1, image: 'alpine-3.20', workload: idle, ...opts })).toThrow(error);
    expect(pool.framesInUse).toBe(0);
  });
});

describe('VirtualMachine memory footprint', () => {
  it('a 1 GiB empty-image VM whose workload wrote 64 MiB holds about 64 MiB', () => {
    const before = process.memoryUsage();
    const pool = new FramePool();
    const vm = makeVm({
      pool,
      memoryMib: 1024,
      workload: { kind: 'sequential', dirtyRatePagesPerSec: 1000, workingSetPages: 16384, seed: 1 },
    });
    vm.workload.step(16384); // one sweep: every page of the 64 MiB working set written once
    const after = process.memoryUsage();
    const MiB = 1024 * 1024;
    const arrayBuffersMib = (after.arrayBuffers - before.arrayBuffers) / MiB;
    console.info(
      `1 GiB VM, 64 MiB written: framesInUse ${pool.framesInUse}, bytesInUse ${pool.bytesInUse / MiB} MiB, ` +
        `slabs ${pool.bytesReserved / MiB} MiB, arrayBuffers +${arrayBuffersMib.toFixed(1)} MiB, ` +
        `rss +${((after.rss - before.rss) / MiB).toFixed(1)} MiB`,
    );
    expect(pool.framesInUse).toBe(16384);
    expect(pool.bytesInUse).toBe(64 * MiB);
    expect(pool.bytesReserved).toBe(64 * MiB); // dense slabs
    // Not 1 GiB: 64 MiB of frames and a 1 MiB page map (less if the GC freed earlier tests' buffers meanwhile).
    expect(arrayBuffersMib).toBeLessThan(80);
  });

  it('merging identical pages (as KSM does) frees frames and whole slabs', () => {
    const pool = new FramePool();
    const a = makeVm({ id: 'a', pool, image: 'debian-12', memoryMib: 128 });
    const b = makeVm({ id: 'b', pool, image: 'debian-12', memoryMib: 128 });
    const framesBefore = pool.framesInUse;
    const slabBytesBefore = pool.bytesReserved;
    for (let p = 0; p < b.memory.pageCount; p++) {
      const f = a.memory.frameOf(p);
      if (f !== -1) b.memory.mapShared(p, f);
    }
    expect(b.memory.digest()).toBe(a.memory.digest());
    expect(pool.framesInUse).toBe(framesBefore / 2);
    expect(pool.bytesReserved).toBeLessThanOrEqual(slabBytesBefore / 2 + 1024 * 1024);
    console.info(
      `two debian-12 VMs: ${(slabBytesBefore / 2 ** 20).toFixed(0)} MiB of slabs before merging, ${(pool.bytesReserved / 2 ** 20).toFixed(0)} MiB after`,
    );
  });
});

describe('VirtualMachine dirty rate (wall clock)', () => {
  const WINDOW_MS = 1200;

  /** Runs the VM and counts its writes (and distinct dirty pages) over a real window of ≥ 1.2 s. */
  async function measure(vm: VirtualMachine, busyMs = 0) {
    vm.start();
    await sleep(100); // settle
    const log = vm.memory.createDirtyLog();
    const w0 = vm.writesTotal;
    const t0 = performance.now();
    if (busyMs > 0) {
      await sleep(WINDOW_MS / 3);
      const end = performance.now() + busyMs;
      while (performance.now() < end); // the event loop is busy, as when streaming a migration
    }
    await sleep(WINDOW_MS - (performance.now() - t0));
    const writes = vm.writesTotal - w0;
    const seconds = (performance.now() - t0) / 1000;
    const distinct = log.dirtyCount();
    log.disable();
    vm.pause();
    return { writes, seconds, rate: writes / seconds, distinct };
  }

  describe('uniform over a 256 MiB working set filled with random data (1 GiB VM)', () => {
    const WS = 65536;
    let vm: VirtualMachine;
    beforeAll(() => {
      vm = new VirtualMachine({ id: 'ws', pool: new FramePool(), memoryMib: 1024, vcpus: 1, image: 'empty', workload: idle });
      vm.memory.fillRandom(0, WS, 1);
    });
    afterAll(() => vm.stop());

    it.each([1000, 10_000, 100_000])('holds %i pages/s within 10%, with the distinct dirty pages expected', async (rate) => {
      vm.setWorkload({ kind: 'uniform', dirtyRatePagesPerSec: rate, workingSetPages: WS, seed: 5 });
      const m = await measure(vm);
      const expectedDistinct = WS * (1 - Math.exp(-m.writes / WS));
      console.info(
        `uniform ${rate}/s: measured ${m.rate.toFixed(0)}/s over ${m.seconds.toFixed(2)} s, ` +
          `distinct dirty pages ${m.distinct} (expected ${expectedDistinct.toFixed(0)})`,
      );
      expect(m.rate).toBeGreaterThan(rate * 0.9);
      expect(m.rate).toBeLessThan(rate * 1.1);
      expect(m.distinct).toBeGreaterThan(expectedDistinct * 0.97);
      expect(m.distinct).toBeLessThan(expectedDistinct * 1.03);
    });
  });

  it('holds 10000 pages/s over untouched memory (every write a first touch)', async () => {
    const vm = makeVm({ memoryMib: 1024, workload: { kind: 'uniform', dirtyRatePagesPerSec: 10_000, workingSetPages: 0, seed: 5 } });
    const m = await measure(vm);
    console.info(`uniform 10000/s over cold 1 GiB: measured ${m.rate.toFixed(0)}/s`);
    expect(m.rate).toBeGreaterThan(10_000 * 0.9);
    expect(m.rate).toBeLessThan(10_000 * 1.1);
  });

  it('keeps the pace through a 300 ms event-loop stall', async () => {
    const vm = makeVm({ memoryMib: 256, workload: { kind: 'hotcold', dirtyRatePagesPerSec: 20_000, workingSetPages: 0, seed: 5 } });
    const m = await measure(vm, 300);
    console.info(`hotcold 20000/s with a 300 ms stall: measured ${m.rate.toFixed(0)}/s`);
    expect(m.rate).toBeGreaterThan(20_000 * 0.9);
    expect(m.rate).toBeLessThan(20_000 * 1.1);
  });

  it('throttle lowers the measured rate', async () => {
    const vm = makeVm({ memoryMib: 64, workload: { kind: 'sequential', dirtyRatePagesPerSec: 10_000, workingSetPages: 0, seed: 5 } });
    vm.setThrottle(50);
    const m = await measure(vm);
    expect(m.rate).toBeGreaterThan(5000 * 0.9);
    expect(m.rate).toBeLessThan(5000 * 1.1);
  });
});
