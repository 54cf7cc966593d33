import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { initHashing } from './digest.js';
import { InvalidArgumentError, InvalidVmStateError, UnknownImageError } from './errors.js';
import { FramePool } from './frame-pool.js';
import { imageTemplate } from './images.js';
import { MAX_ADVANCE_SEC, type WorkloadConfig } from './vcpu-workload.js';
import { VirtualMachine, WORKLOAD_TICK_MS, type VmClock, type VmState, type VirtualMachineOptions } from './virtual-machine.js';
import { waitFor } from '../../../test/support/wait-for.js';

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

/**
 * A clock moved by hand. advance() fires every interval at each of its due times, as an idle event loop
 * would; stall() moves time with no timer firing (the event loop busy), then fires each overdue interval
 * once and re-arms it from then, as Node does; skip() and fire() do the two halves for irregular ticks.
 * No real time passes, so the write counts for a given time are exact whatever the load of the machine.
 */
class ManualClock implements VmClock {
  private t = 1000; // not 0: nothing may depend on the clock starting at zero
  private readonly timers = new Map<number, { tick: () => void; periodMs: number; dueAt: number }>();
  private nextId = 1;
  /** Every period asked for, in order. */
  readonly periods: number[] = [];

  now(): number {
    return this.t;
  }

  setInterval(tick: () => void, periodMs: number): unknown {
    this.periods.push(periodMs);
    const id = this.nextId++;
    this.timers.set(id, { tick, periodMs, dueAt: this.t + periodMs });
    return id;
  }

