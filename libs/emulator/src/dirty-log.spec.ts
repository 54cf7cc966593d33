import { describe, expect, it } from 'vitest';
import { popcount, testBit } from './bitmap.js';
import { InvalidArgumentError } from './errors.js';
import { FramePool, PAGE_SIZE } from './frame-pool.js';
import { GuestMemory } from './guest-memory.js';

function setup() {
  return new GuestMemory(new FramePool(), 100);
}

describe('DirtyLog', () => {
  it.each([
    ['writeWord', (m: GuestMemory) => m.writeWord(7, 0, 1, 0)],
    ['a zero writeWord into a zero page', (m: GuestMemory) => m.writeWord(7, 0, 0, 0)],
    ['writePage', (m: GuestMemory) => m.writePage(7, new Uint8Array(PAGE_SIZE).fill(1))],
    ['zeroPage of a backed page', (m: GuestMemory) => m.zeroPage(7)],
    ['fillRandom', (m: GuestMemory) => m.fillRandom(7, 1, 3)],
  ])('%s marks the page dirty', (_name, write) => {
    const mem = setup();
    mem.writeWord(7, 0, 1, 0);
    const log = mem.createDirtyLog();
    write(mem);
    const bits = log.sync();
    expect(popcount(bits)).toBe(1);
    expect(testBit(bits, 7)).toBe(true);
  });

  it('zeroPage of a zero page, or of a backed page holding zeros (KSM use_zero_pages), is not a write', () => {
    const mem = setup();
    mem.writeWord(4, 0, 1, 0);
    mem.writeWord(4, 0, 0, 0); // backed, all zero
    const log = mem.createDirtyLog();
    mem.zeroPage(3);
    mem.zeroPage(4);
    expect(mem.isZero(4)).toBe(true);
    expect(log.dirtyCount()).toBe(0);
  });

  it('writePage of zeros is a write even over a zero page (as KVM marks any write)', () => {
    const mem = setup();
    const log = mem.createDirtyLog();
    mem.writePage(3, new Uint8Array(PAGE_SIZE));
    expect(log.dirtyCount()).toBe(1);
  });

  it('mapShared is not a guest write', () => {
    const mem = setup();
    mem.writeWord(0, 0, 1, 0);
    const log = mem.createDirtyLog();
    mem.mapShared(1, mem.frameOf(0));
    expect(log.dirtyCount()).toBe(0);
  });

  it('sync returns the pages written since the last sync and clears', () => {
    const mem = setup();
    const log = mem.createDirtyLog();
    mem.writeWord(1, 0, 1, 0);
    mem.writeWord(99, 0, 1, 0);
    mem.writeWord(1, 8, 1, 0);
    const first = log.sync();
    expect(popcount(first)).toBe(2);
    expect(testBit(first, 99)).toBe(true);
    expect(popcount(log.sync())).toBe(0);
    mem.writeWord(50, 0, 1, 0);
    const into = new Uint32Array(4).fill(0xffffffff);
    expect(log.sync(into)).toBe(into);
    expect(popcount(into)).toBe(1);
    expect(() => log.sync(new Uint32Array(1))).toThrow(InvalidArgumentError);
  });

  it('serves several clients independently', () => {
    const mem = setup();
    const migration = mem.createDirtyLog();
    mem.writeWord(1, 0, 1, 0);
    const ksm = mem.createDirtyLog();
    mem.writeWord(2, 0, 1, 0);
    expect(popcount(migration.sync())).toBe(2);
    expect(popcount(ksm.sync())).toBe(1);
    mem.writeWord(3, 0, 1, 0);
    expect(popcount(ksm.sync())).toBe(1);
    expect(popcount(migration.sync())).toBe(1);
  });

  it('a disabled log receives nothing more; the others still do', () => {
    const mem = setup();
    const a = mem.createDirtyLog();
    const b = mem.createDirtyLog();
    a.disable();
    a.disable();
    expect(a.enabled).toBe(false);
    mem.writeWord(4, 0, 1, 0);
    expect(popcount(a.sync())).toBe(0);
    expect(popcount(b.sync())).toBe(1);
  });

  it('markAll sets every page', () => {
    const log = setup().createDirtyLog();
    log.markAll();
    expect(log.dirtyCount()).toBe(100);
  });
});
