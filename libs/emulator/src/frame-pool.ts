import { InvalidArgumentError, InvalidFrameError } from './errors.js';

/** Guest page and host frame size in bytes. */
export const PAGE_SIZE = 4096;
/** 32-bit words per page. */
export const PAGE_WORDS = PAGE_SIZE / 4;

const DEFAULT_SLAB_FRAMES = 256; // 1 MiB slabs: small enough that freed memory really returns

/** Free frames set aside by FramePool.reserve(); release() hands back what was not allocated. */
export interface FrameReservation {
  /** Frames asked for. */
  readonly frames: number;
  /** Reserved frames not yet consumed by an allocation (an estimate when several VMs allocate at once). */
  readonly remaining: number;
  /** Ends the reservation: slabs left entirely free are dropped again. Idempotent. */
  release(): void;
}

/**
 * Host frames for every VM of an agent, like the host's physical memory.
 *
 * Frames live in slabs (one ArrayBuffer of `slabFrames` frames each). Refcounts, the free lists and the
 * per-frame hash cache are typed arrays indexed by frame number (frame = slab * slabFrames + index), so
 * the pool holds no per-frame objects. A slab whose frames are all free is dropped, so that freeing
 * frames (a stopped VM, KSM merging) returns real memory; allocation prefers the lowest slab with a
 * free frame to keep slabs dense and let the high ones empty out.
 */
export class FramePool {
  readonly slabFrames: number;
  private slabs: (Uint8Array | null)[] = [];
  private slabWordViews: (Uint32Array | null)[] = [];
  private slabFree = new Int32Array(0); // free frames per live slab
  private slabHead = new Int32Array(0); // first free frame of each slab, -1 if none
  private refs = new Int32Array(0); // refcount per frame; 0 = free
  private nextFree = new Int32Array(0); // free-list link per frame, -1 = end
  // xxh64 of each frame's content, cached for digest(); invalidated on every write.
  private hashLoArr = new Uint32Array(0);
  private hashHiArr = new Uint32Array(0);
  private hashOk = new Uint8Array(0);
  private inUse = 0;
  private live = 0;
  private dropped = 0; // null entries in `slabs` below its length
  private lowestFreeHint = 0;
  // Free frames kept (pre-faulted) for reservations: empty slabs are not dropped below this.
  private reservedFree = 0;
  private allocations = 0; // every allocate() ever: reservations measure their consumption by it

  constructor(opts: { slabFrames?: number } = {}) {
    const slabFrames = opts.slabFrames ?? DEFAULT_SLAB_FRAMES;
    if (!Number.isInteger(slabFrames) || slabFrames < 1 || slabFrames > 65536) {
      throw new InvalidArgumentError('slabFrames', `must be an integer in 1..65536, got ${slabFrames}`);
    }
    this.slabFrames = slabFrames;
  }

  /** Frames holding data (a frame shared by several pages counts once). */
  get framesInUse(): number {
    return this.inUse;
  }

  /** framesInUse * PAGE_SIZE. */
  get bytesInUse(): number {
    return this.inUse * PAGE_SIZE;
  }

  /** Slabs currently allocated (ArrayBuffers alive). */
  get slabsLive(): number {
    return this.live;
  }

  /** Bytes of host memory the slabs really occupy (slabsLive * slabFrames * PAGE_SIZE). */
  get bytesReserved(): number {
    return this.live * this.slabFrames * PAGE_SIZE;
  }

  refCount(frame: number): number {
    return frame >= 0 && frame < this.refs.length ? this.refs[frame] : 0;
  }

  /** A 4 KiB view into the frame's storage, no copy. Write only through GuestMemory (it keeps COW, dirty logs and hashes right). */
  view(frame: number): Uint8Array {
    this.assertInUse(frame);
    const off = (frame % this.slabFrames) * PAGE_SIZE;
    return this.slabBytes(frame).subarray(off, off + PAGE_SIZE);
  }

  /** The whole slab holding `frame` (use with frameByteOffset for zero-allocation access). */
  slabBytes(frame: number): Uint8Array {
    return this.slabs[(frame / this.slabFrames) | 0] as Uint8Array;
  }

