import { describe, expect, it } from 'vitest';
import { hashString32, mix32, Xoshiro128 } from './prng.js';

describe('Xoshiro128', () => {
  it('matches the reference xoshiro128** outputs for state {1, 2, 3, 4}', () => {
    const rng = new Xoshiro128();
    rng.restore([1, 2, 3, 4]);
    expect([rng.next(), rng.next(), rng.next()]).toEqual([11520, 0, 5927040]);
  });

  it('is deterministic per seed and differs across seeds', () => {
    const a = new Xoshiro128(42);
    const b = new Xoshiro128(42);
    const c = new Xoshiro128(43);
    const seqA = Array.from({ length: 8 }, () => a.next());
    expect(Array.from({ length: 8 }, () => b.next())).toEqual(seqA);
    expect(Array.from({ length: 8 }, () => c.next())).not.toEqual(seqA);
  });

  it('continues identically after save and restore', () => {
    const a = new Xoshiro128(7);
    for (let i = 0; i < 100; i++) a.next();
    const saved = new Uint32Array(4);
    a.save(saved);
    const b = new Xoshiro128(0);
    b.restore(saved);
    expect(Array.from({ length: 16 }, () => b.next())).toEqual(Array.from({ length: 16 }, () => a.next()));
  });

  it('fill produces exactly the next() sequence and leaves the same state', () => {
    const a = new Xoshiro128(99);
    const b = new Xoshiro128(99);
    const words = new Uint32Array(1000);
    a.fill(words, 10, 990);
    expect([...words.subarray(10, 990)]).toEqual(Array.from({ length: 980 }, () => b.next()));
    expect(words[9]).toBe(0);
    expect(words[990]).toBe(0);
    expect(a.state).toEqual(b.state);
  });

  it('nextBelow stays in range and covers it evenly', () => {
    const rng = new Xoshiro128(1);
    const counts = new Uint32Array(10);
    for (let i = 0; i < 100_000; i++) counts[rng.nextBelow(10)]++;
    for (const c of counts) expect(c).toBeGreaterThan(9_000);
    for (const c of counts) expect(c).toBeLessThan(11_000);
  });

  it('mix32 and hashString32 spread nearby inputs', () => {
    expect(mix32(1)).not.toBe(mix32(2));
    expect(hashString32('vm-1')).not.toBe(hashString32('vm-2'));
    expect(hashString32('vm-1')).toBe(hashString32('vm-1'));
  });
});
