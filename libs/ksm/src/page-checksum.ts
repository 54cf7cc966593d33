import { PAGE_SIZE, pageHash, zeroPageHash } from '@vmm/emulator';
import type { FrameChecksum, KsmFramePool } from './ksm-memory.port.js';

const cached = new Uint32Array(2);
const LO_MASK = 0xffffffffn;

/**
 * The default checksum: the low 32 bits of the page's xxh64, as Linux's calc_checksum keeps 32 bits of
 * xxhash. The emulator caches each frame's xxh64 until the frame is written (for its digest), so a page
 * unchanged since its last hash costs a cache read instead of 4 KiB of hashing; a computed hash is
 * stored back, which the next digest() reuses. Requires `await initHashing()`.
 */
export const xxhChecksum: FrameChecksum = (pool: KsmFramePool, frame: number): number => {
  if (pool.cachedHash !== undefined && pool.cachedHash(frame, cached)) return cached[0] | 0;
  const off = pool.frameByteOffset(frame);
  const h = pageHash(pool.slabBytes(frame).subarray(off, off + PAGE_SIZE));
  const lo = Number(h & LO_MASK);
  pool.storeHash?.(frame, lo, Number(h >> 32n));
  return lo | 0;
};

/** The checksum xxhChecksum gives an all-zero page (use_zero_pages compares against it first). */
export function zeroChecksum(): number {
  return Number(zeroPageHash() & LO_MASK) | 0;
}

const ZERO_PAGE = new Uint8Array(PAGE_SIZE);
const compare = Buffer.prototype.compare;

/** True if two frames hold the same 4 KiB (memcmp in native code, no view allocated). */
export function framesEqual(pool: KsmFramePool, a: number, b: number): boolean {
  const oa = pool.frameByteOffset(a);
  const ob = pool.frameByteOffset(b);
  return compare.call(pool.slabBytes(a), pool.slabBytes(b), ob, ob + PAGE_SIZE, oa, oa + PAGE_SIZE) === 0;
}

/** True if the frame is all zero bytes. */
export function frameIsZero(pool: KsmFramePool, frame: number): boolean {
  const o = pool.frameByteOffset(frame);
  return compare.call(pool.slabBytes(frame), ZERO_PAGE, 0, PAGE_SIZE, o, o + PAGE_SIZE) === 0;
}