  clearInterval(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Intervals armed (a running VM has exactly one, a paused or stopped VM none). */
  get armed(): number {
    return this.timers.size;
  }

  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: { tick: () => void; periodMs: number; dueAt: number } | undefined;
      for (const timer of this.timers.values()) if (timer.dueAt <= end && (next === undefined || timer.dueAt < next.dueAt)) next = timer;
      if (next === undefined) break;
      this.t = next.dueAt;
      next.dueAt += next.periodMs;
      next.tick();
    }
    this.t = end;
  }

  skip(ms: number): void {
    this.t += ms;
  }

  fire(): void {
    for (const timer of [...this.timers.values()]) {
      timer.dueAt = this.t + timer.periodMs;
      timer.tick();
    }
  }

  stall(ms: number): void {
    this.skip(ms);
    this.fire();
  }
}

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

  it('a paused VM makes no writes; resume continues', () => {
    const clock = new ManualClock();
    const vm = makeVm({ clock, workload: { kind: 'uniform', dirtyRatePagesPerSec: 20_000, workingSetPages: 0, seed: 3 } });
    vm.start();
    clock.advance(50);
    expect(vm.writesTotal).toBe(1000);
    vm.pause();
    expect(clock.armed).toBe(0);
    const digest = vm.memory.digest();
    clock.advance(100); // 20 timer periods
    expect(vm.writesTotal).toBe(1000);
    expect(vm.memory.digest()).toBe(digest);
    vm.resume();
    clock.advance(50); // the pause is not caught up: resume restarts the pacing clock with no backlog
    expect(vm.writesTotal).toBe(2000);
  });

  it('pause() and stop() first make the writes due up to that instant, between two ticks', () => {
    const clock = new ManualClock();
    const vm = makeVm({ clock, workload: { kind: 'uniform', dirtyRatePagesPerSec: 10_000, workingSetPages: 0, seed: 3 } });
    vm.start();
    clock.advance(WORKLOAD_TICK_MS);
    expect(vm.writesTotal).toBe(50);
    clock.skip(3); // no tick yet
    vm.pause();
    expect(vm.writesTotal).toBe(80);
    vm.resume();
    clock.skip(2);
    vm.stop();
    expect(vm.writesTotal).toBe(100);
    expect(clock.armed).toBe(0);
  });

  it('ticks every WORKLOAD_TICK_MS while running, on one interval', () => {
    const clock = new ManualClock();
    const vm = makeVm({ clock });
    expect(clock.armed).toBe(0); // created paused
    vm.start();
    vm.start(); // a no-op: no second interval
    expect(clock.armed).toBe(1);
    vm.pause();
    vm.resume();
    expect(clock.periods).toEqual([WORKLOAD_TICK_MS, WORKLOAD_TICK_MS]);
    expect(clock.armed).toBe(1);
    vm.stop();
    expect(clock.armed).toBe(0);
  });

  it('the registers follow the writes the ticks make', () => {
    const clock = new ManualClock();
    const vm = makeVm({ clock, workload: { kind: 'uniform', dirtyRatePagesPerSec: 1000, workingSetPages: 0, seed: 3 } });
    vm.start();
    const before = vm.vcpuRegisters;
    clock.advance(WORKLOAD_TICK_MS);
    expect(vm.writesTotal).toBe(5);
    expect(vm.vcpuRegisters).not.toEqual(before);
  });

  it('with the default clock, the process timers drive the workload', async () => {
    // Only the wiring of the real clock (performance.now, setInterval): no rate is asserted, and the deadline
    // is a generous bound for a loaded machine. The pacing itself is checked with a manual clock below.
    const vm = makeVm({ workload: { kind: 'uniform', dirtyRatePagesPerSec: 20_000, workingSetPages: 0, seed: 3 } });
    vm.start();
    await waitFor(() => vm.writesTotal > 100, 10_000);
    vm.pause();
    const writes = vm.writesTotal;
    await new Promise((r) => setImmediate(r)); // a timer callback already queued would run here
    expect(vm.writesTotal).toBe(writes);
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

  it('setWorkload while running paces the new rate from that instant', () => {
    const clock = new ManualClock();
    const vm = makeVm({ clock, workload: { kind: 'uniform', dirtyRatePagesPerSec: 1000, workingSetPages: 0, seed: 3 } });
    vm.start();
    clock.advance(100);
    expect(vm.writesTotal).toBe(100);
    vm.setWorkload({ kind: 'sequential', dirtyRatePagesPerSec: 4000, workingSetPages: 0, seed: 3 });
    clock.advance(100);
    expect(vm.writesTotal).toBe(100 + 400);
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

describe('VirtualMachine dirty rate (manual clock)', () => {
  // With the clock advanced by hand, the writes made in a given time are exact: pacing is a function of the
  // clock, not of how busy the machine is. (A real-time check of the pacing belongs to a benchmark: on a
  // shared 2-core machine a ±10% window over 1.2 s of wall time is not a unit test.)
  const WINDOW_MS = 1200;

  /** Runs the VM for WINDOW_MS of clock time, ticking as an idle event loop would (optionally with a stall). */
  function measure(vm: VirtualMachine, clock: ManualClock, stallMs = 0) {
    vm.start();
    const log = vm.memory.createDirtyLog();
    const w0 = vm.writesTotal;
    if (stallMs > 0) {
      clock.advance(WINDOW_MS / 3);
      clock.stall(stallMs); // the event loop is busy, as when streaming a migration
      clock.advance(WINDOW_MS - WINDOW_MS / 3 - stallMs);
    } else {
      clock.advance(WINDOW_MS);
    }
    const writes = vm.writesTotal - w0;
    const distinct = log.dirtyCount();
    log.disable();
    vm.pause();
    return { writes, distinct };
  }

  describe('uniform over a 256 MiB working set filled with random data (1 GiB VM)', () => {
    const WS = 65536;
    const clock = new ManualClock();
    let vm: VirtualMachine;
    beforeAll(() => {
      vm = new VirtualMachine({ id: 'ws', pool: new FramePool(), memoryMib: 1024, vcpus: 1, image: 'empty', workload: idle, clock });
      vm.memory.fillRandom(0, WS, 1);
    });
    afterAll(() => vm.stop());

    it.each([1000, 10_000, 100_000])('makes %i pages/s × the time exactly, with the distinct dirty pages expected', (rate) => {
      vm.setWorkload({ kind: 'uniform', dirtyRatePagesPerSec: rate, workingSetPages: WS, seed: 5 });
      const m = measure(vm, clock);
      // Uniform writes: a page escapes n writes with probability (1 - 1/WS)^n ≈ e^(-n/WS). The count is
      // deterministic (seeded); the band only allows for the distance between this sample and the mean.
      const expectedDistinct = WS * (1 - Math.exp(-m.writes / WS));
      expect(m.writes).toBe((rate * WINDOW_MS) / 1000);
      expect(m.distinct).toBeGreaterThan(expectedDistinct * 0.97);
      expect(m.distinct).toBeLessThan(expectedDistinct * 1.03);
    });
  });

  it('makes 10000 pages/s over untouched memory, every first touch logged dirty', () => {
    const clock = new ManualClock();
    const vm = makeVm({ clock, memoryMib: 1024, workload: { kind: 'uniform', dirtyRatePagesPerSec: 10_000, workingSetPages: 0, seed: 5 } });
    const m = measure(vm, clock);
    expect(m.writes).toBe(12_000);
    expect(vm.memory.residentPages).toBe(m.distinct); // the empty image: every resident page is one the workload wrote
  });

  it('keeps the pace through a 300 ms event-loop stall, catching up over several ticks', () => {
    const rate = 20_000;
    const clock = new ManualClock();
    const vm = makeVm({ clock, memoryMib: 256, workload: { kind: 'hotcold', dirtyRatePagesPerSec: rate, workingSetPages: 0, seed: 5 } });
    vm.start();
    clock.advance(400);
    expect(vm.writesTotal).toBe(8000);
    clock.stall(300);
    // The first tick after the stall makes at most MAX_ADVANCE_SEC of writes, so the event loop gets back to I/O…
    expect(vm.writesTotal).toBe(8000 + rate * MAX_ADVANCE_SEC);
    // …and the 6000 writes due are caught up within a few more ticks (2000 per tick, plus 100 newly due each).
    clock.advance(3 * WORKLOAD_TICK_MS);
    expect(vm.writesTotal).toBe((rate * 715) / 1000);
    vm.pause();
    // Through measure(): the window's total is what an unstalled window makes.
    const m = measure(vm, clock, 300);
    expect(m.writes).toBe((rate * WINDOW_MS) / 1000);
  });

  it('throttle lowers the rate in proportion', () => {
    const clock = new ManualClock();
    const vm = makeVm({ clock, memoryMib: 64, workload: { kind: 'sequential', dirtyRatePagesPerSec: 10_000, workingSetPages: 0, seed: 5 } });
    vm.setThrottle(50);
    expect(measure(vm, clock).writes).toBe(6000);
    vm.setThrottle(90);
    expect(measure(vm, clock).writes).toBe(1200);
  });

  it('the rate does not depend on when the ticks come (the tick period sets only the granularity)', () => {
    const rate = 7777; // 38.885 writes per 5 ms tick: the fractions carry over
    const clock = new ManualClock();
    const vm = makeVm({ clock, memoryMib: 64, workload: { kind: 'uniform', dirtyRatePagesPerSec: rate, workingSetPages: 0, seed: 5 } });
    vm.start();
    let elapsed = 0;
    let x = 12345;
    while (elapsed < WINDOW_MS) {
      x = (x * 1103515245 + 12345) % 2147483648; // a fixed jitter of 1..20 ms per tick
      const dt = 1 + (x % 20);
      clock.skip(dt);
      clock.fire();
      elapsed += dt;
    }
    expect(Math.abs(vm.writesTotal - (rate * elapsed) / 1000)).toBeLessThan(1);
  });
});
