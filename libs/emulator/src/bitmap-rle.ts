import { bitmapWords } from './bitmap.js';
import { CorruptStateError } from './errors.js';

/**
 * Run-length coding of page bitmaps, as the agent reports dirty bitmaps: alternating runs of clear
 * and set pages, starting with a clear run (0 if page 0 is set), each run length an unsigned LEB128
 * varint. The runs sum to pageCount; a bitmap of pageCount 0 encodes to no bytes.
 */
export function encodeBitmapRle(bitmap: Uint32Array, pageCount: number): Uint8Array {
  let out = new Uint8Array(64);
  let len = 0;
  const push = (run: number): void => {
    if (len + 5 > out.length) {
      const bigger = new Uint8Array(out.length * 2);
      bigger.set(out);
      out = bigger;
    }
    while (run >= 0x80) {
      out[len++] = (run & 0x7f) | 0x80;
      run >>>= 7;
    }
    out[len++] = run;
  };
  let current = 0; // 0 = counting a clear run, 1 = a set run
  let run = 0;
  let page = 0;
  while (page < pageCount) {
    const word = bitmap[page >>> 5];
    const bit = page & 31;
    if (bit === 0 && page + 32 <= pageCount && (word === 0 || word === 0xffffffff)) {
      const wordBit = word === 0 ? 0 : 1;
      if (wordBit !== current) {
        push(run);
        current = wordBit;
        run = 0;
      }
      run += 32;
      page += 32;
      continue;
    }
    const b = (word >>> bit) & 1;
    if (b !== current) {
      push(run);
      current = b;
      run = 0;
    }
    run++;
    page++;
  }
  if (pageCount > 0) push(run);
  return out.subarray(0, len);
}

/** Inverse of encodeBitmapRle; throws CorruptStateError unless the runs sum exactly to pageCount. */
export function decodeBitmapRle(bytes: Uint8Array, pageCount: number): Uint32Array {
  const bitmap = new Uint32Array(bitmapWords(pageCount));
  let pos = 0;
  let page = 0;
  let set = false;
  while (pos < bytes.length) {
    let run = 0;
    let shift = 0;
    for (;;) {
      if (pos >= bytes.length) throw new CorruptStateError('bitmap RLE', 'truncated varint');
      const byte = bytes[pos++];
      run += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) break;
      shift += 7;
      if (shift > 35) throw new CorruptStateError('bitmap RLE', 'varint too long');
    }
    if (page + run > pageCount) {
      throw new CorruptStateError('bitmap RLE', `runs exceed ${pageCount} pages`);
    }
    if (set) setRange(bitmap, page, page + run);
    page += run;
    set = !set;
  }
  if (page !== pageCount) throw new CorruptStateError('bitmap RLE', `runs cover ${page} of ${pageCount} pages`);
  return bitmap;
}

/** Sets bits [from, to). */
function setRange(bitmap: Uint32Array, from: number, to: number): void {
  while (from < to && (from & 31) !== 0) {
    bitmap[from >>> 5] |= 1 << (from & 31);
    from++;
  }
  const fullEnd = to & ~31;
  if (from < fullEnd) {
    bitmap.fill(0xffffffff, from >>> 5, fullEnd >>> 5);
    from = fullEnd;
  }
  while (from < to) {
    bitmap[from >>> 5] |= 1 << (from & 31);
    from++;
  }
}
