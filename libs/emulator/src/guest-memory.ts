import { cacheFrameHash, digestPages } from './digest.js';
import { DirtyLog, type DirtyLogOwner } from './dirty-log.js';
import { InvalidArgumentError, MemoryReleasedError, OutOfRangeError } from './errors.js';
import { PAGE_SIZE, PAGE_WORDS, type FramePool } from './frame-pool.js';
import { Xoshiro128 } from './prng.js';

/**
 * A VM's guest-physical memory: page → host frame, -1 for a zero page that nothing backs.
 *
 * Untouched pages cost nothing. A frame shared with other pages (refcount > 1, merged by KSM through
 * mapShared) is copied before a write, so the write breaks only this page's share, as Linux does.
 * Every write sets the page's bit in every enabled dirty log. Hot paths allocate nothing.
 */
export class GuestMemory implements DirtyLogOwner {
  readonly pageCount: number;
  private readonly map: Int32Array;
  private resident = 0;
  private logs: DirtyLog[] = [];
  private logBits: Uint32Array[] = []; // the enabled logs' bitmaps, for the write path
  private released = false;

  constructor(
    readonly pool: FramePool,
    pageCount: number,
  ) {
    if (!Number.isInteger(pageCount) || pageCount < 0 || pageCount > 0x7fffffff) {
      throw new InvalidArgumentError('pageCount', `must be an integer in 0..2^31-1, got ${pageCount}`);
    }
    this.pageCount = pageCount;
    this.map = new Int32Array(pageCount).fill(-1);
  }

  /** Pages backed by a frame (a page sharing a frame counts too). */
  get residentPages(): number {
    return this.resident;
  }

  isZero(page: number): boolean {
    this.checkPage(page);
    return this.map[page] === -1;
  }

  frameOf(page: number): number {
    this.checkPage(page);
    return this.map[page];
  }

  /** A read-only (by convention) view of the page's frame, or null for a zero page. */
  pageView(page: number): Uint8Array | null {
    this.checkPage(page);
    const frame = this.map[page];
    return frame === -1 ? null : this.pool.view(frame);
  }

  /** Copies the page into `out` at `outOffset`; false (and zero-filled) for a zero page. */
  readPage(page: number, out: Uint8Array, outOffset = 0): boolean {
    this.checkPage(page);
    this.checkSpan('out', out, outOffset);
    const frame = this.map[page];
    if (frame === -1) {
      out.fill(0, outOffset, outOffset + PAGE_SIZE);
      return false;
    }
    const off = this.pool.frameByteOffset(frame);
    out.set(this.pool.slabBytes(frame).subarray(off, off + PAGE_SIZE), outOffset);
    return true;
  }

  /** Overwrites the whole page from `src` at `srcOffset`; all-zero content unbacks the page. */
  writePage(page: number, src: Uint8Array, srcOffset = 0): void {
    this.checkLive();
    this.checkPage(page);
    this.checkSpan('src', src, srcOffset);
    if (isZeroSpan(src, srcOffset)) {
      this.unback(page);
      this.markDirty(page);
      return;
    }
    const frame = this.frameToOverwrite(page);
    const bytes = this.pool.slabBytes(frame);
    const off = this.pool.frameByteOffset(frame);
    if (srcOffset === 0 && src.length === PAGE_SIZE) bytes.set(src, off);
    else bytes.set(src.subarray(srcOffset, srcOffset + PAGE_SIZE), off);
    this.pool.invalidateHash(frame);
    this.markDirty(page);
  }

