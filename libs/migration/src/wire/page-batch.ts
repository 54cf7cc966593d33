/**
 * Builds PAGE_RUN, PAGES, XBZRLE and ZERO frames for the sender; no object is created per page.
 *
 * On a socket without XBZRLE, pages whose frames follow each other in one slab (round 0 of a VM that
 * filled its memory in order is nearly all such runs) travel as PAGE_RUN frames written straight from
 * the slab: no copy in user space, which was half of the sender's CPU per GiB. Their frames are pinned
 * (one more reference: a guest write then copies the page away, KSM cannot free the frame) from the
 * moment a page joins a run until the socket took the bytes. Shorter runs, and every page otherwise,
 * are copied once from guest memory into a ring buffer of the FrameWriter (PAGES).
 * Callers check `full` before adding and await flushFull(); every round ends with flushAll(), and the
 * sender calls release() when it gives up. Each non-zero page's frame hash is cached as it is added
 * (await initHashing() before adding pages).
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
  ZERO_PAYLOAD_BYTES,
} from './frame.js';
import type { FrameWriter } from './frame-writer.js';


/**
 * Runs at least this long go without a copy: below it, a frame of its own (a header, two writes, pins)
 * costs more than copying the pages into a PAGES batch.
 */
export const MIN_RUN_PAGES = 16;
/** Pages per PAGE_RUN frame (the PAGES batch size: 1 MiB of data). */
const MAX_RUN_PAGES = BATCH_PAYLOAD_BYTES / PAGE_RECORD_BYTES;

export interface BatchCounters {
  pagesRaw: number;
  /** Of pagesRaw: sent in PAGE_RUN frames straight from the frames. */
  pagesWithoutCopy: number;
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
  private readonly zeroBuf = Buffer.allocUnsafe(FRAME_HEADER_BYTES + ZERO_PAYLOAD_BYTES);
  private readonly zeros = new ZeroRangeBuilder(this.zeroBuf, FRAME_HEADER_BYTES, ZERO_PAYLOAD_BYTES);
  /** One aligned page: the XBZRLE path reads the page here once, then encodes and caches from it. */
  private readonly scratch = new Uint8Array(PAGE_SIZE);
  private readonly scratchWords = new Uint32Array(this.scratch.buffer);
  /** The open run: its pages' indices, its first frame (the others follow it in one slab), its length. */
  private readonly runPages = new Uint32Array(MAX_RUN_PAGES);
  private runFrame = -1;
  private runCount = 0;
  /** A closed run waiting to be sent (the next flushFull sends it). */
  private closedRun: { head: Buffer; data: Uint8Array; firstFrame: number; count: number } | null = null;
  /** Runs go as PAGE_RUN, straight from the frames: see enablePageRuns(). */
  private pageRuns = false;
  /**
   * Hash each raw page as it is copied (default). The sender turns it off for round 0 at unlimited
   * bandwidth, where it hashes in a pass while waiting for the round's ROUND_ACK instead.
   */
  hashOnCopy = true;
  readonly counters: BatchCounters = { pagesRaw: 0, pagesWithoutCopy: 0, pagesZero: 0, pagesXbzrle: 0, pagesUnchanged: 0, xbzrleOverflows: 0 };

  constructor(
    private readonly memory: GuestMemory,
    private readonly writer: FrameWriter,
    private readonly cache: XbzrleCache | null,
  ) {}

  /**
   * The receiver speaks PAGE_RUN (protocol version 2): from now on runs go without a copy, where the
   * writer allows it (a socket) and no XBZRLE cache needs a copy of every page anyway.
   */
  enablePageRuns(): void {
    this.pageRuns = this.cache === null && this.writer.zeroCopy;
  }

  /** True when the next page may not fit: `await flushFull()` first. */
  get full(): boolean {
    return (
      !this.rawFits(this.rawRecordsKept) ||
      this.closedRun !== null ||
      (this.cache !== null && (this.xbz === null || this.xbzFill + XBZRLE_RECORD_HEADER_BYTES + PAGE_SIZE > BATCH_PAYLOAD_BYTES)) ||
      this.zeros.full
    );
  }

  /** The PAGES batch has a buffer with room for `records` more records. */
  private rawFits(records: number): boolean {
    return this.raw !== null && this.rawFill + records * PAGE_RECORD_BYTES <= BATCH_PAYLOAD_BYTES;
  }

