import { beforeAll, describe, expect, it } from 'vitest';
import { initHashing, pageHash } from './digest.js';
import { FramePool, PAGE_SIZE } from './frame-pool.js';
import { GuestMemory } from './guest-memory.js';
import { UnknownImageError } from './errors.js';
import { DERIVED_IMAGE_MIB, getImage, IMAGES, imageTemplate, loadImage, setImageTemplateCacheBytes } from './images.js';

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

  it('keeps the presets exactly (sizes above, seeds here)', () => {
    expect(Object.values(IMAGES).map((i) => [i.name, i.seed])).toEqual([
      ['empty', 0],
      ['alpine-3.20', 0x41_03_14],
      ['debian-12', 0xde_12_00],
      ['ubuntu-24.04', 0xb0_24_04],
    ]);
  });

  it('reads the empty name as empty', () => {
    expect(getImage('')).toBe(IMAGES.empty);
  });

  it.each(['windows-95', 'a', '9front', 'registry.local/team/app:1.2', 'x'.repeat(128), 'a._:/-'])(
    'derives an image from any well-formed name: %s',
    (name) => {
      const spec = getImage(name);
      expect(spec?.name).toBe(name);
      const mib = ((spec?.pages ?? 0) * PAGE_SIZE) / MIB;
      expect(Number.isInteger(mib)).toBe(true);
      expect(mib).toBeGreaterThanOrEqual(DERIVED_IMAGE_MIB.min);
      expect(mib).toBeLessThanOrEqual(DERIVED_IMAGE_MIB.max);
      expect(getImage(name)).toEqual(spec); // from the name alone: the same every time
    },
  );

  it('gives different names different seeds and spreads their sizes', () => {
    const specs = Array.from({ length: 200 }, (_, i) => getImage(`img-${i}`)!);
    expect(new Set(specs.map((s) => s.seed)).size).toBe(200);
    const sizes = new Set(specs.map((s) => s.pages));
    expect(sizes.size).toBeGreaterThan(60);
  });

  it.each([
    ['upper case', 'Debian-12'],
    ['a space', 'my image'],
    ['a leading dot', '.hidden'],
    ['a leading dash', '-x'],
    ['a leading slash', '/etc/passwd'],
    ['129 characters', 'a'.repeat(129)],
    ['a character outside the set', 'app@1'],
    ['an inherited property', 'toString'],
  ])('does not resolve a name with %s', (_why, name) => {
    expect(getImage(name)).toBeUndefined();
    expect(() => imageTemplate(name)).toThrow(UnknownImageError);
  });

  it('does not resolve inherited properties as presets', () => {
    expect(getImage('constructor')).toEqual({ name: 'constructor', pages: expect.any(Number), seed: expect.any(Number) });
    expect(getImage('__proto__')).toBeUndefined();
  });

  it('has distinct seeds', () => {
    const seeds = Object.values(IMAGES).map((i) => i.seed);
    expect(new Set(seeds).size).toBe(seeds.length);
  });
});

describe('image content', () => {
  it('is generated once per process and mixes zero, duplicated and unique pages', () => {
    const t = imageTemplate('alpine-3.20');
    expect(imageTemplate('alpine-3.20') === t).toBe(true);
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

  it('generates a derived image with the same shape as a preset', () => {
    const t = imageTemplate('team/app:1.0');
    expect(t.spec).toEqual(getImage('team/app:1.0'));
    expect(t.zeroPages / t.spec.pages).toBeGreaterThan(0.15);
    expect(t.zeroPages / t.spec.pages).toBeLessThan(0.25);
    expect(t.zeroPages + t.duplicatePages + t.uniqueSlots).toBe(t.spec.pages);
  });

  it('keeps templates within its byte budget, least recently used out first, and regenerates identically', () => {
    // Identity checks as booleans: a failing toBe on templates would print tens of MiB of diff.
    const alpine = imageTemplate('alpine-3.20');
    const budget = setImageTemplateCacheBytes(alpine.data.byteLength * 2.5);
    try {
      const debian = imageTemplate('debian-12'); // alpine + debian: over 2.5 alpines, alpine (older) goes
      expect(imageTemplate('debian-12') === debian).toBe(true);
      const again = imageTemplate('alpine-3.20');
      expect(again === alpine).toBe(false);
      expect(Buffer.compare(again.data, alpine.data)).toBe(0);
      expect(imageTemplate('debian-12') === debian).toBe(false); // alpine's return pushed debian out
    } finally {
      setImageTemplateCacheBytes(budget);
    }
  });

  it('refuses a memory smaller than the image', () => {
    const mem = new GuestMemory(new FramePool(), 10);
    expect(() => loadImage(mem, 'alpine-3.20')).toThrow(/needs/);
    expect(() => loadImage(mem, 'No Pe')).toThrow(/unknown image/);
    expect(mem.residentPages).toBe(0);
  });
});
