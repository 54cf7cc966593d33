export { PAGE_SIZE, PAGE_WORDS, FramePool, type FrameReservation } from './frame-pool.js';
export {
  initHashing,
  pageHash,
  zeroPageHash,
  hashToHex,
  digestPages,
  cacheFrameHash,
  framesHashedTotal,
  FlatMemoryDigest,
} from './digest.js';
export { GuestMemory } from './guest-memory.js';
export { DirtyLog, type DirtyLogOwner } from './dirty-log.js';
export { bitmapWords, createBitmap, testBit, setBit, popcount, nextSetBit, setAll } from './bitmap.js';
export { encodeBitmapRle, decodeBitmapRle } from './bitmap-rle.js';
export {
  IMAGES,
  IMAGE_NAME_PATTERN,
  DERIVED_IMAGE_MIB,
  getImage,
  imageTemplate,
  loadImage,
  setImageTemplateCacheBytes,
  type ImageSpec,
  type ImageTemplate,
} from './images.js';
export {
  VcpuWorkload,
  WORKLOAD_KINDS,
  MAX_BACKLOG_SEC,
  MAX_DIRTY_RATE_PAGES_PER_SEC,
  validateWorkloadConfig,
  type WorkloadKind,
  type WorkloadConfig,
} from './vcpu-workload.js';
export { Xoshiro128, mix32, hashString32 } from './prng.js';
export {
  encodeDeviceState,
  decodeDeviceState,
  DEVICE_STATE_VERSION,
  VCPU_REGISTERS,
  type DeviceState,
} from './device-state.js';
export { VirtualMachine, WORKLOAD_TICK_MS, type VmState, type VirtualMachineOptions } from './virtual-machine.js';
export * from './errors.js';
