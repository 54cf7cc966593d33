import { KnobBusyError, PoolMismatchError } from './errors.js';
import { ItemTable } from './item-table.js';
import { DEFAULT_KNOBS, mergeKnobs, type KsmKnobs, type KsmKnobsPatch } from './knobs.js';
import type { FrameChecksum, KsmFramePool, KsmMemory } from './ksm-memory.port.js';
import { frameIsZero, framesEqual, xxhChecksum, zeroChecksum } from './page-checksum.js';
import { HAVE_SUM, RMAP, Region, RegionRegistry, STABLE, UNSTABLE, ZERO } from './region-registry.js';
import { StableTree } from './stable-tree.js';
import { generalProfit, pagesVolatile, type KsmRegionStats, type KsmStats } from './stats.js';

/** configureYielding's default slice: ~4 MiB of copies, a few milliseconds. */
export const UNMERGE_SLICE_PAGES = 1024;

/** An unmerge configureYielding() runs: its remaining steps, settled when it ends, how it failed if it did. */
interface Unmerging {
  steps: Generator<void, void>;
  done: Promise<void>;
  failure: { error: unknown } | undefined;
}

export interface KsmScannerOptions {
  /** The host's frames; every registered region must live in it. */
  pool: KsmFramePool;
  knobs?: KsmKnobsPatch;
  /** Content checksum (default: xxh64 low word through the pool's hash cache; needs `await initHashing()`). */
  checksum?: FrameChecksum;
  /** checksum() of an all-zero page; with a custom checksum and no value, use_zero_pages byte-checks every page. */
  zeroChecksum?: number;
}

/**
 * ksmd over emulator memory, with mm/ksm.c's algorithm (cmp_and_merge_page):
 * - a page already mapping its KSM page is skipped;
 * - otherwise its checksum is compared with the previous visit's: a changed page is volatile and goes in
 *   no tree (so nothing merges in a region's first full scan);
 * - an unchanged page joins an identical KSM page of the stable tree that has room (max_page_sharing);
 * - else it is looked up in the unstable tree (rebuilt every full scan): an identical page there is merged
 *   with it into a new KSM page that both map, otherwise the page is inserted.
 * Trees are keyed by checksum; bytes are always compared before a merge. Merging really frees frames:
 * mapShared drops the merged page's old frame. A guest write to a merged page copies it (COW in the
 * emulator); the page is detached from its KSM page when ksmd next visits it.
 */
export class KsmScanner {
  private current: KsmKnobs;
  private readonly pool: KsmFramePool;
  private readonly checksum: FrameChecksum;
  private zeroSum: number | null | undefined; // undefined: not computed yet (needs initHashing)
  private readonly regions = new RegionRegistry();
  private readonly stable = new StableTree();
  private readonly unstable = new ItemTable(14);
  private cursor = 0; // index into regions.order
  private cursorPage = 0;
  private sinceWrap = 0; // pages visited in the current full scan
  private unshared = 0;
  private rmapItems = 0;
  private zeroPages = 0;
  private scanned = 0;
  private fullScans = 0;
  private fullTwin = -1; // set by stableSearch: a full KSM page with the scanned page's content
  private unmerging: Unmerging | undefined; // configureYielding's run=2

  constructor(opts: KsmScannerOptions) {
    this.pool = opts.pool;
    this.current = mergeKnobs(DEFAULT_KNOBS, opts.knobs ?? {});
    this.checksum = opts.checksum ?? xxhChecksum;
    this.zeroSum = opts.zeroChecksum ?? (opts.checksum === undefined ? undefined : null);
  }

  get knobs(): Readonly<KsmKnobs> {
    return this.current;
  }

  /**
   * Sets knobs (all checked before any applies). run=2 unmerges every page before it returns (an
   * unmerge configureYielding() left running is finished first); max_page_sharing may only change while
   * no KSM page exists (Linux: EBUSY), or together with run=2.
   */
  configure(patch: KsmKnobsPatch): void {
    this.finishUnmerge();
    const steps = this.apply(patch, Infinity);
    while (!steps.next().done);
  }

  /**
   * configure() for a host that must stay responsive: run=2 gives back the merged pages' private
   * copies `slicePages` at a time and yields to the event loop between slices (Linux's run=2 also
   * reschedules between pages). A gigabyte of merged pages is a quarter of a million 4 KiB copies:
   * done in one go, that stalls the agent's gRPC server for seconds under load, past the controller's
   * keepalive. Scanning stops at once; the counters drop to zero with the last slice. Calls made while
   * an unmerge runs wait for it, so knobs apply in call order.
   */
  async configureYielding(patch: KsmKnobsPatch, slicePages = UNMERGE_SLICE_PAGES): Promise<void> {
    while (this.unmerging) await this.unmerging.done;
    let settle!: () => void;
    const u: Unmerging = { steps: this.apply(patch, slicePages), done: new Promise<void>((resolve) => (settle = resolve)), failure: undefined };
    this.unmerging = u;
    try {
      while (!u.steps.next().done) await new Promise<void>((resolve) => setImmediate(resolve));
      // configure() may have run the rest (finishUnmerge): a slice that failed there failed this call too.
      if (u.failure) throw u.failure.error;
    } finally {
      this.unmerging = undefined;
      settle();
    }
  }