  /** The slab holding `frame` as 32-bit words (index frameWordOffset(frame) + word). */
  slabWords(frame: number): Uint32Array {
    return this.slabWordViews[(frame / this.slabFrames) | 0] as Uint32Array;
  }

  frameByteOffset(frame: number): number {
    return (frame % this.slabFrames) * PAGE_SIZE;
  }

  frameWordOffset(frame: number): number {
    return (frame % this.slabFrames) * PAGE_WORDS;
  }

  /** A frame with refcount 1; zero-filled unless `zero` is false (the caller overwrites all of it). */
  allocate(zero = true): number {
    const slab = this.slabWithFreeFrame();
    const frame = this.slabHead[slab];
    this.slabHead[slab] = this.nextFree[frame];
    this.slabFree[slab]--;
    this.refs[frame] = 1;
    this.hashOk[frame] = 0;
    this.inUse++;
    this.allocations++;
    if (this.reservedFree > 0) this.reservedFree--;
    if (zero) {
      const off = (frame % this.slabFrames) * PAGE_WORDS;
      (this.slabWordViews[slab] as Uint32Array).fill(0, off, off + PAGE_WORDS);
    }
    return frame;
  }

  /** One more page maps this frame (KSM sharing). */
  incRef(frame: number): void {
    this.assertInUse(frame);
    this.refs[frame]++;
  }

  /** One page fewer maps this frame; at zero the frame is freed (and its slab dropped once empty). */
  decRef(frame: number): void {
    this.assertInUse(frame);
    if (--this.refs[frame] > 0) return;
    const slab = (frame / this.slabFrames) | 0;
    this.nextFree[frame] = this.slabHead[slab];
    this.slabHead[slab] = frame;
    this.hashOk[frame] = 0;
    this.inUse--;
    if (++this.slabFree[slab] === this.slabFrames && this.freeFramesLive() - this.slabFrames >= this.reservedFree) {
      this.dropSlab(slab);
    } else if (slab < this.lowestFreeHint) this.lowestFreeHint = slab;
  }

  /**
   * Makes `frames` free frames ready ahead of a bulk fill (an incoming migration: QEMU's -mem-prealloc):
   * adds slabs and touches every page of them, so that the host's first-touch page faults happen now
   * rather than on the data path. Until the reservation is released or its frames are allocated, empty
   * slabs are not dropped below the reserved count; everything else (KSM returning memory) is unchanged.
   * Any allocation consumes reserved frames, whichever VM makes it.
   */
  reserve(frames: number): FrameReservation {
    if (!Number.isInteger(frames) || frames < 0) throw new InvalidArgumentError('frames', `must be a non-negative integer, got ${frames}`);
    this.reservedFree += frames;
    const missing = this.reservedFree - this.freeFramesLive();
    for (let n = Math.ceil(Math.max(0, missing) / this.slabFrames); n > 0; n--) {
      const slot = this.dropped > 0 ? this.slabs.indexOf(null) : this.slabs.length;
      this.createSlab(slot);
      const words = this.slabWordViews[slot] as Uint32Array;
      for (let w = 0; w < words.length; w += PAGE_WORDS) words[w] = 0; // a write faults the page in
      if (slot < this.lowestFreeHint) this.lowestFreeHint = slot;
    }
    const startAllocations = this.allocations;
    let released = false;
    const remaining = () => (released ? 0 : Math.max(0, frames - (this.allocations - startAllocations)));
    return {
      frames,
      get remaining() {
        return remaining();
      },
      release: () => {
        if (released) return;
        this.reservedFree = Math.max(0, this.reservedFree - remaining());
        released = true;
        this.dropExcessEmptySlabs();
      },
    };
  }

  /** Free frames currently reserved (kept in live slabs). */
  get framesReserved(): number {
    return this.reservedFree;
  }

  private freeFramesLive(): number {
    return this.live * this.slabFrames - this.inUse;
  }

  private dropExcessEmptySlabs(): void {
    for (let s = this.slabs.length - 1; s >= 0; s--) {
      if (this.slabs[s] === null || this.slabFree[s] !== this.slabFrames) continue;
      if (this.freeFramesLive() - this.slabFrames < this.reservedFree) return;
      this.dropSlab(s);
    }
  }