  /**
   * Records the PAGES batch keeps room for before each add(): with runs, adding a page may close a
   * short open run into it.
   */
  private get rawRecordsKept(): number {
    return this.pageRuns ? MIN_RUN_PAGES : 1;
  }

  /** Sends whichever batch is full and acquires fresh buffers. */
  async flushFull(): Promise<void> {
    await this.sendClosedRun();
    if (this.raw !== null && !this.rawFits(this.rawRecordsKept)) await this.flushRaw();
    if (this.xbz !== null && this.xbzFill + XBZRLE_RECORD_HEADER_BYTES + PAGE_SIZE > BATCH_PAYLOAD_BYTES) await this.flushXbz();
    if (this.zeros.full) await this.flushZeros();
    if (this.raw === null) this.raw = await this.writer.acquire();
    if (this.cache !== null && this.xbz === null) this.xbz = await this.writer.acquire();
  }

  /** Sends everything pending (end of a round). */
  async flushAll(): Promise<void> {
    await this.sendClosedRun(); // the open run may close long below
    if (this.runCount > 0 && this.runCount < MIN_RUN_PAGES && !this.rawFits(this.runCount)) {
      await this.flushRaw();
      this.raw = await this.writer.acquire();
    }
    this.closeRun();
    await this.sendClosedRun();
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
    if (this.pageRuns) {
      this.addToRun(page, frame);
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

  /** Unpins the frames of runs not sent (the sender gave up). Idempotent. */
  release(): void {
    const pool = this.memory.pool;
    for (let i = 0; i < this.runCount; i++) pool.decRef(this.runFrame + i);
    this.runCount = 0;
    const closed = this.closedRun;
    this.closedRun = null;
    if (closed) for (let i = 0; i < closed.count; i++) pool.decRef(closed.firstFrame + i);
  }

  /** Extends the open run with `page` (pinning its frame), or closes it and opens another. */
  private addToRun(page: number, frame: number): void {
    const pool = this.memory.pool;
    const n = this.runCount;
    const extends_ = n > 0 && n < MAX_RUN_PAGES && frame === this.runFrame + n && frame % pool.slabFrames !== 0;
    if (!extends_) {
      this.closeRun();
      this.runFrame = frame;
    }
    pool.incRef(frame);
    this.runPages[this.runCount++] = page;
    if (this.hashOnCopy) cacheFrameHash(pool, frame);
    this.counters.pagesRaw++;
  }

  /** Ends the open run: a long one becomes the closed run (sent as it is), a short one is copied into PAGES. */
  private closeRun(): void {
    const count = this.runCount;
    if (count === 0) return;
    // Misuse (add() without checking `full`) throws before anything changes: release() still unpins.
    if (count >= MIN_RUN_PAGES ? this.closedRun !== null : !this.rawFits(count)) {
      throw new Error('PageBatcher: add() while full (await flushFull() first)');
    }
    this.runCount = 0;
    const pool = this.memory.pool;
    const first = this.runFrame;
    const slab = pool.slabBytes(first);
    const off = pool.frameByteOffset(first);
    if (count >= MIN_RUN_PAGES) {
      const head = Buffer.allocUnsafe(FRAME_HEADER_BYTES + count * 4);
      writeFrameHeader(head, 0, FrameType.PAGE_RUN, count * PAGE_RECORD_BYTES);
      for (let i = 0; i < count; i++) writeU32(head, FRAME_HEADER_BYTES + i * 4, this.runPages[i]!);
      this.closedRun = { head, data: slab.subarray(off, off + count * PAGE_SIZE), firstFrame: first, count };
      this.counters.pagesWithoutCopy += count;
      return;
    }
    const raw = this.raw!;
    for (let i = 0; i < count; i++) {
      const at = FRAME_HEADER_BYTES + this.rawFill;
      writeU32(raw, at, this.runPages[i]!);
      raw.set(slab.subarray(off + i * PAGE_SIZE, off + (i + 1) * PAGE_SIZE), at + 4);
      this.rawFill += PAGE_RECORD_BYTES;
      pool.decRef(first + i);
    }
  }

  private async sendClosedRun(): Promise<void> {
    const run = this.closedRun;
    if (run === null) return;
    this.closedRun = null;
    const pool = this.memory.pool;
    await this.writer.sendWithoutCopy(run.head, run.data, () => {
      for (let i = 0; i < run.count; i++) pool.decRef(run.firstFrame + i);
    });
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