  /** The steps of configure(): checks, then (run=2) the unmerge, pausing after every `slicePages` copies. */
  private *apply(patch: KsmKnobsPatch, slicePages: number): Generator<void, void> {
    const next = mergeKnobs(this.current, patch);
    if (next.max_page_sharing !== this.current.max_page_sharing && next.run !== 2 && this.stable.pagesShared > 0) {
      throw new KnobBusyError('max_page_sharing', this.stable.pagesShared);
    }
    this.current = next; // run=2 stops ksmd from here on: nothing merges while the unmerge runs
    if (next.run === 2) yield* this.unmergeAll(slicePages);
  }

  /** Runs what is left of an unmerge configureYielding() started, synchronously (its promise then settles). */
  private finishUnmerge(): void {
    const u = this.unmerging;
    if (!u) return;
    try {
      while (!u.steps.next().done);
    } catch (error) {
      u.failure = { error };
      throw error;
    }
  }

  /** madvise(MADV_MERGEABLE): the region's pages are scanned from the next visit of the cursor on. */
  addRegion(id: string, memory: KsmMemory): void {
    if (memory.pool !== this.pool) throw new PoolMismatchError(id);
    this.regions.add(id, memory);
  }

  hasRegion(id: string): boolean {
    return this.regions.get(id) !== undefined;
  }

  regionIds(): string[] {
    return this.regions.order.map((r) => r.id);
  }

  /**
   * Unregisters a region (its VM stopped or migrated away). `unmerge: true` first gives each of its merged
   * pages a private copy (MADV_UNMERGEABLE on a live VM); without it the memory is left as is, which is
   * right when it is about to be released.
   */
  removeRegion(id: string, opts: { unmerge?: boolean } = {}): void {
    const r = this.regions.require(id);
    if (opts.unmerge) this.unmergeRegion(r);
    for (let p = 0; p < r.pageCount; p++) {
      const fl = r.flags[p];
      if (fl & STABLE) this.stable.detach(r.node[p]);
      if (fl & UNSTABLE) this.unshared--;
    }
    this.rmapItems -= r.rmapItems;
    this.zeroPages -= r.zeroPages;
    const index = this.regions.remove(r);
    if (index < this.cursor) this.cursor--;
    else if (index === this.cursor) this.cursorPage = 0;
  }

  /**
   * One ksmd batch: visits regions from the cursor until `pages` present pages were scanned (absent, i.e.
   * unbacked, pages are skipped without counting, as Linux skips pages never faulted in). Returns the
   * pages scanned; 0 unless run=1.
   */
  scanBatch(pages = this.current.pages_to_scan): number {
    return this.scan(pages, false);
  }

  /** Runs batches until `count` more full scans completed (for tests and benchmarks). Returns pages scanned. */
  scanFull(count = 1): number {
    if (this.current.run !== 1 || this.regions.size === 0) return 0;
    const target = this.fullScans + count;
    let total = 0;
    while (this.fullScans < target) total += this.scan(this.current.pages_to_scan, true);
    return total;
  }

  /** Visits pages from the cursor; `stopAtWrap` ends the batch with the full scan (scanFull counts exactly). */
  private scan(pages: number, stopAtWrap: boolean): number {
    if (this.current.run !== 1) return 0;
    const order = this.regions.order;
    let scanned = 0;
    while (scanned < pages && order.length > 0) {
      if (this.cursor >= order.length) {
        const empty = this.sinceWrap === 0;
        this.wrap();
        if (empty || stopAtWrap) break; // empty: nothing present anywhere, do not spin
        continue;
      }
      const r = order[this.cursor];
      if (this.cursorPage >= r.pageCount) {
        this.cursor++;
        this.cursorPage = 0;
        continue;
      }
      if (this.visit(r, this.cursorPage++)) {
        scanned++;
        this.sinceWrap++;
      }
    }
    this.scanned += scanned;
    return scanned;
  }

