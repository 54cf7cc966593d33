/**
 * Zero pages travel as ranges (u32 first page, u32 count), never as 4 KiB of zeros.
 * The builder coalesces consecutive pages into one range; records go into a caller-owned buffer.
 */
import { ZERO_RECORD_BYTES } from '../wire/frame.js';
import { readU32, writeU32 } from '../wire/codec.js';

export class ZeroRangeBuilder {
  private first = -1;
  private count = 0;
  /** Bytes of complete records written into `buf` from `start`. */
  fill = 0;

  constructor(
    private readonly buf: Uint8Array,
    private readonly start: number,
    private readonly capacityBytes: number,
  ) {}

  /** True when one more range might not fit: flush before adding. */
  get full(): boolean {
    return this.fill + 2 * ZERO_RECORD_BYTES > this.capacityBytes;
  }

  get empty(): boolean {
    return this.fill === 0 && this.count === 0;
  }

  /** Adds one zero page. Consecutive pages extend the open range. */
  add(page: number): void {
    if (this.count > 0 && page === this.first + this.count) {
      this.count++;
      return;
    }
    this.close();
    this.first = page;
    this.count = 1;
  }

  /** Adds `count` zero pages from `first`. */
  addRange(first: number, count: number): void {
    if (count <= 0) return;
    if (this.count > 0 && first === this.first + this.count) {
      this.count += count;
      return;
    }
    this.close();
    this.first = first;
    this.count = count;
  }

  /** Writes the open range as a record; afterwards `fill` covers everything added. */
  close(): void {
    if (this.count === 0) return;
    writeU32(this.buf, this.start + this.fill, this.first);
    writeU32(this.buf, this.start + this.fill + 4, this.count);
    this.fill += ZERO_RECORD_BYTES;
    this.count = 0;
    this.first = -1;
  }

  reset(): void {
    this.fill = 0;
    this.count = 0;
    this.first = -1;
  }
}

/** Calls `apply(first, count)` for each range of a ZERO payload. */
export function forEachZeroRange(payload: Uint8Array, apply: (first: number, count: number) => void): void {
  for (let off = 0; off + ZERO_RECORD_BYTES <= payload.length; off += ZERO_RECORD_BYTES) {
    apply(readU32(payload, off), readU32(payload, off + 4));
  }
}
