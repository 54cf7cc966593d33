import { describe, expect, it } from 'vitest';
import { createBitmap, nextSetBit, popcount, setAll, setBit, testBit } from './bitmap.js';
import { decodeBitmapRle, encodeBitmapRle } from './bitmap-rle.js';
import { CorruptStateError } from './errors.js';
import { Xoshiro128 } from './prng.js';

function bitmapOf(pageCount: number, pages: number[]): Uint32Array {
  const b = createBitmap(pageCount);
  for (const p of pages) setBit(b, p);
  return b;
}

describe('encodeBitmapRle / decodeBitmapRle', () => {
  it.each([
    { name: 'empty bitmap', pageCount: 0, set: [], bytes: [] },
    { name: 'all clear', pageCount: 100, set: [], bytes: [100] },
    { name: 'first page set', pageCount: 3, set: [0], bytes: [0, 1, 2] },
    { name: 'last page set', pageCount: 40, set: [39], bytes: [39, 1] },
    { name: 'two runs', pageCount: 10, set: [2, 3, 7], bytes: [2, 2, 3, 1, 2] },
    { name: 'long clear run as 2-byte varint', pageCount: 300, set: [], bytes: [0xac, 0x02] },
  ])('$name', ({ pageCount, set, bytes }) => {
    const bitmap = bitmapOf(pageCount, set);
    const encoded = encodeBitmapRle(bitmap, pageCount);
    expect([...encoded]).toEqual(bytes);
    expect(decodeBitmapRle(encoded, pageCount)).toEqual(bitmap);
  });

  it.each([1, 31, 32, 33, 64, 1000, 262144])('round-trips all-set and random bitmaps of %i pages', (pageCount) => {
    const all = createBitmap(pageCount);
    setAll(all, pageCount);
    expect(decodeBitmapRle(encodeBitmapRle(all, pageCount), pageCount)).toEqual(all);
    expect(encodeBitmapRle(all, pageCount)[0]).toBe(0);

    const rng = new Xoshiro128(pageCount);
    const random = createBitmap(pageCount);
    for (let p = 0; p < pageCount; p++) if (rng.nextFloat() < 0.1) setBit(random, p);
    for (let p = Math.floor(pageCount / 2); p < Math.min(pageCount, pageCount / 2 + 100); p++) setBit(random, p);
    expect(decodeBitmapRle(encodeBitmapRle(random, pageCount), pageCount)).toEqual(random);
  });

  it('ignores bits past pageCount', () => {
    const b = createBitmap(40);
    b[1] = 0xffffffff; // pages 32..63, only 32..39 exist
    expect([...encodeBitmapRle(b, 40)]).toEqual([32, 8]);
  });

  it.each([
    { name: 'runs short of pageCount', bytes: [5], pageCount: 10 },
    { name: 'runs past pageCount', bytes: [5, 6], pageCount: 10 },
    { name: 'truncated varint', bytes: [0x80], pageCount: 10 },
    { name: 'empty for a non-empty bitmap', bytes: [], pageCount: 1 },
  ])('rejects $name', ({ bytes, pageCount }) => {
    expect(() => decodeBitmapRle(Uint8Array.from(bytes), pageCount)).toThrow(CorruptStateError);
  });
});

describe('bitmap helpers', () => {
  it.each([
    { pages: [], count: 0 },
    { pages: [0], count: 1 },
    { pages: [31, 32, 63, 64, 999], count: 5 },
  ])('popcount of $pages is $count', ({ pages, count }) => {
    expect(popcount(bitmapOf(1000, pages))).toBe(count);
  });

  it('popcount of full words', () => {
    const b = createBitmap(1 << 20);
    setAll(b, 1 << 20);
    expect(popcount(b)).toBe(1 << 20);
  });

  it('setAll leaves bits past pageCount clear', () => {
    const b = createBitmap(40);
    setAll(b, 40);
    expect(popcount(b)).toBe(40);
    expect(testBit(b, 39)).toBe(true);
    expect(testBit(b, 40)).toBe(false);
  });

  it('nextSetBit iterates set pages in order', () => {
    const pages = [0, 5, 31, 32, 100, 639];
    const b = bitmapOf(640, pages);
    const seen: number[] = [];
    for (let p = nextSetBit(b, 0, 640); p !== -1; p = nextSetBit(b, p + 1, 640)) seen.push(p);
    expect(seen).toEqual(pages);
    expect(nextSetBit(b, 640, 640)).toBe(-1);
  });
});
