import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../wire/frame.js';
import { xbzrleDecode, xbzrleEncode } from './xbzrle.js';
import { XbzrleCache } from './xbzrle-cache.js';

function page(seed: number): Uint8Array {
  const p = new Uint8Array(PAGE_SIZE);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < PAGE_SIZE; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    p[i] = x & 0xff;
  }
  return p;
}
const words = (p: Uint8Array) => new Uint32Array(p.buffer, p.byteOffset, PAGE_SIZE / 4);

function roundTrip(prev: Uint8Array, next: Uint8Array): number {
  const out = new Uint8Array(PAGE_SIZE + 16);
  const n = xbzrleEncode(words(prev), 0, words(next), 0, out, 3, PAGE_SIZE);
  if (n > 0) {
    const target = prev.slice();
    expect(xbzrleDecode(out, 3, n, target, 0)).toBe(true);
    expect(Buffer.compare(target, next)).toBe(0);
  }
  return n;
}

describe('xbzrle', () => {
  it('encodes an unchanged page as nothing', () => {
    const p = page(1);
    expect(roundTrip(p, p.slice())).toBe(0);
  });

  it.each([
    ['one 8-byte store', [[100, 8]]],
    ['first and last word', [[0, 4], [PAGE_SIZE - 4, 4]]],
    ['several scattered runs', [[8, 16], [1000, 3], [2048, 200], [4000, 96]]],
    ['a long run (multi-byte ULEB lengths)', [[0, 3000]]],
  ])('round-trips %s', (_name, runs) => {
    const prev = page(2);
    const next = prev.slice();
    for (const [at, len] of runs as number[][]) for (let i = at!; i < at! + len!; i++) next[i] = next[i]! ^ 0x5a;
    const n = roundTrip(prev, next);
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThan(PAGE_SIZE);
  });

  it('gives up (-1) when the delta would not beat a raw page', () => {
    const out = new Uint8Array(PAGE_SIZE + 16);
    expect(xbzrleEncode(words(page(3)), 0, words(page(4)), 0, out, 0, PAGE_SIZE)).toBe(-1);
  });

  it('rejects malformed deltas', () => {
    const target = new Uint8Array(PAGE_SIZE);
    expect(xbzrleDecode(Uint8Array.from([0x80]), 0, 1, target, 0)).toBe(false); // truncated ULEB
    expect(xbzrleDecode(Uint8Array.from([0xff, 0x7f, 4, 1, 2, 3, 4]), 0, 7, target, 0)).toBe(false); // past the page
    expect(xbzrleDecode(Uint8Array.from([0, 4, 1]), 0, 3, target, 0)).toBe(false); // run longer than the input
  });
});

describe('xbzrle cache', () => {
  it('misses, then hits, and holds the last inserted version', () => {
    const cache = new XbzrleCache(100, 4 * PAGE_SIZE);
    expect(cache.lookup(7)).toBe(-1);
    const p = page(5);
    cache.insert(7, p, 0);
    const slot = cache.lookup(7);
    expect(slot).toBeGreaterThanOrEqual(0);
    expect([...cache.words.subarray(cache.wordOffset(slot), cache.wordOffset(slot) + 4)]).toEqual([...words(p).subarray(0, 4)]);
    expect(cache.hits).toBe(1);
    expect(cache.misses).toBe(1);
  });

  it('evicts within its bound (clock) and forgets invalidated pages', () => {
    const cache = new XbzrleCache(100, 4 * PAGE_SIZE);
    expect(cache.slots).toBe(4);
    const p = page(6);
    for (let i = 0; i < 10; i++) cache.insert(i, p, 0);
    let present = 0;
    for (let i = 0; i < 10; i++) if (cache.lookup(i) >= 0) present++;
    expect(present).toBe(4);
    cache.insert(50, p, 0);
    cache.invalidate(50);
    expect(cache.lookup(50)).toBe(-1);
  });
});