  /** Copies the content of frame `src` into frame `dst` (whose cached hash becomes `src`'s, if known). */
  copyFrame(src: number, dst: number): void {
    this.assertInUse(src);
    this.assertInUse(dst);
    const so = (src % this.slabFrames) * PAGE_SIZE;
    this.slabBytes(dst).set(this.slabBytes(src).subarray(so, so + PAGE_SIZE), this.frameByteOffset(dst));
    this.hashOk[dst] = this.hashOk[src];
    this.hashLoArr[dst] = this.hashLoArr[src];
    this.hashHiArr[dst] = this.hashHiArr[src];
  }

  /** Marks the frame's cached hash stale; GuestMemory calls it on every write. */
  invalidateHash(frame: number): void {
    this.hashOk[frame] = 0;
  }

  /** The cached hash of a frame: true and `out[0..1]` = lo, hi when valid. */
  cachedHash(frame: number, out: Uint32Array): boolean {
    if (this.hashOk[frame] === 0) return false;
    out[0] = this.hashLoArr[frame];
    out[1] = this.hashHiArr[frame];
    return true;
  }

  /** True when the frame's cached hash is valid (no copy-out, for hot loops). */
  hashValid(frame: number): boolean {
    return this.hashOk[frame] === 1;
  }

  storeHash(frame: number, lo: number, hi: number): void {
    this.hashLoArr[frame] = lo;
    this.hashHiArr[frame] = hi;
    this.hashOk[frame] = 1;
  }

  private assertInUse(frame: number): void {
    if (!(frame >= 0 && frame < this.refs.length && this.refs[frame] > 0)) throw new InvalidFrameError(frame);
  }

  private slabWithFreeFrame(): number {
    for (let s = this.lowestFreeHint; s < this.slabs.length; s++) {
      if (this.slabs[s] !== null && this.slabFree[s] > 0) {
        this.lowestFreeHint = s;
        return s;
      }
    }
    let slot = this.slabs.length;
    if (this.dropped > 0) slot = this.slabs.indexOf(null);
    this.createSlab(slot);
    this.lowestFreeHint = slot;
    return slot;
  }

  private createSlab(slot: number): void {
    if (slot === this.slabs.length) {
      this.growTo(slot + 1);
      this.slabs.push(null);
      this.slabWordViews.push(null);
    } else {
      this.dropped--;
    }
    const bytes = new Uint8Array(this.slabFrames * PAGE_SIZE);
    this.slabs[slot] = bytes;
    this.slabWordViews[slot] = new Uint32Array(bytes.buffer);
    const first = slot * this.slabFrames;
    for (let i = 0; i < this.slabFrames; i++) {
      this.nextFree[first + i] = i + 1 < this.slabFrames ? first + i + 1 : -1;
      this.refs[first + i] = 0;
    }
    this.slabHead[slot] = first;
    this.slabFree[slot] = this.slabFrames;
    this.live++;
  }

  private dropSlab(slab: number): void {
    this.slabs[slab] = null;
    this.slabWordViews[slab] = null;
    this.slabHead[slab] = -1;
    this.slabFree[slab] = 0;
    this.live--;
    this.dropped++;
  }

  /** Grows the per-slab and per-frame arrays (doubling) to hold `slabCount` slabs. */
  private growTo(slabCount: number): void {
    if (slabCount <= this.slabFree.length) return;
    const slabCap = Math.max(slabCount, this.slabFree.length * 2, 8);
    const frameCap = slabCap * this.slabFrames;
    this.slabFree = grow(this.slabFree, slabCap);
    this.slabHead = grow(this.slabHead, slabCap);
    this.refs = grow(this.refs, frameCap);
    this.nextFree = grow(this.nextFree, frameCap);
    this.hashLoArr = grow(this.hashLoArr, frameCap);
    this.hashHiArr = grow(this.hashHiArr, frameCap);
    this.hashOk = grow(this.hashOk, frameCap);
  }
}

function grow<T extends Int32Array | Uint32Array | Uint8Array>(a: T, length: number): T {
  const b = new (a.constructor as new (n: number) => T)(length);
  b.set(a);
  return b;
}