  stats(): KsmStats {
    const shared = this.stable.pagesShared;
    const sharing = this.stable.pagesSharing;
    return {
      pages_shared: shared,
      pages_sharing: sharing,
      pages_unshared: this.unshared,
      pages_volatile: pagesVolatile(this.rmapItems, shared, sharing, this.unshared),
      pages_scanned: this.scanned,
      full_scans: this.fullScans,
      ksm_zero_pages: this.zeroPages,
      general_profit: generalProfit(sharing, this.zeroPages, this.rmapItems),
      rmap_items: this.rmapItems,
      stable_node_chains: this.stable.nodeChains,
      stable_node_dups: this.stable.nodeDups,
    };
  }

  /** The region's counters as /proc/<pid>/ksm_stat names them (merging pages: its pages mapping a KSM page). */
  regionStats(id: string): KsmRegionStats {
    const r = this.regions.require(id);
    return {
      ksm_rmap_items: r.rmapItems,
      ksm_merging_pages: r.mergingPages,
      ksm_zero_pages: r.zeroPages,
      ksm_process_profit: generalProfit(r.mergingPages, r.zeroPages, r.rmapItems),
    };
  }

  /** cmp_and_merge_page for one page. False if the page is absent (not counted as scanned). */
  private visit(r: Region, p: number): boolean {
    const mem = r.memory;
    const frame = mem.frameOf(p);
    let fl = r.flags[p];
    if (frame === -1) {
      if (fl & RMAP) this.dropItem(r, p, fl);
      return false;
    }
    if (fl & ZERO) {
      fl &= ~ZERO;
      r.zeroPages--;
      this.zeroPages--;
    }
    if (!(fl & RMAP)) {
      fl |= RMAP;
      r.rmapItems++;
      this.rmapItems++;
    }
    const pool = this.pool;
    if (fl & STABLE) {
      const n = r.node[p];
      if (this.stable.frame[n] === frame && !this.stable.isRetired(n)) {
        // Still mapping its KSM page. A sole mapper is special: the emulator writes a frame nobody else
        // maps in place (Linux never reuses a KSM page), so its content is checked against the node's.
        // (Other mappers may have left without ksmd noticing yet: the refcount is the truth here.)
        if (pool.refCount(frame) > 1) {
          r.flags[p] = fl;
          return true;
        }
        const sum = this.checksum(pool, frame);
        if (sum === this.stable.key[n]) {
          r.flags[p] = fl;
          return true;
        }
        this.detach(r, p);
        r.checksum[p] = sum;
        r.flags[p] = (fl & ~STABLE) | HAVE_SUM;
        return true;
      }
      this.detach(r, p); // COW broke the share, or the node was retired
      fl &= ~STABLE;
    }
    if (fl & UNSTABLE) {
      fl &= ~UNSTABLE; // its unstable tree was the previous full scan's
      this.unshared--;
    }
    const sum = this.checksum(pool, frame);
    if (!(fl & HAVE_SUM) || r.checksum[p] !== sum) {
      r.checksum[p] = sum;
      r.flags[p] = fl | HAVE_SUM;
      return true;
    }
    r.flags[p] = fl;
    if (this.current.use_zero_pages === 1 && this.mayBeZero(sum) && frameIsZero(pool, frame)) {
      mem.zeroPage(p);
      r.flags[p] = ZERO;
      r.rmapItems--;
      this.rmapItems--;
      r.zeroPages++;
      this.zeroPages++;
      return true;
    }
    this.fullTwin = -1;
    const n = this.stableSearch(sum, frame);
    if (n >= 0) {
      if (this.stable.frame[n] !== frame) mem.mapShared(p, this.stable.frame[n]);
      this.attach(r, p, n);
      return true;
    }
    if (!this.mergeWithUnstable(r, p, frame, sum)) {
      this.unstable.insert(sum, r.base + p);
      r.flags[p] = fl | UNSTABLE;
      this.unshared++;
    }
    return true;
  }

  /** False only if `sum` proves the page is not all zero. */
  private mayBeZero(sum: number): boolean {
    if (this.zeroSum === undefined) this.zeroSum = zeroChecksum();
    return this.zeroSum === null || sum === this.zeroSum;
  }

  /** An identical KSM page with room for one more mapper, or -1. Dead nodes (frame freed) are retired. */
  private stableSearch(sum: number, frame: number): number {
    const { stable, pool } = this;
    const max = this.current.max_page_sharing;
    let s = stable.first(sum);
    while (s !== -1) {
      const n = stable.nodeAt(s);
      const kf = stable.frame[n];
      if (pool.refCount(kf) === 0) {
        stable.retire(n); // every mapper left and the frame was freed
        s = stable.first(sum);
        continue;
      }
      if (kf === frame || framesEqual(pool, frame, kf)) {
        if (stable.sharers[n] < max) return n;
        this.fullTwin = n; // a new KSM page of this content will join its chain
      }
      s = stable.next(sum, s);
    }
    return -1;
  }

