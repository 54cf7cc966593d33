/**
 * XBZRLE as in QEMU (migration/xbzrle.c): the XOR of a page against its last sent version, coded as
 * repeated (ULEB128 zero-run length, ULEB128 non-zero-run length, non-zero-run bytes); a trailing zero
 * run is omitted. Runs are found a 32-bit word at a time over aligned Uint32Array views.
 */
import { PAGE_SIZE } from '../wire/frame.js';

const WORDS = PAGE_SIZE / 4;

function putUleb(out: Uint8Array, off: number, value: number): number {
  while (value >= 0x80) {
    out[off++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  out[off++] = value;
  return off;
}

/**
 * Encodes the page at next[nextWord…] against the page at prev[prevWord…] (word offsets) into out[outOffset…].
 * @returns encoded byte count, 0 when the pages are equal, or -1 when it would reach `limitBytes`
 *   (the caller then sends the page raw).
 */
export function xbzrleEncode(
  prev: Uint32Array,
  prevWord: number,
  next: Uint32Array,
  nextWord: number,
  out: Uint8Array,
  outOffset: number,
  limitBytes: number,
): number {
  const end = outOffset + limitBytes;
  let off = outOffset;
  const delta = nextWord - prevWord;
  const last = prevWord + WORDS;
  let w = prevWord;
  while (w < last) {
    const zeroStart = w;
    while (w < last && prev[w] === next[w + delta]) w++;
    if (w === last) break; // trailing zero run is implicit
    const dirtyStart = w;
    while (w < last && prev[w] !== next[w + delta]) w++;
    const dirtyBytes = (w - dirtyStart) * 4;
    // Worst case of two 3-byte ULEB128 lengths ahead of the run.
    if (off + 6 + dirtyBytes >= end) return -1;
    off = putUleb(out, off, (dirtyStart - zeroStart) * 4);
    off = putUleb(out, off, dirtyBytes);
    for (let i = dirtyStart; i < w; i++) {
      const x = (prev[i]! ^ next[i + delta]!) >>> 0;
      out[off] = x & 0xff;
      out[off + 1] = (x >>> 8) & 0xff;
      out[off + 2] = (x >>> 16) & 0xff;
      out[off + 3] = x >>> 24;
      off += 4;
    }
  }
  return off - outOffset;
}

/**
 * XORs an encoded delta into `page` (one page at page[pageOffset…]) in place.
 * @returns false when the encoding is malformed or runs past the page.
 */
export function xbzrleDecode(
  src: Uint8Array,
  srcOffset: number,
  srcBytes: number,
  page: Uint8Array,
  pageOffset: number,
): boolean {
  const end = srcOffset + srcBytes;
  let off = srcOffset;
  let pos = 0;
  while (off < end) {
    let zrun = 0;
    let shift = 0;
    let b: number;
    do {
      if (off >= end || shift > 21) return false;
      b = src[off++]!;
      zrun |= (b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80);
    let nzrun = 0;
    shift = 0;
    do {
      if (off >= end || shift > 21) return false;
      b = src[off++]!;
      nzrun |= (b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80);
    pos += zrun;
    if (pos + nzrun > PAGE_SIZE || off + nzrun > end || nzrun === 0) return false;
    const base = pageOffset + pos;
    for (let i = 0; i < nzrun; i++) page[base + i] ^= src[off + i]!;
    off += nzrun;
    pos += nzrun;
  }
  return true;
}
