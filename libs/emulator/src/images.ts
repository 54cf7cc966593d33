import { InvalidArgumentError, UnknownImageError } from './errors.js';
import { PAGE_SIZE, PAGE_WORDS } from './frame-pool.js';
import type { GuestMemory } from './guest-memory.js';
import { hashString32, mix32, Xoshiro128 } from './prng.js';

/** A guest image: `pages` pages of deterministic content generated from `seed`, loaded at guest page 0. */
export interface ImageSpec {
  name: string;
  pages: number;
  seed: number;
}

const MIB_PAGES = (1024 * 1024) / PAGE_SIZE;

export const IMAGES: Record<string, ImageSpec> = {
  empty: { name: 'empty', pages: 0, seed: 0 },
  'alpine-3.20': { name: 'alpine-3.20', pages: 16 * MIB_PAGES, seed: 0x41_03_14 },
  'debian-12': { name: 'debian-12', pages: 64 * MIB_PAGES, seed: 0xde_12_00 },
  'ubuntu-24.04': { name: 'ubuntu-24.04', pages: 96 * MIB_PAGES, seed: 0xb0_24_04 },
};

/**
 * Image names beyond the presets: 1–128 characters from [a-z0-9._:/-], starting with a letter or digit
 * (`registry.example/team/app:1.2` reads as an image reference, yet is safe in paths and command lines).
 */
export const IMAGE_NAME_PATTERN = /^[a-z0-9][a-z0-9._:/-]{0,127}$/;
/** Size range of an image derived from its name, in MiB (inclusive). */
export const DERIVED_IMAGE_MIB = { min: 8, max: 128 } as const;

/**
 * The image of that name: a preset (IMAGES), `empty` for the empty name, or, for any other name that
 * matches IMAGE_NAME_PATTERN, an image whose seed and size (DERIVED_IMAGE_MIB) derive from the name
 * alone, so that every agent (and the QEMU guest's generator) agrees on it without a catalog.
 * undefined for a name that does not match (callers throw UnknownImageError naming `image`).
 */
export function getImage(name: string): ImageSpec | undefined {
  if (typeof name !== 'string') return undefined;
  if (name === '') return IMAGES.empty;
  if (Object.hasOwn(IMAGES, name)) return IMAGES[name];
  if (!IMAGE_NAME_PATTERN.test(name)) return undefined;
  const seed = hashString32(name);
  const span = DERIVED_IMAGE_MIB.max - DERIVED_IMAGE_MIB.min + 1;
  // A second, independent mix of the name's hash for the size, so that size and seed do not correlate.
  const mib = DERIVED_IMAGE_MIB.min + (mix32(seed ^ 0x5bd1e995) % span);
  return { name, pages: mib * MIB_PAGES, seed };
}

// Shape of an image's content, close to what KSM finds in real guests right after boot.
const ZERO_PAGE_FRACTION = 0.2;
const DUPLICATE_PAGE_FRACTION = 0.15; // copies of another page of the same image

/**
 * An image's content, generated once per process: `slotOf[page]` is -1 for a zero page, otherwise the
 * index of its 4 KiB content in `data` (pages duplicated within the image share a slot).
 */
export interface ImageTemplate {
  spec: ImageSpec;
  slotOf: Int32Array;
  data: Uint8Array;
  zeroPages: number;
  duplicatePages: number;
  uniqueSlots: number;
}

/**
 * Generated templates, most recently used last. Any name is an image now, so the cache is bounded:
 * templates beyond TEMPLATE_CACHE_BYTES (least recently used first) are dropped and regenerated when
 * asked for again (deterministic, so nothing changes but the time).
 */
const templates = new Map<string, ImageTemplate>();
let templateCacheBytes = 256 * 1024 * 1024;

/** Sets the template cache's byte budget (tests, memory-tight agents); returns the previous one. */
export function setImageTemplateCacheBytes(bytes: number): number {
  const previous = templateCacheBytes;
  templateCacheBytes = bytes;
  return previous;
}

export function imageTemplate(name: string): ImageTemplate {
  const spec = getImage(name);
  if (!spec) throw new UnknownImageError(name);
  let t = templates.get(spec.name);
  if (t) {
    templates.delete(spec.name); // re-inserted below as the most recently used
  } else {
    t = generate(spec);
  }
  templates.set(spec.name, t);
  let bytes = 0;
  for (const held of templates.values()) bytes += held.data.byteLength;
  for (const [heldName, held] of templates) {
    if (bytes <= templateCacheBytes || held === t) break;
    templates.delete(heldName);
    bytes -= held.data.byteLength;
  }
  return t;
}

function generate(spec: ImageSpec): ImageTemplate {
  const rng = new Xoshiro128(spec.seed);
  const slotOf = new Int32Array(spec.pages);
  const words = new Uint32Array(spec.pages * PAGE_WORDS); // trimmed to the slots used below
  let slots = 0;
  let zeroPages = 0;
  let duplicatePages = 0;
  for (let page = 0; page < spec.pages; page++) {
    const r = rng.nextFloat();
    if (r < ZERO_PAGE_FRACTION) {
      slotOf[page] = -1;
      zeroPages++;
    } else if (r < ZERO_PAGE_FRACTION + DUPLICATE_PAGE_FRACTION && slots > 0) {
      slotOf[page] = rng.nextBelow(slots);
      duplicatePages++;
    } else {
      const w0 = slots * PAGE_WORDS;
      rng.fill(words, w0, w0 + PAGE_WORDS);
      words[w0] |= 1; // a unique page is never all zero
      slotOf[page] = slots++;
    }
  }
  const data = new Uint8Array(words.buffer, 0, slots * PAGE_SIZE).slice();
  return { spec, slotOf, data, zeroPages, duplicatePages, uniqueSlots: slots };
}

/** Copies the image into guest pages [0, image.pages): the VM gets its own frames, as a booted guest would. */
export function loadImage(memory: GuestMemory, name: string): void {
  const t = imageTemplate(name);
  if (t.spec.pages > memory.pageCount) {
    throw new InvalidArgumentError('memoryMib', `image ${name} needs ${t.spec.pages} pages, memory has ${memory.pageCount}`);
  }
  for (let page = 0; page < t.spec.pages; page++) {
    const slot = t.slotOf[page];
    if (slot !== -1) memory.writePage(page, t.data, slot * PAGE_SIZE);
  }
}
