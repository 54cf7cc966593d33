import { CorruptStateError } from './errors.js';
import { WORKLOAD_KINDS, type WorkloadConfig } from './vcpu-workload.js';

/** Registers kept per fake vCPU (rip, rsp, rax, rflags), each 64 bits as lo/hi words. */
export const VCPU_REGISTERS = 4;
const REG_WORDS = VCPU_REGISTERS * 2;

/** Everything of a VM besides memory that a migration must carry: the workload's position and the vCPUs. */
export interface DeviceState {
  pageCount: number;
  workload: WorkloadConfig;
  /** The resolved working set in pages. */
  workingSetPages: number;
  salt: number;
  /** xoshiro128** state, 4 words. */
  rngState: Uint32Array;
  writes: number;
  sweepPage: number;
  throttlePercent: number;
  vcpus: number;
  /** vcpus × VCPU_REGISTERS × 2 words. */
  registers: Uint32Array;
}

const MAGIC = 0x53444d56; // 'VMDS' little-endian
export const DEVICE_STATE_VERSION = 1;
const FIXED_BYTES = 4 + 2 + 1 + 1 + 8 + 4 + 8 + 4 + 4 + 16 + 8 + 4 + 4 + 8 + 2;

/**
 * Layout (little-endian), version 1:
 * magic u32 'VMDS' | version u16 | kind u8 | reserved u8 | rate f64 | configured working set u32 |
 * seed f64 | resolved working set u32 | salt u32 | rng 4×u32 | writes f64 | sweepPage u32 |
 * pageCount u32 | throttle f64 | vcpus u16 | registers vcpus×8×u32
 */
export function encodeDeviceState(s: DeviceState): Uint8Array {
  const bytes = new Uint8Array(FIXED_BYTES + s.vcpus * REG_WORDS * 4);
  const c = new Cursor(bytes);
  c.u32(MAGIC);
  c.u16(DEVICE_STATE_VERSION);
  c.u8(WORKLOAD_KINDS.indexOf(s.workload.kind));
  c.u8(0);
  c.f64(s.workload.dirtyRatePagesPerSec);
  c.u32(s.workload.workingSetPages);
  c.f64(s.workload.seed);
  c.u32(s.workingSetPages);
  c.u32(s.salt);
  for (let i = 0; i < 4; i++) c.u32(s.rngState[i]);
  c.f64(s.writes);
  c.u32(s.sweepPage);
  c.u32(s.pageCount);
  c.f64(s.throttlePercent);
  c.u16(s.vcpus);
  for (let i = 0; i < s.vcpus * REG_WORDS; i++) c.u32(s.registers[i]);
  return bytes;
}

/** Decodes and checks saved device state; throws CorruptStateError for anything malformed. */
export function decodeDeviceState(bytes: Uint8Array): DeviceState {
  const bad = (detail: string) => new CorruptStateError('device state', detail);
  if (bytes.length < FIXED_BYTES) throw bad(`${bytes.length} bytes, need at least ${FIXED_BYTES}`);
  const c = new Cursor(bytes);
  if (c.readU32() !== MAGIC) throw bad('bad magic');
  const version = c.readU16();
  if (version !== DEVICE_STATE_VERSION) throw bad(`unsupported version ${version}`);
  const kind = WORKLOAD_KINDS[c.readU8()];
  c.readU8();
  if (kind === undefined) throw bad('unknown workload kind');
  const dirtyRatePagesPerSec = c.readF64();
  const configuredWs = c.readU32();
  const seed = c.readF64();
  const workingSetPages = c.readU32();
  const salt = c.readU32();
  const rngState = new Uint32Array(4);
  for (let i = 0; i < 4; i++) rngState[i] = c.readU32();
  const writes = c.readF64();
  const sweepPage = c.readU32();
  const pageCount = c.readU32();
  const throttlePercent = c.readF64();
  const vcpus = c.readU16();
  if (bytes.length !== FIXED_BYTES + vcpus * REG_WORDS * 4) throw bad(`length ${bytes.length} does not match ${vcpus} vCPUs`);
  const registers = new Uint32Array(vcpus * REG_WORDS);
  for (let i = 0; i < registers.length; i++) registers[i] = c.readU32();
  if (!Number.isFinite(dirtyRatePagesPerSec) || dirtyRatePagesPerSec < 0) throw bad('bad dirty rate');
  if (!Number.isSafeInteger(writes) || writes < 0) throw bad('bad write counter');
  if (!Number.isSafeInteger(seed)) throw bad('bad seed');
  if (workingSetPages > pageCount || configuredWs > pageCount || (workingSetPages > 0 && sweepPage >= workingSetPages)) {
    throw bad('working set outside memory');
  }
  if (!(throttlePercent >= 0 && throttlePercent <= 99)) throw bad('bad throttle');
  return {
    pageCount,
    workload: { kind, dirtyRatePagesPerSec, workingSetPages: configuredWs, seed },
    workingSetPages,
    salt,
    rngState,
    writes,
    sweepPage,
    throttlePercent,
    vcpus,
    registers,
  };
}

/** Little-endian fields in order over a byte array. */
class Cursor {
  private readonly view: DataView;
  private o = 0;

  constructor(bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  u8(x: number): void {
    this.view.setUint8(this.o, x);
    this.o += 1;
  }
  u16(x: number): void {
    this.view.setUint16(this.o, x, true);
    this.o += 2;
  }
  u32(x: number): void {
    this.view.setUint32(this.o, x, true);
    this.o += 4;
  }
  f64(x: number): void {
    this.view.setFloat64(this.o, x, true);
    this.o += 8;
  }
  readU8(): number {
    return this.view.getUint8(this.o++);
  }
  readU16(): number {
    const x = this.view.getUint16(this.o, true);
    this.o += 2;
    return x;
  }
  readU32(): number {
    const x = this.view.getUint32(this.o, true);
    this.o += 4;
    return x;
  }
  readF64(): number {
    const x = this.view.getFloat64(this.o, true);
    this.o += 8;
    return x;
  }
}
