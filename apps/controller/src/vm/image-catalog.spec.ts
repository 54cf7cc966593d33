import { describe, expect, it } from 'vitest';
import { imageList, imageSizeMib, isPresetImage } from './image-catalog.js';

describe('imageSizeMib', () => {
  it.each([
    ['alpine-3.20', 16],
    ['debian-12', 64],
    ['ubuntu-24.04', 96],
    ['empty', 0],
    ['', 0],
  ])('preset %s: %d MiB', (name, mib) => {
    expect(imageSizeMib(name)).toBe(mib);
  });

  it('derives any other size from the name alone, within 8..128 MiB', () => {
    const names = ['windows-95', 'registry.local/team/app:1.2', 'a', 'z'.repeat(128)];
    for (const name of names) {
      const mib = imageSizeMib(name)!;
      expect(mib).toBe(imageSizeMib(name));
      expect(Number.isInteger(mib) && mib >= 8 && mib <= 128).toBe(true);
    }
    expect(new Set(names.map(imageSizeMib)).size).toBeGreaterThan(1);
  });

  it('has no size for a name that is no image', () => {
    expect(imageSizeMib('Windows 95')).toBeUndefined();
    expect(imageSizeMib('.hidden')).toBeUndefined();
    expect(isPresetImage('toString')).toBe(false);
  });
});

describe('imageList', () => {
  it('lists every preset, then the images in use, with VM counts', () => {
    const list = imageList(new Map([['zeta/app:1', 2], ['debian-12', 3], ['gone', 0], ['BAD NAME', 1], ['app', 1]]));
    expect(list.map((i) => [i.name, i.preset, i.vmCount])).toEqual([
      ['alpine-3.20', true, 0],
      ['debian-12', true, 3],
      ['empty', true, 0],
      ['ubuntu-24.04', true, 0],
      ['app', false, 1],
      ['zeta/app:1', false, 2],
    ]);
    expect(list.find((i) => i.name === 'app')!.sizeMib).toBe(imageSizeMib('app'));
  });
});
