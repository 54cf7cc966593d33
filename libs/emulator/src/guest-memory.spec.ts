import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, InvalidFrameError, MemoryReleasedError, OutOfRangeError } from './errors.js';
import { FramePool, PAGE_SIZE } from './frame-pool.js';
import { GuestMemory } from './guest-memory.js';

function setup(pageCount = 64) {
  const pool = new FramePool({ slabFrames: 16 });
  return { pool, mem: new GuestMemory(pool, pageCount) };
}

function word(mem: GuestMemory, page: number, byteOffset: number): [number, number] {
  const v = mem.pageView(page);
  if (!v) return [0, 0];
  const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
  return [dv.getUint32(byteOffset, true), dv.getUint32(byteOffset + 4, true)];
}

describe('GuestMemory', () => {
  it('starts all zero and costs no frames', () => {
    const { pool, mem } = setup(1 << 18);
    expect(mem.residentPages).toBe(0);
    expect(pool.framesInUse).toBe(0);
    expect(mem.isZero(12345)).toBe(true);
    expect(mem.frameOf(12345)).toBe(-1);
    expect(mem.pageView(12345)).toBeNull();
    const out = new Uint8Array(PAGE_SIZE).fill(1);
    expect(mem.readPage(12345, out)).toBe(false);
    expect(out.every((x) => x === 0)).toBe(true);
  });

  it('writeWord backs a page with a frame and stores little-endian', () => {
    const { pool, mem } = setup();
    mem.writeWord(3, 16, 0xdeadbeef, 0x01020304);
    expect(mem.residentPages).toBe(1);
    expect(pool.framesInUse).toBe(1);
    expect(word(mem, 3, 16)).toEqual([0xdeadbeef, 0x01020304]);
    expect(word(mem, 3, 8)).toEqual([0, 0]);
    mem.writeWord(3, 24, 1, 0);
    expect(pool.framesInUse).toBe(1);
  });

  it('a zero store into a zero page allocates nothing', () => {
    const { pool, mem } = setup();
    mem.writeWord(5, 0, 0, 0);
    expect(pool.framesInUse).toBe(0);
  });

  it('writePage and readPage round-trip, with offsets', () => {
    const { mem } = setup();
    const src = new Uint8Array(PAGE_SIZE + 100);
    for (let i = 0; i < src.length; i++) src[i] = (i * 7) & 0xff;
    mem.writePage(9, src, 100);
    const out = new Uint8Array(PAGE_SIZE + 10);
    expect(mem.readPage(9, out, 10)).toBe(true);
    expect(out.subarray(10)).toEqual(src.subarray(100));
  });

  it.each([0, 1, 4, 100])('recognizes a zero or non-zero page at source byte offset %i', (offset) => {
    const { mem } = setup();
    const backing = new ArrayBuffer(3 * PAGE_SIZE);
    const src = new Uint8Array(backing, 4, 2 * PAGE_SIZE); // a view that does not start its buffer
    mem.writePage(0, src, offset);
    expect(mem.isZero(0)).toBe(true);
    src[offset + PAGE_SIZE - 1] = 1; // only the last byte of the page
    mem.writePage(0, src, offset);
    expect(mem.isZero(0)).toBe(false);
    src[offset + PAGE_SIZE] = 5; // just past the page: not part of it
    src[offset + PAGE_SIZE - 1] = 0;
    mem.writePage(0, src, offset);
    expect(mem.isZero(0)).toBe(true);
  });

  it('writing all-zero content unbacks the page', () => {
    const { pool, mem } = setup();
    mem.writeWord(1, 0, 1, 1);
    mem.writePage(1, new Uint8Array(PAGE_SIZE));
    expect(mem.isZero(1)).toBe(true);
    expect(pool.framesInUse).toBe(0);
    mem.writeWord(2, 0, 1, 1);
    mem.zeroPage(2);
    expect(mem.isZero(2)).toBe(true);
    expect(mem.residentPages).toBe(0);
  });

  it('mapShared shares a frame and frees the page’s old one; a write breaks only that page’s share (COW)', () => {
    const pool = new FramePool({ slabFrames: 16 });
    const a = new GuestMemory(pool, 8);
    const b = new GuestMemory(pool, 8);
    a.writeWord(0, 0, 42, 0);
    b.writeWord(0, 0, 42, 0);
    b.writeWord(1, 0, 42, 0);
    expect(pool.framesInUse).toBe(3);
    const shared = a.frameOf(0);
    b.mapShared(0, shared);
    b.mapShared(1, shared);
    expect(pool.framesInUse).toBe(1);
    expect(pool.refCount(shared)).toBe(3);

    b.writeWord(1, 8, 7, 0);
    expect(b.frameOf(1)).not.toBe(shared);
    expect(pool.refCount(shared)).toBe(2);
    expect(pool.framesInUse).toBe(2);
    expect(word(b, 1, 0)).toEqual([42, 0]); // content was copied before the write
    expect(word(b, 1, 8)).toEqual([7, 0]);
    expect(word(a, 0, 8)).toEqual([0, 0]); // the other sharers do not see it
    expect(word(b, 0, 8)).toEqual([0, 0]);

    b.writePage(0, new Uint8Array(PAGE_SIZE).fill(3));
    expect(a.pageView(0)?.[0]).toBe(42);
    expect(pool.refCount(shared)).toBe(1);
  });

  it('mapShared onto a zero page makes it resident; onto a free frame throws and changes nothing', () => {
    const { pool, mem } = setup();
    mem.writeWord(0, 0, 1, 0);
    mem.mapShared(5, mem.frameOf(0));
    expect(mem.residentPages).toBe(2);
    expect(pool.framesInUse).toBe(1);
    expect(() => mem.mapShared(6, 999)).toThrow(InvalidFrameError);
    expect(mem.isZero(6)).toBe(true);
  });

  it('zeroPage drops one share only', () => {
    const { pool, mem } = setup();
    mem.writeWord(0, 0, 1, 0);
    const f = mem.frameOf(0);
    mem.mapShared(1, f);
    mem.zeroPage(1);
    expect(pool.refCount(f)).toBe(1);
    expect(mem.frameOf(0)).toBe(f);
  });

  it('fillRandom writes non-zero, seed-determined pages', () => {
    const { mem } = setup();
    const other = setup().mem;
    mem.fillRandom(4, 10, 99);
    other.fillRandom(4, 10, 99);
    expect(mem.residentPages).toBe(10);
    expect(mem.isZero(3)).toBe(true);
    expect(mem.isZero(14)).toBe(true);
    for (let p = 4; p < 14; p++) expect(mem.pageView(p)).toEqual(other.pageView(p));
    expect(mem.pageView(4)).not.toEqual(mem.pageView(5));
  });

  it('release frees every frame and refuses later writes', () => {
    const { pool, mem } = setup();
    mem.fillRandom(0, 20, 1);
    const log = mem.createDirtyLog();
    mem.release();
    expect(pool.framesInUse).toBe(0);
    expect(pool.slabsLive).toBe(0);
    expect(log.enabled).toBe(false);
    expect(() => mem.writeWord(0, 0, 1, 1)).toThrow(MemoryReleasedError);
    mem.release();
  });

  it.each([
    ['page -1', (m: GuestMemory) => m.writeWord(-1, 0, 1, 1), OutOfRangeError],
    ['page = pageCount', (m: GuestMemory) => m.writeWord(64, 0, 1, 1), OutOfRangeError],
    ['fractional page', (m: GuestMemory) => m.isZero(1.5), OutOfRangeError],
    ['unaligned offset', (m: GuestMemory) => m.writeWord(0, 4, 1, 1), OutOfRangeError],
    ['offset past the page', (m: GuestMemory) => m.writeWord(0, PAGE_SIZE, 1, 1), OutOfRangeError],
    ['short source', (m: GuestMemory) => m.writePage(0, new Uint8Array(100)), OutOfRangeError],
    ['short output', (m: GuestMemory) => m.readPage(0, new Uint8Array(PAGE_SIZE), 1), OutOfRangeError],
    ['fill past the end', (m: GuestMemory) => m.fillRandom(60, 5, 1), OutOfRangeError],
    ['negative fill count', (m: GuestMemory) => m.fillRandom(0, -1, 1), InvalidArgumentError],
  ])('rejects %s', (_name, op, error) => {
    const { pool, mem } = setup();
    expect(() => op(mem)).toThrow(error);
    expect(pool.framesInUse).toBe(0);
  });

  it('rejects a bad page count', () => {
    expect(() => new GuestMemory(new FramePool(), -1)).toThrow(InvalidArgumentError);
  });

  it('writePagesFrom writes strided records like writePage, unbacks zero pages, breaks shares, marks dirty', () => {
    const { pool, mem } = setup();
    const stride = 4 + PAGE_SIZE;
    const src = Buffer.alloc(2 + 3 * stride); // odd offset: the byte-wise zero test path too
    src.fill(5, 2 + 4, 2 + 4 + PAGE_SIZE); // record 0: non-zero
    src[2 + 2 * stride + 4 + PAGE_SIZE - 1] = 9; // record 2: only the last byte non-zero
    mem.writeWord(7, 0, 1, 0); // record 1 (zero) will unback page 7
    mem.writeWord(3, 0, 1, 0);
    mem.mapShared(4, mem.frameOf(3)); // page 4 shares page 3's frame
    const log = mem.createDirtyLog();
    mem.writePagesFrom(Uint32Array.of(4, 7, 9), 3, src, 2 + 4, stride);
    expect(mem.pageView(4)!.every((b) => b === 5)).toBe(true);
    expect(word(mem, 3, 0)).toEqual([1, 0]); // the share was broken, not written through
    expect(mem.isZero(7)).toBe(true);
    expect(mem.pageView(9)![PAGE_SIZE - 1]).toBe(9);
    const bits = new Uint32Array(2);
    log.sync(bits);
    expect(bits[0]).toBe((1 << 4) | (1 << 7) | (1 << 9));
    expect(pool.framesInUse).toBe(3);
  });

  it('writePagesFrom copies back-to-back pages into consecutive frames as stretches, and each page right', () => {
    const pool = new FramePool({ slabFrames: 8 });
    const mem = new GuestMemory(pool, 64);
    mem.writeWord(20, 0, 7, 7); // already backed: page 20's frame does not follow the others
    const pages = Uint32Array.of(10, 11, 12, 13, 20, 21, 22, 23, 24, 25, 26, 27, 28);
    const src = new Uint8Array(3 + pages.length * PAGE_SIZE).subarray(3); // unaligned view into a bigger buffer
    pages.forEach((p, i) => {
      if (p === 22) return; // arrives as zeros: breaks the stretch, unbacks the page
      src.fill(p, i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
      src[i * PAGE_SIZE] = 200 + i; // the first byte of each page tells a shifted copy
    });
    mem.writePagesFrom(pages, pages.length, src, 0, PAGE_SIZE);
    pages.forEach((p, i) => {
      if (p === 22) return expect(mem.isZero(22)).toBe(true);
      const view = mem.pageView(p)!;
      expect(view[0]).toBe(200 + i);
      expect(view[1]).toBe(p);
      expect(view[PAGE_SIZE - 1]).toBe(p);
    });
    // 8-frame slabs: stretches stop at a slab's end and around page 20's older frame.
    expect(mem.frameOf(11)).toBe(mem.frameOf(10) + 1);
    expect(pool.framesInUse).toBe(pages.length - 1);
  });

  it('prepareOverwrite maps a private frame to every page and tells whether they follow each other; finishOverwrite unbacks zero pages', () => {
    const pool = new FramePool({ slabFrames: 8 });
    const mem = new GuestMemory(pool, 64);
    const log = mem.createDirtyLog();
    const first = mem.prepareOverwrite(Uint32Array.of(3, 4, 5, 9));
    expect(first).toBe(mem.frameOf(3));
    expect([4, 5, 9].map((p) => mem.frameOf(p))).toEqual([first + 1, first + 2, first + 3]);
    const slab = pool.slabBytes(first);
    const off = pool.frameByteOffset(first);
    slab.fill(7, off, off + 3 * PAGE_SIZE); // pages 3, 4, 5 land; page 9 arrives as zeros
    slab.fill(0, off + 3 * PAGE_SIZE, off + 4 * PAGE_SIZE);
    mem.finishOverwrite(Uint32Array.of(3, 4, 5, 9));
    expect(mem.pageView(4)![100]).toBe(7);
    expect(mem.isZero(9)).toBe(true);
    expect(pool.framesInUse).toBe(3);
    const bits = new Uint32Array(2);
    log.sync(bits);
    expect(bits[0]).toBe((1 << 3) | (1 << 4) | (1 << 5) | (1 << 9));
    // A page already backed elsewhere, or a slab boundary, breaks the sequence: -1, every page still mapped.
    expect(mem.prepareOverwrite(Uint32Array.of(20, 21, 4))).toBe(-1);
    expect(mem.frameOf(21)).not.toBe(-1);
    expect(() => mem.prepareOverwrite(Uint32Array.of(30, 64))).toThrow(OutOfRangeError);
    expect(mem.frameOf(30)).toBe(-1); // checked before anything changed
  });

  it('writePagesFrom checks the whole batch before writing any page', () => {
    const { mem } = setup();
    const src = new Uint8Array(2 * PAGE_SIZE).fill(1);
    expect(() => mem.writePagesFrom(Uint32Array.of(1, 64), 2, src)).toThrow(OutOfRangeError);
    expect(() => mem.writePagesFrom(Uint32Array.of(1, 2), 2, src, 1)).toThrow(OutOfRangeError);
    expect(() => mem.writePagesFrom(Uint32Array.of(1), 1, src, 0, 100)).toThrow(InvalidArgumentError);
    expect(mem.isZero(1)).toBe(true);
  });
});
