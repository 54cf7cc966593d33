/**
 * Where the receiver's page frames land: PAGES records, PAGE_RUN pages (copied or read in place),
 * ZERO ranges and XBZRLE deltas, written into the incoming VM's memory with no object per page. Each
 * batch tells the background hasher how far the written pages reach.
 *
 * Every index, range and delta is checked before it is applied (a ProtocolError, never the
 * emulator's range error from deep inside a write): pages inside the VM, a ZERO frame's ranges inside
 * the VM and together at most the VM's pages (one frame of full-memory ranges cost ~10^11 calls), an
 * XBZRLE delta non-empty, at most a page long, decoding to at most a page.
 */
import type { GuestMemory } from '@vmm/emulator';
import type { BackgroundHasher } from '../background-hasher.js';
import { forEachZeroRange } from '../encoding/zero-runs.js';
import { xbzrleDecode } from '../encoding/xbzrle.js';
import { ProtocolError } from '../errors.js';
import type { ReceiverStats } from '../progress.js';
import { readU32 } from '../wire/codec.js';
import { BATCH_PAYLOAD_BYTES, PAGE_RECORD_BYTES, PAGE_SIZE, XBZRLE_RECORD_HEADER_BYTES } from '../wire/frame.js';
import { PinnedRun } from './pinned-run.js';

/** Fewer pages than this are not worth reads of their own (a header, the indices, the data). */
const MIN_IN_PLACE_PAGES = 16;

export class PageSink {
  private readonly scratch = new Uint8Array(PAGE_SIZE);
  /** Page indices of one run of PAGES records (a frame holds at most BATCH_PAGES). */
  private readonly runPages = new Uint32Array(BATCH_PAYLOAD_BYTES / PAGE_RECORD_BYTES);
  readonly pinned: PinnedRun;

  constructor(
    private readonly memory: GuestMemory,
    private readonly hasher: BackgroundHasher,
    private readonly stats: ReceiverStats,
  ) {
    this.pinned = new PinnedRun(memory.pool);
  }

  /** One PAGES record (or a PAGE_RUN page split across reads). */
  readonly onPage = (page: number, src: Uint8Array, offset: number): void => {
    this.checkPage(page);
    this.memory.writePage(page, src, offset);
    this.hasher.noteWritten(page);
    this.stats.pagesRaw++;
  };

  /** `count` whole PAGES records in one chunk. */
  readonly onPages = (src: Uint8Array, offset: number, count: number): void => {
    const pages = this.runPages;
    const pageCount = this.memory.pageCount;
    for (let i = 0, at = offset; i < count; i++, at += PAGE_RECORD_BYTES) {
      const page = readU32(src, at);
      if (page >= pageCount) throw this.outside(page);
      pages[i] = page;
    }
    this.memory.writePagesFrom(pages, count, src, offset + 4, PAGE_RECORD_BYTES);
    if (count > 0) this.hasher.noteWritten(pages[count - 1]!);
    this.stats.pagesRaw += count;
  };

  /** Whole PAGE_RUN pages in one chunk, copied out of the read buffer. */
  readonly onPageRun = (pages: Uint32Array, src: Uint8Array, offset: number): void => {
    this.checkPages(pages);
    this.memory.writePagesFrom(pages, pages.length, src, offset, PAGE_SIZE);
    this.hasher.noteWritten(pages[pages.length - 1]!);
    this.stats.pagesRaw += pages.length;
  };

  /**
   * A PAGE_RUN into frames that follow each other (round 0 into the reservation: nearly always) is
   * read by the kernel straight into them: no copy out of the read buffer. The socket's next read is
   * armed with the view before anything else can happen, and stays armed if the migration ends
   * meanwhile (an abort, the VM discarded): its frames are pinned until the run completed or, failing
   * that, the socket closed, so that no read can land in a frame that was freed and handed to another VM.
   */
  readonly runTarget = (pages: Uint32Array): Uint8Array | null => {
    this.checkPages(pages);
    if (pages.length < MIN_IN_PLACE_PAGES) return null;
    const memory = this.memory;
    const frame = memory.prepareOverwrite(pages);
    if (frame === -1) return null;
    this.pinned.pin(frame, pages.length);
    const off = memory.pool.frameByteOffset(frame);
    return memory.pool.slabBytes(frame).subarray(off, off + pages.length * PAGE_SIZE);
  };

  readonly onRunInPlace = (pages: Uint32Array, landedBytes: number): void => {
    this.memory.finishOverwrite(pages);
    this.pinned.unpin();
    this.hasher.noteWritten(pages[pages.length - 1]!);
    this.stats.pagesRaw += pages.length;
    this.stats.bytesInPlace += landedBytes;
  };

  /** A ZERO frame: its ranges' pages become zero (unbacked). The whole frame is checked first. */
  applyZero(payload: Uint8Array): void {
    const memory = this.memory;
    const pageCount = memory.pageCount;
    let total = 0;
    forEachZeroRange(payload, (first, count) => {
      if (count === 0 || first >= pageCount || count > pageCount - first) {
        throw new ProtocolError(`ZERO range ${first}+${count} is not inside the VM's ${pageCount} pages`);
      }
      total += count;
    });
    // A page appears at most once per round, and a round's zero batch never spans two rounds.
    if (total > pageCount) throw new ProtocolError(`ZERO frame of ${total} pages, more than the VM's ${pageCount}`);
    forEachZeroRange(payload, (first, count) => {
      for (let p = first, end = first + count; p < end; p++) memory.zeroPage(p);
    });
    this.stats.pagesZero += total;
  }

  /** An XBZRLE frame: each delta is XORed into the page's current content. */
  applyXbzrle(payload: Uint8Array): void {
    const memory = this.memory;
    let highest = -1;
    let off = 0;
    while (off < payload.length) {
      if (off + XBZRLE_RECORD_HEADER_BYTES > payload.length) throw new ProtocolError('truncated XBZRLE record');
      const page = readU32(payload, off);
      const bytes = payload[off + 4]! | (payload[off + 5]! << 8);
      off += XBZRLE_RECORD_HEADER_BYTES;
      this.checkPage(page);
      // The sender sends nothing for an unchanged page and the raw page when a delta would not be smaller.
      if (bytes === 0 || bytes > PAGE_SIZE) throw new ProtocolError(`XBZRLE delta of ${bytes} bytes for page ${page} (1..${PAGE_SIZE})`);
      if (off + bytes > payload.length) throw new ProtocolError('truncated XBZRLE record');
      memory.readPage(page, this.scratch, 0);
      // Decoding checks that the runs end inside the page (the decoded length) and inside the delta.
      if (!xbzrleDecode(payload, off, bytes, this.scratch, 0)) throw new ProtocolError(`malformed XBZRLE delta for page ${page}`);
      memory.writePage(page, this.scratch, 0);
      if (page > highest) highest = page;
      off += bytes;
      this.stats.pagesXbzrle++;
    }
    this.hasher.noteWritten(highest);
  }

  private checkPage(page: number): void {
    if (page >= this.memory.pageCount) throw this.outside(page);
  }

  /** A batch is checked before any of it is written. */
  private checkPages(pages: Uint32Array): void {
    const pageCount = this.memory.pageCount;
    for (let i = 0; i < pages.length; i++) if (pages[i]! >= pageCount) throw this.outside(pages[i]!);
  }

  private outside(page: number): ProtocolError {
    return new ProtocolError(`page ${page} is outside the VM's ${this.memory.pageCount} pages`);
  }
}