  /**
   * Bulk writePage for a batch (the migration receiver's path): page `pages[i]` gets the 4 KiB at
   * `src[srcOffset + i * strideBytes]`, for i < count. Same semantics as `count` writePage calls (zero
   * content unbacks, shared frames are not written through, dirty logs marked), but checks the whole
   * batch up front, so that it either writes every page or throws before writing any, and creates no
   * per-page objects besides the copy itself. A non-zero first word proves a page non-zero, so random or
   * real data costs one word read for the zero test.
   */
  writePagesFrom(pages: Uint32Array, count: number, src: Uint8Array, srcOffset = 0, strideBytes: number = PAGE_SIZE): void {
    this.checkLive();
    if (!Number.isInteger(count) || count < 0 || count > pages.length) throw new OutOfRangeError('count', count, pages.length + 1);
    if (!Number.isInteger(strideBytes) || strideBytes < PAGE_SIZE) throw new InvalidArgumentError('strideBytes', `must be an integer ≥ ${PAGE_SIZE}, got ${strideBytes}`);
    if (count === 0) return;
    this.checkSpan('src', src, srcOffset + (count - 1) * strideBytes);
    if (!Number.isInteger(srcOffset)) throw new OutOfRangeError('src offset', srcOffset, src.length - PAGE_SIZE);
    this.checkPages(pages, count);
    const pool = this.pool;
    const aligned = ((src.byteOffset + srcOffset) & 3) === 0 && (strideBytes & 3) === 0;
    const words = aligned ? wordsOf(src) : null;
    // A plain Uint8Array over src's buffer: subarray of a Node Buffer builds a Buffer, several times dearer.
    const bytes = bytesOf(src);
    const base = src.byteOffset;
    // Pages whose source bytes and target frames both follow each other (a PAGE_RUN into freshly
    // allocated frames) are copied as one stretch: a typed-array view per page cost more than its copy.
    let stretchSlab: Uint8Array | null = null;
    let stretchDst = 0;
    let stretchSrc = 0;
    let stretchBytes = 0;
    let at = srcOffset;
    for (let i = 0; i < count; i++, at += strideBytes) {
      const page = pages[i]!;
      const nonZero = words !== null && words[(src.byteOffset + at) >>> 2] !== 0;
      if (!nonZero && isZeroSpan(src, at)) {
        this.unback(page);
        this.markDirty(page);
        continue;
      }
      const frame = this.frameToOverwrite(page);
      const slab = pool.slabBytes(frame);
      const dst = pool.frameByteOffset(frame);
      if (slab === stretchSlab && dst === stretchDst + stretchBytes && base + at === stretchSrc + stretchBytes) {
        stretchBytes += PAGE_SIZE;
      } else {
        if (stretchSlab !== null) stretchSlab.set(new Uint8Array(bytes.buffer, stretchSrc, stretchBytes), stretchDst);
        stretchSlab = slab;
        stretchDst = dst;
        stretchSrc = base + at;
        stretchBytes = PAGE_SIZE;
      }
      pool.invalidateHash(frame);
      this.markDirty(page);
    }
    if (stretchSlab !== null) stretchSlab.set(new Uint8Array(bytes.buffer, stretchSrc, stretchBytes), stretchDst);
  }

  /**
   * Prepares `pages` for an in-place overwrite (the migration receiver lets the kernel read a PAGE_RUN's
   * data straight into their frames): maps a private frame to each page as a whole-page write does,
   * marks it dirty and invalidates its hash. Returns the first page's frame when the frames follow each
   * other in one slab (then `pool.slabBytes(frame)` from `pool.frameByteOffset(frame)` holds the pages
   * back to back), else -1; either way every page has its frame. Contents are undefined until all
   * bytes landed: then call finishOverwrite(pages). Checks every page before changing anything.
   */
  prepareOverwrite(pages: Uint32Array): number {
    this.checkLive();
    this.checkPages(pages, pages.length);
    const pool = this.pool;
    let first = -1;
    let consecutive = true;
    for (let i = 0; i < pages.length; i++) {
      const page = pages[i]!;
      const frame = this.frameToOverwrite(page);
      if (i === 0) first = frame;
      else if (frame !== first + i || frame % pool.slabFrames === 0) consecutive = false;
      pool.invalidateHash(frame);
      this.markDirty(page);
    }
    return consecutive ? first : -1;
  }

  /**
   * Ends an in-place overwrite (prepareOverwrite): invalidates each frame's hash again (a background
   * pass may have hashed it half-written) and unbacks the pages that came in all zeros.
   */
  finishOverwrite(pages: Uint32Array): void {
    this.checkLive();
    const pool = this.pool;
    this.checkPages(pages, pages.length);
    for (let i = 0; i < pages.length; i++) {
      const page = pages[i]!;
      const frame = this.map[page]!;
      if (frame === -1) continue;
      pool.invalidateHash(frame);
      const bytes = pool.slabBytes(frame);
      const off = pool.frameByteOffset(frame);
      if (bytes[off] === 0 && isZeroSpan(bytes, off)) this.unback(page);
    }
  }

  /**
   * Makes the page zero and frees its frame (or drops its share of it). The page is marked dirty only if
   * its content changes: KSM's use_zero_pages merging of a page that already holds zeros is not a write.
   */
  zeroPage(page: number): void {
    this.checkLive();
    this.checkPage(page);
    const frame = this.map[page];
    if (frame === -1) return;
    const changed = !this.frameIsZero(frame);
    this.unback(page);
    if (changed) this.markDirty(page);
  }

