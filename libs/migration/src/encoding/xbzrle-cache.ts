/**
 * The sender's XBZRLE page cache: the last sent version of recently sent pages, in one slab.
 * Bounded by the policy's cache size; clock (second-chance) eviction; typed arrays only.
 */
import { PAGE_SIZE } from '../wire/frame.js';

const WORDS = PAGE_SIZE / 4;

export class XbzrleCache {
  readonly slots: number;
  /** Slot s holds its page at words[s * 1024…]. */
  readonly words: Uint32Array;
  private readonly bytes: Uint8Array;
  private readonly pageToSlot: Int32Array;
  private readonly slotToPage: Int32Array;
  private readonly referenced: Uint8Array;
  private hand = 0;
  private used = 0;
  hits = 0;
  misses = 0;

  constructor(pageCount: number, capacityBytes: number) {
    this.slots = Math.max(1, Math.min(pageCount, Math.floor(capacityBytes / PAGE_SIZE)));
    this.words = new Uint32Array(this.slots * WORDS);
    this.bytes = new Uint8Array(this.words.buffer);
    this.pageToSlot = new Int32Array(pageCount).fill(-1);
    this.slotToPage = new Int32Array(this.slots).fill(-1);
    this.referenced = new Uint8Array(this.slots);
  }

  /** Slot of `page`, or -1 on a miss. Counts hits and misses. */
  lookup(page: number): number {
    const slot = this.pageToSlot[page]!;
    if (slot >= 0) {
      this.referenced[slot] = 1;
      this.hits++;
    } else this.misses++;
    return slot;
  }

  /** Word offset of a slot's page in `words`. */
  wordOffset(slot: number): number {
    return slot * WORDS;
  }

  /** Remembers src[srcOffset…+4096] as the last sent version of `page`, evicting another page if full. */
  insert(page: number, src: Uint8Array, srcOffset: number): void {
    let slot = this.pageToSlot[page]!;
    if (slot < 0) {
      slot = this.used < this.slots ? this.used++ : this.evict();
      this.pageToSlot[page] = slot;
      this.slotToPage[slot] = page;
    }
    this.referenced[slot] = 1;
    // The sender passes its one-page scratch buffer: no view is created on that path.
    const page1 = srcOffset === 0 && src.length === PAGE_SIZE ? src : src.subarray(srcOffset, srcOffset + PAGE_SIZE);
    this.bytes.set(page1, slot * PAGE_SIZE);
  }

  /** Forgets `page` (it was sent as zero, so the target's copy no longer matches the cached one). */
  invalidate(page: number): void {
    const slot = this.pageToSlot[page]!;
    if (slot < 0) return;
    this.pageToSlot[page] = -1;
    this.slotToPage[slot] = -1;
    this.referenced[slot] = 0;
  }

  private evict(): number {
    for (;;) {
      const slot = this.hand;
      this.hand = (this.hand + 1) % this.slots;
      if (this.referenced[slot]) {
        this.referenced[slot] = 0;
        continue;
      }
      const victim = this.slotToPage[slot]!;
      if (victim >= 0) this.pageToSlot[victim] = -1;
      return slot;
    }
  }
}
