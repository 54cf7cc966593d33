/**
 * Page bitmaps: 1 bit per page, bit (page & 31) of word (page >>> 5), as in KVM's dirty bitmaps.
 * Helpers scan one 32-bit word at a time and allocate nothing.
 */

/** Words needed for `pageCount` bits. */
export function bitmapWords(pageCount: number): number {
  return (pageCount + 31) >>> 5;
}

export function createBitmap(pageCount: number): Uint32Array {
  return new Uint32Array(bitmapWords(pageCount));
}

export function testBit(bitmap: Uint32Array, page: number): boolean {
  return (bitmap[page >>> 5] & (1 << (page & 31))) !== 0;
}

export function setBit(bitmap: Uint32Array, page: number): void {
  bitmap[page >>> 5] |= 1 << (page & 31);
}

/** Number of set bits (SWAR popcount per word). */
export function popcount(bitmap: Uint32Array): number {
  let total = 0;
  for (let i = 0; i < bitmap.length; i++) {
    let v = bitmap[i];
    if (v === 0) continue;
    v = v - ((v >>> 1) & 0x55555555);
    v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
    total += (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
  }
  return total;
}

/** The first set bit at or after `from`, or -1 (bits at or past `pageCount` are ignored). */
export function nextSetBit(bitmap: Uint32Array, from: number, pageCount: number): number {
  if (from >= pageCount) return -1;
  let w = from >>> 5;
  let word = bitmap[w] & (~0 << (from & 31));
  const words = bitmapWords(pageCount);
  while (word === 0) {
    if (++w >= words) return -1;
    word = bitmap[w];
  }
  const page = (w << 5) + (31 - Math.clz32(word & -word));
  return page < pageCount ? page : -1;
}

/** Sets every bit of [0, pageCount) (bits past pageCount stay clear). */
export function setAll(bitmap: Uint32Array, pageCount: number): void {
  const full = pageCount >>> 5;
  bitmap.fill(0xffffffff, 0, full);
  if (pageCount & 31) bitmap[full] = (1 << (pageCount & 31)) - 1;
}
