/**
 * What the scanner needs from the emulator, and nothing more. `GuestMemory` and `FramePool` of
 * `@vmm/emulator` satisfy these interfaces structurally; tests may pass fakes.
 */

/** Host frames: refcounts, zero-copy access for hashing and byte comparison, a fresh copy for unmerging. */
export interface KsmFramePool {
  refCount(frame: number): number;
  /** The slab holding `frame`; with frameByteOffset it reads a frame without allocating a view. */
  slabBytes(frame: number): Uint8Array;
  frameByteOffset(frame: number): number;
  /** A new private frame (refcount 1); `zero=false`: the caller overwrites all of it. */
  allocate(zero?: boolean): number;
  copyFrame(src: number, dst: number): void;
  decRef(frame: number): void;
  /** The frame's cached content hash (xxh64 lo, hi) if no write happened since it was stored. */
  cachedHash?(frame: number, out: Uint32Array): boolean;
  storeHash?(frame: number, lo: number, hi: number): void;
}

/** One mergeable area (a VM's guest memory): the madvise(MADV_MERGEABLE) range of Linux. */
export interface KsmMemory {
  readonly pageCount: number;
  readonly pool: KsmFramePool;
  /** -1 for a zero page nothing backs (Linux: a page never faulted in, which ksmd skips). */
  frameOf(page: number): number;
  /** Point the page at `frame` (refcount + 1) and drop its old frame; not a guest write. */
  mapShared(page: number, frame: number): void;
  /** Unback the page (use_zero_pages: merged with the zero page). */
  zeroPage(page: number): void;
}

/**
 * A 32-bit content checksum of a frame (Linux: calc_checksum, xxhash of the page truncated to 32 bits).
 * Used as the key of both trees; equal keys are always confirmed by a byte comparison before a merge.
 */
export type FrameChecksum = (pool: KsmFramePool, frame: number) => number;