  /**
   * An 8-byte guest store of (hi << 32 | lo) at `byteOffset` (a multiple of 8 below PAGE_SIZE), little-endian.
   * A zero page gets a fresh frame unless the store writes zero; a shared frame is copied first (COW).
   */
  writeWord(page: number, byteOffset: number, lo: number, hi: number): void {
    if (this.released) throw new MemoryReleasedError();
    if (!(page >= 0 && page < this.pageCount) || (page | 0) !== page) {
      throw new OutOfRangeError('page', page, this.pageCount);
    }
    if (!(byteOffset >= 0 && byteOffset < PAGE_SIZE) || (byteOffset & 7) !== 0) {
      throw new OutOfRangeError('byteOffset (multiple of 8)', byteOffset, PAGE_SIZE);
    }
    let frame = this.map[page];
    if (frame === -1) {
      if ((lo | hi) === 0) {
        this.markDirty(page);
        return;
      }
      frame = this.pool.allocate(true);
      this.map[page] = frame;
      this.resident++;
    } else if (this.pool.refCount(frame) > 1) {
      const copy = this.pool.allocate(false);
      this.pool.copyFrame(frame, copy);
      this.pool.decRef(frame);
      this.map[page] = frame = copy;
    }
    const words = this.pool.slabWords(frame);
    const w = this.pool.frameWordOffset(frame) + (byteOffset >>> 2);
    words[w] = lo;
    words[w + 1] = hi;
    this.pool.invalidateHash(frame);
    this.markDirty(page);
  }

  /** KSM merge: the page now maps `frame` (refcount + 1); its old frame loses a reference. Not a guest write. */
  mapShared(page: number, frame: number): void {
    this.checkLive();
    this.checkPage(page);
    const old = this.map[page];
    if (old === frame) return;
    this.pool.incRef(frame); // throws for a frame not in use, before anything changes
    this.map[page] = frame;
    if (old === -1) this.resident++;
    else this.pool.decRef(old);
  }

  /** A new dirty-memory client; it sees every write from now on. */
  createDirtyLog(): DirtyLog {
    this.checkLive();
    const log = new DirtyLog(this, this.pageCount);
    this.logs.push(log);
    this.logBits = this.logs.map((l) => l.bits);
    return log;
  }

  /** Called by DirtyLog.disable(). */
  detachDirtyLog(log: DirtyLog): void {
    this.logs = this.logs.filter((l) => l !== log);
    this.logBits = this.logs.map((l) => l.bits);
  }

  /** 16 hex chars identifying every page's content, in page order (see digest.ts). */
  digest(): string {
    return digestPages(this.pool, this.map);
  }

  /**
   * Hashes the page's frame now unless its cached hash is valid (a zero page has nothing to hash), so
   * that the next digest() reuses it. Call right after copying the page: its bytes are still in cache.
   * Needs initHashing() first.
   */
  cachePageHash(page: number): void {
    this.checkPage(page);
    const frame = this.map[page];
    if (frame !== -1) cacheFrameHash(this.pool, frame);
  }

  /** cachePageHash for `pages[0..count)` (the receiver's batch after writePagesFrom). */
  cachePageHashes(pages: Uint32Array, count: number): void {
    if (!Number.isInteger(count) || count < 0 || count > pages.length) throw new OutOfRangeError('count', count, pages.length + 1);
    const map = this.map;
    const pool = this.pool;
    for (let i = 0; i < count; i++) {
      const page = pages[i]!;
      if (page >= this.pageCount) throw new OutOfRangeError('page', page, this.pageCount);
      const frame = map[page]!;
      if (frame !== -1) cacheFrameHash(pool, frame);
    }
  }

  /** cachePageHash for pages [firstPage, firstPage + count) (a background pass over the memory). */
  cachePageHashRange(firstPage: number, count: number): void {
    this.checkRange(firstPage, count);
    const map = this.map;
    for (let page = firstPage; page < firstPage + count; page++) {
      const frame = map[page]!;
      if (frame !== -1) cacheFrameHash(this.pool, frame);
    }
  }

  /** Fills pages [firstPage, firstPage + count) with non-zero pseudo-random data from `seed` (marks them dirty). */
  fillRandom(firstPage: number, count: number, seed: number): void {
    this.checkLive();
    this.checkRange(firstPage, count);
    const rng = new Xoshiro128(seed);
    for (let page = firstPage; page < firstPage + count; page++) {
      const frame = this.frameToOverwrite(page);
      const words = this.pool.slabWords(frame);
      const w0 = this.pool.frameWordOffset(frame);
      rng.fill(words, w0, w0 + PAGE_WORDS);
      words[w0] |= 1; // never an all-zero page
      this.pool.invalidateHash(frame);
      this.markDirty(page);
    }
  }

  /** Frees every frame and disables every dirty log; the memory is unusable afterwards. Idempotent. */
  release(): void {
    if (this.released) return;
    for (let page = 0; page < this.pageCount; page++) {
      const frame = this.map[page];
      if (frame !== -1) this.pool.decRef(frame);
    }
    this.map.fill(-1);
    this.resident = 0;
    for (const log of [...this.logs]) log.disable();
    this.released = true;
  }