  /** Looks for an identical page in this scan's unstable tree; if found, both become one KSM page. */
  private mergeWithUnstable(r: Region, p: number, frame: number, sum: number): boolean {
    const pool = this.pool;
    for (let s = this.unstable.first(sum); s !== -1; s = this.unstable.next(sum, s)) {
      const item = this.unstable.valueAt(s);
      const or = this.regions.regionOf(item);
      if (or === null) continue; // its region was removed during this scan
      const op = item - or.base;
      if ((or.flags[op] & (UNSTABLE | STABLE)) !== UNSTABLE) continue;
      const of = or.memory.frameOf(op);
      if (of === -1 || of === frame || !framesEqual(pool, frame, of)) continue; // changed since inserted
      this.unstable.removeAt(s);
      or.flags[op] &= ~UNSTABLE;
      this.unshared--;
      // try_to_merge_two_pages keeps the scanned page's frame; which frame survives is invisible to the
      // guests, so we keep the lower-numbered one: the pool allocates from its lowest slabs, so survivors
      // gather there and the high slabs empty out and are returned (1 MiB each) instead of staying
      // pinned by a few KSM pages.
      const kframe = of < frame ? of : frame;
      const n = this.stable.create(sum, kframe);
      if (this.fullTwin >= 0) this.stable.linkDup(n, this.fullTwin);
      if (kframe === frame) or.memory.mapShared(op, frame);
      else r.memory.mapShared(p, of);
      or.checksum[op] = sum;
      this.attach(or, op, n);
      this.attach(r, p, n);
      return true;
    }
    return false;
  }

  private attach(r: Region, p: number, n: number): void {
    r.flags[p] |= STABLE;
    r.node[p] = n;
    r.mergingPages++;
    this.stable.attach(n);
  }

  private detach(r: Region, p: number): void {
    this.stable.detach(r.node[p]);
    r.mergingPages--;
  }

  /** The page went away (unbacked): its rmap item is removed, as Linux does for pages no longer present. */
  private dropItem(r: Region, p: number, fl: number): void {
    if (fl & STABLE) this.detach(r, p);
    if (fl & UNSTABLE) this.unshared--;
    r.rmapItems--;
    this.rmapItems--;
    r.flags[p] = fl & ZERO;
  }

  /** End of a full scan: the next one rebuilds the unstable tree from scratch. */
  private wrap(): void {
    this.fullScans++;
    this.cursor = 0;
    this.cursorPage = 0;
    this.sinceWrap = 0;
    this.unstable.clear();
    this.regions.releaseQuarantine();
  }

  /**
   * run=2: every merged page gets a private copy again; all rmap state is dropped (counters to zero).
   * Pauses (yields) after every `slicePages` copies. Between pauses the guests run and VMs come and go:
   * a region removed meanwhile is skipped (its memory may be gone), one added meanwhile holds no merged
   * page (nothing merges with run=2), and a page a guest wrote meanwhile has its own frame already.
   */
  private *unmergeAll(slicePages: number): Generator<void, void> {
    let budget = slicePages;
    for (const r of [...this.regions.order]) {
      if (this.regions.get(r.id) !== r) continue; // removed during an earlier region's pause
      for (let p = 0; p < r.pageCount; p++) {
        if (budget <= 0) {
          yield;
          budget = slicePages;
          if (this.regions.get(r.id) !== r) break;
        }
        if (this.unmergePage(r, p)) budget--;
      }
    }
    for (const r of this.regions.order) {
      r.flags.fill(0);
      r.rmapItems = 0;
      r.mergingPages = 0;
      r.zeroPages = 0;
    }
    this.stable.clear();
    this.unstable.clear();
    this.unshared = 0;
    this.rmapItems = 0;
    this.zeroPages = 0;
    this.cursor = 0;
    this.cursorPage = 0;
    this.sinceWrap = 0;
  }

  /** Breaks the share of every merged page of the region (break_ksm), without a guest-visible write. */
  private unmergeRegion(r: Region): void {
    for (let p = 0; p < r.pageCount; p++) this.unmergePage(r, p);
  }

  /** break_ksm for one page: true if it was copied. */
  private unmergePage(r: Region, p: number): boolean {
    if (!(r.flags[p] & STABLE)) return false;
    const frame = r.memory.frameOf(p);
    const pool = this.pool;
    if (frame === -1 || pool.refCount(frame) <= 1) return false;
    const copy = pool.allocate(false);
    pool.copyFrame(frame, copy);
    r.memory.mapShared(p, copy);
    pool.decRef(copy); // mapShared took its own reference
    return true;
  }
}
