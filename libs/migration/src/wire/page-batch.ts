/**
 * Builds PAGES, XBZRLE and ZERO frames for the sender. Each page is copied once, from guest memory
 * straight into a ring buffer of the FrameWriter; no object is created per page.
 * Callers check `*Full` before adding and await the matching flush; every round ends with flushAll().
 * Each non-zero page's frame hash is cached as it is copied (await initHashing() before adding pages).
 */
import { cacheFrameHash, type GuestMemory } from '@vmm/emulator';
import { ZeroRangeBuilder } from '../encoding/zero-runs.js';
import { xbzrleEncode } from '../encoding/xbzrle.js';
import type { XbzrleCache } from '../encoding/xbzrle-cache.js';
import { writeFrameHeader, writeU32 } from './codec.js';
import {
  BATCH_PAYLOAD_BYTES,
  FRAME_HEADER_BYTES,
  FrameType,
  PAGE_RECORD_BYTES,
  PAGE_SIZE,
  XBZRLE_RECORD_HEADER_BYTES,
} from './frame.js';
import type { FrameWriter } from './frame-writer.js';

const ZERO_FRAME_PAYLOAD_BYTES = 64 * 1024;

export interface BatchCounters {
  pagesRaw: number;
  pagesZero: number;
  pagesXbzrle: number;
  /** Dirty pages whose content equals the cached version: nothing sent. */
  pagesUnchanged: number;
  /** XBZRLE cache hits whose encoding would not beat a raw page. */
  xbzrleOverflows: number;
}

export class PageBatcher {
  private raw: Buffer | null = null;
  private rawFill = 0;
  private xbz: Buffer | null = null;
  private xbzFill = 0;
  private readonly zeroBuf = Buffer.allocUnsafe(FRAME_HEADER_BYTES + ZERO_FRAME_PAYLOAD_BYTES);
  private readonly zeros = new ZeroRangeBuilder(this.zeroBuf, FRAME_HEADER_BYTES, ZERO_FRAME_PAYLOAD_BYTES);
  /** One aligned page: the XBZRLE path reads the page here once, then encodes and caches from it. */
  private readonly scratch = new Uint8Array(PAGE_SIZE);
  private readonly scratchWords = new Uint32Array(this.scratch.buffer);
  /**
   * Hash each raw page as it is copied (default). The sender turns it off for round 0 at unlimited
   * bandwidth, where it hashes in a pass while waiting for the round's ROUND_ACK instead.
   */
  hashOnCopy = true;
  readonly counters: BatchCounters = { pagesRaw: 0, pagesZero: 0, pagesXbzrle: 0, pagesUnchanged: 0, xbzrleOverflows: 0 };

  constructor(
    private readonly memory: GuestMemory,
    private readonly writer: FrameWriter,
    private readonly cache: XbzrleCache | null,
  ) {}

  /** True when the next page may not fit: `await flushFull()` first. */
  get full(): boolean {
    return (
      this.raw === null ||
      this.rawFill + PAGE_RECORD_BYTES > BATCH_PAYLOAD_BYTES ||
      (this.cache !== null && (this.xbz === null || this.xbzFill + XBZRLE_RECORD_HEADER_BYTES + PAGE_SIZE > BATCH_PAYLOAD_BYTES)) ||
      this.zeros.full
    );
  }

  /** Sends whichever batch is full and acquires fresh buffers. */
  async flushFull(): Promise<void> {
    if (this.raw !== null && this.rawFill + PAGE_RECORD_BYTES > BATCH_PAYLOAD_BYTES) await this.flushRaw();
    if (this.xbz !== null && this.xbzFill + XBZRLE_RECORD_HEADER_BYTES + PAGE_SIZE > BATCH_PAYLOAD_BYTES) await this.flushXbz();
    if (this.zeros.full) await this.flushZeros();
    if (this.raw === null) this.raw = await this.writer.acquire();
    if (this.cache !== null && this.xbz === null) this.xbz = await this.writer.acquire();
  }

