import { beforeAll, describe, expect, it } from 'vitest';
import { FlatMemoryDigest, hashToHex, initHashing, pageHash, zeroPageHash } from './digest.js';
import { InvalidArgumentError } from './errors.js';
import { loadImage } from './images.js';
import { FramePool, PAGE_SIZE } from './frame-pool.js';
import { GuestMemory } from './guest-memory.js';

beforeAll(async () => {
  await initHashing();
});

describe('digest', () => {
  it('pageHash is xxh64 of the bytes; the zero page hash is precomputed', () => {
    const page = new Uint8Array(PAGE_SIZE);
    expect(zeroPageHash()).toBe(pageHash(page));
    page[100] = 1;
    expect(pageHash(page)).not.toBe(zeroPageHash());
    expect(hashToHex(0xabcn)).toBe('0000000000000abc');
  });

  it('is 16 hex chars and equal for equal content, however it is backed', () => {
    const pool = new FramePool({ slabFrames: 8 });
    const a = new GuestMemory(pool, 1000);
    const b = new GuestMemory(pool, 1000);
    expect(a.digest()).toMatch(/^[0-9a-f]{16}$/);
    expect(a.digest()).toBe(b.digest());

    a.fillRandom(10, 5, 1);
    b.fillRandom(10, 5, 1);
    expect(a.digest()).toBe(b.digest());
    for (let p = 10; p < 15; p++) b.mapShared(p, a.frameOf(p)); // KSM sharing does not change content
    expect(b.digest()).toBe(a.digest());

    // A backed page that holds zeros hashes like an unbacked one.
    a.writeWord(500, 0, 1, 0);
    a.writeWord(500, 0, 0, 0);
    expect(a.frameOf(500)).not.toBe(-1);
    expect(a.digest()).toBe(b.digest());
  });

  it('changes with any write, including to a page whose hash was cached, and depends on page order', () => {
    const pool = new FramePool();
    const a = new GuestMemory(pool, 100);
    a.fillRandom(0, 10, 5);
    const before = a.digest();
    a.writeWord(3, 8, 1, 2);
    const after = a.digest();
    expect(after).not.toBe(before);
    expect(a.digest()).toBe(after);

    const x = new GuestMemory(pool, 4);
    const y = new GuestMemory(pool, 4);
    x.writeWord(0, 0, 1, 0);
    y.writeWord(1, 0, 1, 0);
    expect(x.digest()).not.toBe(y.digest());
  });

  it('cachePageHash(es) caches what digest() would compute, and a later write still invalidates it', () => {
    const pool = new FramePool();
    const m = new GuestMemory(pool, 64);
    m.fillRandom(0, 8, 5);
    const before = new GuestMemory(new FramePool(), 64);
    before.fillRandom(0, 8, 5);
    m.cachePageHash(0);
    m.cachePageHash(20); // a zero page: nothing to hash
    m.cachePageHashes(new Uint32Array([1, 2, 3, 40]), 3);
    for (const p of [0, 1, 2, 3]) expect(pool.hashValid(m.frameOf(p))).toBe(true);
    expect(pool.hashValid(m.frameOf(4))).toBe(false);
    expect(m.digest()).toBe(before.digest());
    m.writeWord(2, 0, 7, 7);
    expect(pool.hashValid(m.frameOf(2))).toBe(false);
    before.writeWord(2, 0, 7, 7);
    expect(m.digest()).toBe(before.digest());
    expect(() => m.cachePageHashes(new Uint32Array([64]), 1)).toThrow();
    m.cachePageHashRange(0, 64);
    for (let p = 0; p < 8; p++) expect(pool.hashValid(m.frameOf(p))).toBe(true);
    expect(m.digest()).toBe(before.digest());
    expect(() => m.cachePageHashRange(60, 5)).toThrow();
    m.release();
    before.release();
  });

  it('a COW copy of a shared page gets its own hash', () => {
    const pool = new FramePool();
    const a = new GuestMemory(pool, 4);
    const b = new GuestMemory(pool, 4);
    a.fillRandom(0, 1, 9);
    b.mapShared(0, a.frameOf(0));
    const shared = a.digest();
    expect(b.digest()).toBe(shared);
    b.writeWord(0, 0, 5, 5);
    expect(b.digest()).not.toBe(shared);
    expect(a.digest()).toBe(shared);
  });

  it('digests a 1 GiB mostly-zero memory', () => {
    const pool = new FramePool();
    const mem = new GuestMemory(pool, 1 << 18);
    const empty = mem.digest();
    mem.fillRandom(1000, 256, 1);
    const t0 = performance.now();
    const d1 = mem.digest();
    const t1 = performance.now();
    const d2 = mem.digest(); // hashes cached now
    const t2 = performance.now();
    expect(d1).toBe(d2);
    expect(d1).not.toBe(empty);
    console.info(`digest of 1 GiB (1 MiB resident): first ${(t1 - t0).toFixed(1)} ms, cached ${(t2 - t1).toFixed(1)} ms`);
  });
});

describe('FlatMemoryDigest', () => {
  /** The memory's bytes in page order, as a RAM dump holds them. */
  function flatBytes(mem: GuestMemory): Uint8Array {
    const out = new Uint8Array(mem.pageCount * PAGE_SIZE);
    for (let p = 0; p < mem.pageCount; p++) mem.readPage(p, out, p * PAGE_SIZE);
    return out;
  }

  it.each([
    ['whole', 0],
    ['4 KiB chunks', PAGE_SIZE],
    ['chunks that split pages', 3 * PAGE_SIZE + 123],
    ['tiny chunks', 1000],
  ])('agrees with GuestMemory.digest() over the same bytes fed in %s', (_how, chunk) => {
    const mem = new GuestMemory(new FramePool(), 5000);
        mem.fillRandom(100, 300, 7);
    mem.writeWord(4999, 8, 1, 2); // the last page, alone among zeros
    const bytes = flatBytes(mem);
    const d = new FlatMemoryDigest();
    if (chunk === 0) d.update(bytes);
    else for (let at = 0; at < bytes.length; at += chunk) d.update(bytes.subarray(at, at + chunk));
    expect(d.pages).toBe(5000);
    expect(d.digest()).toBe(mem.digest());
  });

  it('agrees over an image, and differs when one word differs', () => {
    const mem = new GuestMemory(new FramePool(), 16 * 256);
    loadImage(mem, 'alpine-3.20');
    const bytes = flatBytes(mem);
    const same = new FlatMemoryDigest();
    same.update(bytes);
    expect(same.digest()).toBe(mem.digest());
    bytes[PAGE_SIZE * 77 + 8] ^= 1;
    const other = new FlatMemoryDigest();
    other.update(bytes);
    expect(other.digest()).not.toBe(mem.digest());
  });

  it('refuses bytes that are not whole pages', () => {
    const d = new FlatMemoryDigest();
    d.update(new Uint8Array(PAGE_SIZE + 1));
    expect(() => d.digest()).toThrow(InvalidArgumentError);
  });
});
