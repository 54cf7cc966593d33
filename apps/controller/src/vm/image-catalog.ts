/**
 * Image sizes as the agents' emulator makes them (libs/emulator images.ts `IMAGES` and `getImage`):
 * the presets' own sizes, and for any other name a size derived from the name alone. A copy, because
 * the controller must not import the emulator; test/images-labels-retention.test.ts checks that both
 * agree. Pure.
 */
import { DEFAULT_IMAGE, IMAGE_NAME_PATTERN } from './vm-validation.js';

/** The presets and their sizes in MiB (libs/emulator IMAGES), in the order ListImages lists them. */
export const PRESET_IMAGES: Readonly<Record<string, number>> = Object.freeze({
  'alpine-3.20': 16,
  'debian-12': 64,
  empty: 0,
  'ubuntu-24.04': 96,
});

/** Size range of an image derived from its name, in MiB, inclusive (libs/emulator DERIVED_IMAGE_MIB). */
const DERIVED_IMAGE_MIB = { min: 8, max: 128 } as const;

/** FNV-1a, 32 bits (libs/emulator prng.ts hashString32). */
function hashString32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** The murmur3 finaliser (libs/emulator prng.ts mix32). */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

export function isPresetImage(name: string): boolean {
  return Object.hasOwn(PRESET_IMAGES, name);
}

/** The image's size in MiB: a preset's, else the one its name determines; undefined for a name that is no image. */
export function imageSizeMib(name: string): number | undefined {
  const image = name === '' ? DEFAULT_IMAGE : name;
  if (isPresetImage(image)) return PRESET_IMAGES[image];
  if (!IMAGE_NAME_PATTERN.test(image)) return undefined;
  const span = DERIVED_IMAGE_MIB.max - DERIVED_IMAGE_MIB.min + 1;
  return DERIVED_IMAGE_MIB.min + (mix32(hashString32(image) ^ 0x5bd1e995) % span);
}

/**
 * ListImages' answer from the number of VMs per image: every preset (also unused ones), then every
 * other image used by at least one VM, each group by name.
 */
export function imageList(vmCounts: ReadonlyMap<string, number>): { name: string; sizeMib: number; preset: boolean; vmCount: number }[] {
  const presets = Object.keys(PRESET_IMAGES).sort();
  const others = [...vmCounts]
    .filter(([name, count]) => count > 0 && !isPresetImage(name) && imageSizeMib(name) !== undefined)
    .map(([name]) => name)
    .sort();
  return [...presets, ...others].map((name) => ({
    name,
    sizeMib: imageSizeMib(name)!,
    preset: isPresetImage(name),
    vmCount: vmCounts.get(name) ?? 0,
  }));
}