  /** Sends everything pending (end of a round). */
  async flushAll(): Promise<void> {
    await this.flushZeros();
    await this.flushXbz();
    await this.flushRaw();
  }

  /**
   * Queues one page: zero pages as ranges; with XBZRLE (after round 0) a delta against the cached
   * version when it is smaller than a page; otherwise the raw page.
   */
  add(page: number, useDelta: boolean): void {
    const memory = this.memory;
    const cache = this.cache;
    const frame = memory.frameOf(page);
    if (frame === -1) {
      cache?.invalidate(page);
      this.zeros.add(page);
      this.counters.pagesZero++;
      return;
    }
    if (cache === null) {
      const raw = this.raw!;
      writeU32(raw, FRAME_HEADER_BYTES + this.rawFill, page);
      // Straight from the frame's slab (a plain Uint8Array: its subarray is cheap, unlike a Buffer's).
      const pool = memory.pool;
      const off = pool.frameByteOffset(frame);
      raw.set(pool.slabBytes(frame).subarray(off, off + PAGE_SIZE), FRAME_HEADER_BYTES + this.rawFill + 4);
      // Hash while the page is in cache: the digests at the switch-over then only hash later writes.
      if (this.hashOnCopy) cacheFrameHash(pool, frame);
      this.rawFill += PAGE_RECORD_BYTES;
      this.counters.pagesRaw++;
      return;
    }
    memory.readPage(page, this.scratch, 0);
    cacheFrameHash(memory.pool, frame);
    const slot = useDelta ? cache.lookup(page) : -1;
    if (slot >= 0) {
      const xbz = this.xbz!;
      const at = FRAME_HEADER_BYTES + this.xbzFill;
      const n = xbzrleEncode(cache.words, cache.wordOffset(slot), this.scratchWords, 0, xbz, at + XBZRLE_RECORD_HEADER_BYTES, PAGE_SIZE);
      if (n === 0) {
        this.counters.pagesUnchanged++;
        return;
      }
      if (n > 0) {
        writeU32(xbz, at, page);
        xbz[at + 4] = n & 0xff;
        xbz[at + 5] = n >>> 8;
        this.xbzFill += XBZRLE_RECORD_HEADER_BYTES + n;
        this.counters.pagesXbzrle++;
        cache.insert(page, this.scratch, 0);
        return;
      }
      this.counters.xbzrleOverflows++;
    }
    cache.insert(page, this.scratch, 0);
    const raw = this.raw!;
    writeU32(raw, FRAME_HEADER_BYTES + this.rawFill, page);
    raw.set(this.scratch, FRAME_HEADER_BYTES + this.rawFill + 4);
    this.rawFill += PAGE_RECORD_BYTES;
    this.counters.pagesRaw++;
  }

  /** Queues `count` zero pages from `first` (round 0 skips runs of unbacked pages this way). */
  addZeroRange(first: number, count: number): void {
    for (let p = first; p < first + count; p++) this.cache?.invalidate(p);
    this.zeros.addRange(first, count);
    this.counters.pagesZero += count;
  }

  private async flushRaw(): Promise<void> {
    if (this.raw === null || this.rawFill === 0) return;
    const buf = this.raw;
    const bytes = this.rawFill;
    this.raw = null;
    this.rawFill = 0;
    await this.writer.sendBatch(buf, FrameType.PAGES, bytes);
  }

  private async flushXbz(): Promise<void> {
    if (this.xbz === null || this.xbzFill === 0) return;
    const buf = this.xbz;
    const bytes = this.xbzFill;
    this.xbz = null;
    this.xbzFill = 0;
    await this.writer.sendBatch(buf, FrameType.XBZRLE, bytes);
  }

  private async flushZeros(): Promise<void> {
    this.zeros.close();
    if (this.zeros.fill === 0) return;
    const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + this.zeros.fill);
    this.zeroBuf.copy(frame, FRAME_HEADER_BYTES, FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + this.zeros.fill);
    writeFrameHeader(frame, 0, FrameType.ZERO, this.zeros.fill);
    this.zeros.reset();
    await this.writer.sendFrame(frame);
  }
}
