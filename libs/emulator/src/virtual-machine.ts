import { performance } from 'node:perf_hooks';
import { decodeDeviceState, encodeDeviceState, VCPU_REGISTERS } from './device-state.js';
import { InvalidArgumentError, InvalidVmStateError, UnknownImageError } from './errors.js';
import type { FramePool } from './frame-pool.js';
import { GuestMemory } from './guest-memory.js';
import { getImage, loadImage } from './images.js';
import { hashString32, mix32 } from './prng.js';
import { VcpuWorkload, type WorkloadConfig } from './vcpu-workload.js';

/**
 * paused → running (start, resume) → paused (pause); paused or running → stopped (stop, final).
 * A VM is created paused; start() runs it. Asking for the current state again is a no-op.
 */
export type VmState = 'running' | 'paused' | 'stopped';

const ALLOWED: Record<VmState, readonly VmState[]> = {
  paused: ['running', 'stopped'],
  running: ['paused', 'stopped'],
  stopped: [],
};

export interface VirtualMachineOptions {
  id: string;
  pool: FramePool;
  memoryMib: number;
  vcpus: number;
  image: string;
  workload: WorkloadConfig;
  /** Saved device state to start from (as loadDeviceState). */
  deviceState?: Uint8Array;
  /** A migration target: paused, memory empty, no image loaded. */
  incoming?: boolean;
  /**
   * The time source and tick timer the workload is paced by; the process's (performance.now, an unref'd
   * setInterval) when absent. Tests pass a manual clock to advance time by hand and assert exact counts.
   */
  clock?: VmClock;
}

/**
 * What a VM reads the time from and runs its workload ticks on. The pacing depends only on now(): each
 * tick makes the writes due since the previous one, so how regularly the timer fires sets the granularity,
 * not the rate. clearInterval is given back whatever setInterval returned.
 */
export interface VmClock {
  /** Monotonic milliseconds. */
  now(): number;
  /** Calls `tick` every `periodMs` until clearInterval(handle); must not keep the process alive by itself. */
  setInterval(tick: () => void, periodMs: number): unknown;
  clearInterval(handle: unknown): void;
}

/** The production clock: performance.now() and an unref'd setInterval (a VM alone does not keep the process alive). */
export const SYSTEM_VM_CLOCK: VmClock = Object.freeze({
  now: () => performance.now(),
  setInterval: (tick: () => void, periodMs: number) => setInterval(tick, periodMs).unref(),
  clearInterval: (handle: unknown) => clearInterval(handle as NodeJS.Timeout),
});

/** Pacing timer period: writes due are computed from elapsed time, so this only sets the granularity. */
export const WORKLOAD_TICK_MS = 5;
const PAGES_PER_MIB = 256;
const MAX_VCPUS = 4096;

/** An emulated VM: guest memory, a vCPU workload paced by the clock, fake vCPU registers, a lifecycle. */
export class VirtualMachine {
  readonly id: string;
  readonly memory: GuestMemory;
  readonly memoryMib: number;
  readonly vcpus: number;
  readonly image: string;
  private current: VmState = 'paused';
  private load: VcpuWorkload;
  private readonly registers: Uint32Array;
  private readonly clock: VmClock;
  private timer: unknown = undefined; // the clock's interval handle, set exactly while running

  constructor(opts: VirtualMachineOptions) {
    if (typeof opts.id !== 'string' || opts.id.length === 0) throw new InvalidArgumentError('id', 'must be a non-empty string');
    if (!Number.isInteger(opts.memoryMib) || opts.memoryMib <= 0 || opts.memoryMib > 8 * 1024 * 1024) {
      throw new InvalidArgumentError('memoryMib', `must be a positive integer (≤ 8 TiB), got ${opts.memoryMib}`);
    }
    if (!Number.isInteger(opts.vcpus) || opts.vcpus <= 0 || opts.vcpus > MAX_VCPUS) {
      throw new InvalidArgumentError('vcpus', `must be an integer in 1..${MAX_VCPUS}, got ${opts.vcpus}`);
    }
    const image = getImage(opts.image);
    if (!image) throw new UnknownImageError(opts.image);
    const pageCount = opts.memoryMib * PAGES_PER_MIB;
    if (image.pages > pageCount) {
      throw new InvalidArgumentError('memoryMib', `image ${image.name} needs ${image.pages / PAGES_PER_MIB} MiB, VM has ${opts.memoryMib}`);
    }
    this.id = opts.id;
    this.memoryMib = opts.memoryMib;
    this.vcpus = opts.vcpus;
    this.image = image.name;
    this.clock = opts.clock ?? SYSTEM_VM_CLOCK;
    this.memory = new GuestMemory(opts.pool, pageCount);
    this.load = new VcpuWorkload(this.memory, opts.workload, hashString32(opts.id));
    this.registers = new Uint32Array(opts.vcpus * VCPU_REGISTERS * 2);
    this.updateRegisters();
    try {
      if (opts.deviceState) this.loadDeviceState(opts.deviceState);
      if (!opts.incoming) loadImage(this.memory, image.name);
    } catch (err) {
      this.memory.release(); // leave no frames behind a failed construction
      throw err;
    }
  }