  get isReleased(): boolean {
    return this.released;
  }

  /**
   * A frame of the page's own that the caller overwrites whole: a new one for an unbacked page, and a
   * new one instead of a shared (KSM) frame, with no copy since every byte is about to be replaced.
   * Its content is undefined until the caller writes it.
   */
  private frameToOverwrite(page: number): number {
    let frame = this.map[page]!;
    if (frame === -1) {
      frame = this.pool.allocate(false);
      this.map[page] = frame;
      this.resident++;
    } else if (this.pool.refCount(frame) > 1) {
      this.pool.decRef(frame);
      frame = this.pool.allocate(false);
      this.map[page] = frame;
    }
    return frame;
  }

  private unback(page: number): void {
    const frame = this.map[page];
    if (frame === -1) return;
    this.map[page] = -1;
    this.resident--;
    this.pool.decRef(frame);
  }

  private frameIsZero(frame: number): boolean {
    const words = this.pool.slabWords(frame);
    for (let w = this.pool.frameWordOffset(frame), end = w + PAGE_WORDS; w < end; w++) if (words[w] !== 0) return false;
    return true;
  }

  private markDirty(page: number): void {
    const logs = this.logBits;
    const w = page >>> 5;
    const bit = 1 << (page & 31);
    for (let i = 0; i < logs.length; i++) logs[i][w] |= bit;
  }

  private checkLive(): void {
    if (this.released) throw new MemoryReleasedError();
  }

  /** Every one of pages[0..count) is in range (a batch is checked before any of it is written). */
  private checkPages(pages: Uint32Array, count: number): void {
    for (let i = 0; i < count; i++) if (pages[i]! >= this.pageCount) throw new OutOfRangeError('page', pages[i]!, this.pageCount);
  }

  private checkPage(page: number): void {
    if (!(page >= 0 && page < this.pageCount) || (page | 0) !== page) {
      throw new OutOfRangeError('page', page, this.pageCount);
    }
  }

  private checkRange(firstPage: number, count: number): void {
    if (!Number.isInteger(firstPage) || !Number.isInteger(count) || firstPage < 0 || count < 0) {
      throw new InvalidArgumentError('page range', `${firstPage}+${count}`);
    }
    if (firstPage + count > this.pageCount) throw new OutOfRangeError('page range end', firstPage + count, this.pageCount);
  }

  private checkSpan(name: string, buf: Uint8Array, offset: number): void {
    if (!Number.isInteger(offset) || offset < 0 || offset + PAGE_SIZE > buf.length) {
      throw new OutOfRangeError(`${name} offset`, offset, buf.length - PAGE_SIZE);
    }
  }
}

// A word view of the last source buffer seen: the migration receiver writes many pages from one buffer,
// so checking a page for zeros costs no allocation and a quarter of the reads.
let wordsBuffer: ArrayBufferLike | null = null;
let wordsView: Uint32Array<ArrayBufferLike> = new Uint32Array(0);

let bytesBuffer: ArrayBufferLike | null = null;
let bytesView: Uint8Array<ArrayBufferLike> = new Uint8Array(0);

/** The cached byte view over `src`'s whole buffer (index with src.byteOffset added). */
function bytesOf(src: Uint8Array): Uint8Array<ArrayBufferLike> {
  if (src.buffer !== bytesBuffer) {
    bytesBuffer = src.buffer;
    bytesView = new Uint8Array(src.buffer);
  }
  return bytesView;
}

/** The cached word view over `src`'s whole buffer. */
function wordsOf(src: Uint8Array): Uint32Array<ArrayBufferLike> {
  if (src.buffer !== wordsBuffer) {
    wordsBuffer = src.buffer;
    wordsView = new Uint32Array(src.buffer, 0, src.buffer.byteLength >>> 2);
  }
  return wordsView;
}

/** True if the 4 KiB at `offset` are all zero; exits at the first non-zero word. */
function isZeroSpan(src: Uint8Array, offset: number): boolean {
  const start = src.byteOffset + offset;
  if ((start & 3) !== 0) {
    for (let i = offset, end = offset + PAGE_SIZE; i < end; i++) if (src[i] !== 0) return false;
    return true;
  }
  if (src.buffer !== wordsBuffer) {
    wordsBuffer = src.buffer;
    wordsView = new Uint32Array(src.buffer, 0, src.buffer.byteLength >>> 2);
  }
  const words = wordsView;
  for (let i = start >>> 2, end = i + PAGE_WORDS; i < end; i++) if (words[i] !== 0) return false;
  return true;
}
