import { InvalidArgumentError, UnknownImageError } from './errors.js';
import { PAGE_SIZE, PAGE_WORDS } from './frame-pool.js';
import type { GuestMemory } from './guest-memory.js';
import { Xoshiro128 } from './prng.js';

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

export function getImage(name: string): ImageSpec | undefined {
  return Object.hasOwn(IMAGES, name) ? IMAGES[name] : undefined;
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

const templates = new Map<string, ImageTemplate>();

export function imageTemplate(name: string): ImageTemplate {
  const spec = getImage(name);
  if (!spec) throw new UnknownImageError(name);
  let t = templates.get(name);
  if (!t) {
    t = generate(spec);
    templates.set(name, t);
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
