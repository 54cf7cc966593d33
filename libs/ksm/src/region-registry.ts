import { RegionExistsError, RegionSpaceExhaustedError, UnknownRegionError } from './errors.js';
import type { KsmMemory } from './ksm-memory.port.js';

/** Per-page rmap flags (one byte per page). */
export const RMAP = 1; // tracked (Linux: a struct ksm_rmap_item exists)
export const HAVE_SUM = 2; // checksum[page] holds the checksum of the previous visit
export const UNSTABLE = 4; // inserted into the unstable tree (this or the previous full scan)
export const STABLE = 8; // maps the KSM page node[page]
export const ZERO = 16; // unbacked by use_zero_pages and still unbacked

/** Rmap item ids: region.base + page; regions get whole chunks of the id space. */
const CHUNK_BITS = 16;
const CHUNK_PAGES = 1 << CHUNK_BITS;
const MAX_CHUNKS = 1 << (31 - CHUNK_BITS);
const CHUNK_FREE = 0;
const CHUNK_USED = 1;
const CHUNK_QUARANTINED = 2; // freed this full scan: the unstable tree may still hold its ids

/** A registered region and its rmap state: typed arrays indexed by page, no per-page objects. */
export class Region {
  readonly checksum: Int32Array;
  readonly flags: Uint8Array;
  readonly node: Int32Array;
  rmapItems = 0;
  mergingPages = 0;
  zeroPages = 0;

  constructor(
    readonly id: string,
    readonly memory: KsmMemory,
    readonly base: number,
    readonly chunks: number,
  ) {
    this.checksum = new Int32Array(memory.pageCount);
    this.flags = new Uint8Array(memory.pageCount);
    this.node = new Int32Array(memory.pageCount);
  }

  get pageCount(): number {
    return this.checksum.length;
  }
}

/**
 * The mergeable regions (Linux: mm_slots on ksm_mm_head) in scan order, and the map from an rmap item id
 * back to its region. Chunks of a removed region are not reused before the next full scan starts, so an
 * id left in the unstable tree never names a page of another region.
 */
export class RegionRegistry {
  readonly order: Region[] = [];
  private readonly byId = new Map<string, Region>();
  private readonly owner: (Region | null)[] = new Array<Region | null>(MAX_CHUNKS).fill(null);
  private readonly chunkState = new Uint8Array(MAX_CHUNKS);

  get size(): number {
    return this.order.length;
  }

  get(id: string): Region | undefined {
    return this.byId.get(id);
  }

  require(id: string): Region {
    const r = this.byId.get(id);
    if (!r) throw new UnknownRegionError(id);
    return r;
  }

  /** Registers a region at the end of the scan order. */
  add(id: string, memory: KsmMemory): Region {
    if (this.byId.has(id)) throw new RegionExistsError(id);
    const chunks = Math.max(1, Math.ceil(memory.pageCount / CHUNK_PAGES));
    const first = this.findFreeRun(chunks);
    if (first < 0) throw new RegionSpaceExhaustedError(id, memory.pageCount);
    const region = new Region(id, memory, first << CHUNK_BITS, chunks);
    for (let c = first; c < first + chunks; c++) {
      this.owner[c] = region;
      this.chunkState[c] = CHUNK_USED;
    }
    this.byId.set(id, region);
    this.order.push(region);
    return region;
  }

  /** Unregisters; returns the region's index in the scan order before removal. */
  remove(region: Region): number {
    const index = this.order.indexOf(region);
    this.order.splice(index, 1);
    this.byId.delete(region.id);
    const first = region.base >>> CHUNK_BITS;
    for (let c = first; c < first + region.chunks; c++) {
      this.owner[c] = null;
      this.chunkState[c] = CHUNK_QUARANTINED;
    }
    return index;
  }

  /** The region and page of an rmap item id, or null if its region is gone. */
  regionOf(item: number): Region | null {
    return this.owner[item >>> CHUNK_BITS];
  }

  /** A new full scan starts with an empty unstable tree: quarantined chunks may be reused. */
  releaseQuarantine(): void {
    for (let c = 0; c < MAX_CHUNKS; c++) if (this.chunkState[c] === CHUNK_QUARANTINED) this.chunkState[c] = CHUNK_FREE;
  }

  private findFreeRun(chunks: number): number {
    let run = 0;
    for (let c = 0; c < MAX_CHUNKS; c++) {
      run = this.chunkState[c] === CHUNK_FREE ? run + 1 : 0;
      if (run === chunks) return c - chunks + 1;
    }
    return -1;
  }
}