  get state(): VmState {
    return this.current;
  }

  /** The running workload (for tests and benchmarks: step(), config, position). */
  get workload(): VcpuWorkload {
    return this.load;
  }

  get throttlePercent(): number {
    return this.load.throttlePercent;
  }

  /** Workload page writes since the VM was created (continues across migration through device state). */
  get writesTotal(): number {
    return this.load.writes;
  }

  /** Fake vCPU registers (rip, rsp, rax, rflags per vCPU, lo/hi words), a copy. */
  get vcpuRegisters(): Uint32Array {
    return this.registers.slice();
  }

  start(): void {
    this.transition('running', 'start');
  }

  resume(): void {
    this.transition('running', 'resume');
  }

  /** Stops the vCPUs: no write happens after pause() returns. Writes due until now are made first. */
  pause(): void {
    this.transition('paused', 'pause');
  }

  /** Stops the VM for good and frees its memory. */
  stop(): void {
    this.transition('stopped', 'stop');
  }

  /** Auto-converge: the vCPU runs (100 - percent)% of the time. */
  setThrottle(percent: number): void {
    this.load.setThrottle(percent);
  }

  /** Replaces the workload (e.g. a new dirty rate); the write counter, throttle and value salt carry over. */
  setWorkload(config: WorkloadConfig): void {
    this.assertNot('stopped', 'change the workload');
    const next = new VcpuWorkload(this.memory, config, this.load.salt);
    next.writes = this.load.writes;
    next.setThrottle(this.load.throttlePercent);
    next.resetClock(this.clock.now());
    this.load = next;
  }

  saveDeviceState(): Uint8Array {
    const w = this.load;
    return encodeDeviceState({
      pageCount: this.memory.pageCount,
      workload: w.config,
      workingSetPages: w.workingSetPages,
      salt: w.salt,
      rngState: w.rng.state,
      writes: w.writes,
      sweepPage: w.sweepPage,
      throttlePercent: w.throttlePercent,
      vcpus: this.vcpus,
      registers: this.registers,
    });
  }

  /** Restores the workload position and registers saved by saveDeviceState; only while paused. */
  loadDeviceState(bytes: Uint8Array): void {
    if (this.current !== 'paused') throw new InvalidVmStateError(this.id, this.current, 'load device state');
    const s = decodeDeviceState(bytes);
    if (s.pageCount !== this.memory.pageCount) {
      throw new InvalidArgumentError('deviceState', `saved for ${s.pageCount} pages, VM has ${this.memory.pageCount}`);
    }
    if (s.vcpus !== this.vcpus) throw new InvalidArgumentError('deviceState', `saved for ${s.vcpus} vCPUs, VM has ${this.vcpus}`);
    const w = new VcpuWorkload(this.memory, s.workload, s.salt);
    w.rng.restore(s.rngState);
    w.writes = s.writes;
    w.sweepPage = s.sweepPage;
    w.setThrottle(s.throttlePercent);
    this.load = w;
    this.registers.set(s.registers);
  }

  private transition(to: VmState, operation: string): void {
    if (this.current === to) return;
    if (!ALLOWED[this.current].includes(to)) throw new InvalidVmStateError(this.id, this.current, operation);
    const from = this.current;
    if (from === 'running') {
      this.tick(); // the writes due up to this instant happen before the vCPUs stop
      this.stopTimer();
    }
    this.current = to;
    if (to === 'running') {
      this.load.resetClock(this.clock.now());
      this.timer = this.clock.setInterval(() => this.tick(), WORKLOAD_TICK_MS);
    } else if (to === 'stopped') {
      this.memory.release();
    }
  }

  private tick(): void {
    if (this.current !== 'running') return;
    // The hot path (every WORKLOAD_TICK_MS per running VM): one clock read, no allocation.
    if (this.load.advance(this.clock.now()) > 0) this.updateRegisters();
  }

  /** Only called when leaving 'running', so the handle is the live one (a clock may use any value, 0 included). */
  private stopTimer(): void {
    this.clock.clearInterval(this.timer);
    this.timer = undefined;
  }

  private assertNot(state: VmState, operation: string): void {
    if (this.current === state) throw new InvalidVmStateError(this.id, this.current, operation);
  }

  /** Fake but deterministic register contents: a function of the write counter, so they survive migration as is. */
  private updateRegisters(): void {
    const n = this.load.writes;
    for (let cpu = 0; cpu < this.vcpus; cpu++) {
      const r = cpu * VCPU_REGISTERS * 2;
      this.registers[r] = (0x81000000 + ((n * 16 + cpu * 0x40) & 0xffffff)) >>> 0; // rip
      this.registers[r + 1] = 0xffffffff;
      this.registers[r + 2] = (0xffffc000 - cpu * 0x4000) >>> 0; // rsp
      this.registers[r + 3] = 0xffffc900;
      this.registers[r + 4] = mix32((n + cpu) >>> 0); // rax
      this.registers[r + 5] = 0;
      this.registers[r + 6] = 0x202; // rflags: IF
      this.registers[r + 7] = 0;
    }
  }
}
