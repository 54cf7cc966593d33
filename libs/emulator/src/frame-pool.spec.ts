import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, InvalidFrameError } from './errors.js';
import { FramePool, PAGE_SIZE } from './frame-pool.js';

describe('FramePool', () => {
  it('allocates zeroed frames with refcount 1 and counts them', () => {
    const pool = new FramePool({ slabFrames: 4 });
    const a = pool.allocate();
    const b = pool.allocate();
    expect(a).not.toBe(b);
    expect(pool.refCount(a)).toBe(1);
    expect(pool.framesInUse).toBe(2);
    expect(pool.bytesInUse).toBe(2 * PAGE_SIZE);
    expect(pool.view(a).length).toBe(PAGE_SIZE);
    expect(pool.view(a).every((x) => x === 0)).toBe(true);
  });

  it('re-zeroes a recycled frame', () => {
    const pool = new FramePool({ slabFrames: 4 });
    const keep = pool.allocate(); // keeps the slab alive
    const a = pool.allocate();
    pool.view(a).fill(7);
    pool.decRef(a);
    const b = pool.allocate();
    expect(b).toBe(a);
    expect(pool.view(b).every((x) => x === 0)).toBe(true);
    expect(pool.refCount(keep)).toBe(1);
  });

  it('frees a frame only when its last reference goes', () => {
    const pool = new FramePool({ slabFrames: 4 });
    const a = pool.allocate();
    pool.incRef(a);
    pool.decRef(a);
    expect(pool.refCount(a)).toBe(1);
    expect(pool.framesInUse).toBe(1);
    pool.decRef(a);
    expect(pool.refCount(a)).toBe(0);
    expect(pool.framesInUse).toBe(0);
  });

  it('drops a slab once all its frames are free, and recreates it when needed', () => {
    const pool = new FramePool({ slabFrames: 4 });
    const frames = Array.from({ length: 8 }, () => pool.allocate());
    expect(pool.slabsLive).toBe(2);
    expect(pool.bytesReserved).toBe(8 * PAGE_SIZE);
    for (const f of frames.slice(0, 4)) pool.decRef(f);
    expect(pool.slabsLive).toBe(1);
    expect(pool.bytesReserved).toBe(4 * PAGE_SIZE);
    const again = pool.allocate();
    expect(again).toBeLessThan(4); // the dropped slot is reused
    expect(pool.slabsLive).toBe(2);
  });

  it('allocates from the lowest slab with a free frame, so high slabs can empty out', () => {
    const pool = new FramePool({ slabFrames: 4 });
    const frames = Array.from({ length: 12 }, () => pool.allocate());
    pool.decRef(frames[9]); // slab 2
    pool.decRef(frames[1]); // slab 0
    expect(pool.allocate()).toBe(frames[1]);
    expect(pool.allocate()).toBe(frames[9]);
    expect(pool.allocate()).toBe(12); // all full: a new slab
  });

  it('copies frames', () => {
    const pool = new FramePool({ slabFrames: 2 });
    const a = pool.allocate();
    const b = pool.allocate();
    const c = pool.allocate(); // another slab
    pool.view(a).fill(9);
    pool.storeHash(c, 1, 2);
    pool.copyFrame(a, c);
    expect(pool.view(c).every((x) => x === 9)).toBe(true);
    expect(pool.view(b).every((x) => x === 0)).toBe(true);
    const out = new Uint32Array(2);
    expect(pool.cachedHash(c, out)).toBe(false); // c's old hash no longer holds
    pool.storeHash(a, 5, 6);
    pool.copyFrame(a, b);
    expect(pool.cachedHash(b, out)).toBe(true); // the copy carries a's hash
    expect([...out]).toEqual([5, 6]);
  });

  it.each([
    ['a free frame', (p: FramePool) => p.view(0)],
    ['a negative frame', (p: FramePool) => p.decRef(-1)],
    ['a frame past the end', (p: FramePool) => p.incRef(1_000_000)],
  ])('rejects %s', (_name, op) => {
    const pool = new FramePool({ slabFrames: 4 });
    pool.decRef(pool.allocate());
    expect(() => op(pool)).toThrow(InvalidFrameError);
  });

  it.each([0, -1, 1.5, 70000])('rejects slabFrames %s', (slabFrames) => {
    expect(() => new FramePool({ slabFrames })).toThrow(InvalidArgumentError);
  });

  it('grows past its initial capacity', () => {
    const pool = new FramePool({ slabFrames: 1 });
    const frames = Array.from({ length: 100 }, () => pool.allocate());
    pool.view(frames[99]).fill(1);
    expect(new Set(frames).size).toBe(100);
    expect(pool.slabsLive).toBe(100);
    for (const f of frames) pool.decRef(f);
    expect(pool.slabsLive).toBe(0);
    expect(pool.framesInUse).toBe(0);
  });

  it('reserve() keeps pre-faulted empty slabs until used or released, then drops them again', () => {
    const pool = new FramePool({ slabFrames: 4 });
    const r = pool.reserve(10);
    expect(pool.slabsLive).toBe(3);
    expect(pool.framesInUse).toBe(0);
    const a = pool.allocate();
    pool.decRef(a); // its slab is empty again, but the reservation (9 frames left) keeps it
    expect(pool.slabsLive).toBe(3);
    expect(r.remaining).toBe(9);
    r.release();
    expect(pool.slabsLive).toBe(0);
    expect(pool.framesReserved).toBe(0);
    r.release(); // idempotent
  });

  it('a consumed reservation no longer holds back slab dropping', () => {
    const pool = new FramePool({ slabFrames: 4 });
    pool.reserve(8);
    const frames = Array.from({ length: 8 }, () => pool.allocate());
    expect(pool.slabsLive).toBe(2);
    for (const f of frames) pool.decRef(f);
    expect(pool.slabsLive).toBe(0);
  });
});
