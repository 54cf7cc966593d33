import { beforeAll, describe, expect, it } from 'vitest';
import { initHashing, pageHash } from './digest.js';
import { FramePool, PAGE_SIZE } from './frame-pool.js';
import { GuestMemory } from './guest-memory.js';
import { getImage, IMAGES, imageTemplate, loadImage } from './images.js';

beforeAll(async () => {
  await initHashing();
});

const MIB = 1024 * 1024;

describe('image catalog', () => {
  it.each([
    ['empty', 0],
    ['alpine-3.20', 16],
    ['debian-12', 64],
    ['ubuntu-24.04', 96],
  ])('%s is %i MiB', (name, mib) => {
    const spec = getImage(name);
    expect(spec?.name).toBe(name);
    expect(((spec?.pages ?? -1) * PAGE_SIZE) / MIB).toBe(mib);
  });

  it('does not resolve unknown or inherited names', () => {
    expect(getImage('windows-95')).toBeUndefined();
    expect(getImage('toString')).toBeUndefined();
  });

  it('has distinct seeds', () => {
    const seeds = Object.values(IMAGES).map((i) => i.seed);
    expect(new Set(seeds).size).toBe(seeds.length);
  });
});

describe('image content', () => {
  it('is generated once per process and mixes zero, duplicated and unique pages', () => {
    const t = imageTemplate('alpine-3.20');
    expect(imageTemplate('alpine-3.20')).toBe(t);
    const pages = t.spec.pages;
    expect(t.zeroPages / pages).toBeGreaterThan(0.15);
    expect(t.zeroPages / pages).toBeLessThan(0.25);
    expect(t.duplicatePages / pages).toBeGreaterThan(0.1);
    expect(t.duplicatePages / pages).toBeLessThan(0.2);
    expect(t.zeroPages + t.duplicatePages + t.uniqueSlots).toBe(pages);
  });

  it('shares no non-zero page between different images', () => {
    const hashes = (name: string) => {
      const t = imageTemplate(name);
      const set = new Set<bigint>();
      for (let s = 0; s < t.uniqueSlots; s++) set.add(pageHash(t.data.subarray(s * PAGE_SIZE, (s + 1) * PAGE_SIZE)));
      return set;
    };
    const alpine = hashes('alpine-3.20');
    expect(alpine.size).toBe(imageTemplate('alpine-3.20').uniqueSlots); // unique slots really are unique
    for (const h of hashes('debian-12')) expect(alpine.has(h)).toBe(false);
  });

  it('loads into each VM’s own frames at the start of memory, identical across VMs', () => {
    const pool = new FramePool();
    const t = imageTemplate('alpine-3.20');
    const a = new GuestMemory(pool, t.spec.pages + 100);
    const b = new GuestMemory(pool, t.spec.pages + 100);
    loadImage(a, 'alpine-3.20');
    loadImage(b, 'alpine-3.20');
    const nonZero = t.spec.pages - t.zeroPages;
    expect(a.residentPages).toBe(nonZero);
    expect(pool.framesInUse).toBe(2 * nonZero);
    expect(a.digest()).toBe(b.digest());
    for (let p = 0; p < t.spec.pages; p += 97) {
      expect(a.isZero(p)).toBe(t.slotOf[p] === -1);
      if (!a.isZero(p)) expect(a.frameOf(p)).not.toBe(b.frameOf(p));
    }
    for (let p = t.spec.pages; p < t.spec.pages + 100; p++) expect(a.isZero(p)).toBe(true);
  });

  it('refuses a memory smaller than the image', () => {
    const mem = new GuestMemory(new FramePool(), 10);
    expect(() => loadImage(mem, 'alpine-3.20')).toThrow(/needs/);
    expect(() => loadImage(mem, 'nope')).toThrow(/unknown image/);
    expect(mem.residentPages).toBe(0);
  });
});
