import { PAGE_SIZE } from '@vmm/emulator';

/** sizeof(struct ksm_rmap_item) on 64-bit Linux: what general_profit charges per tracked page. */
export const RMAP_ITEM_BYTES = 64;

/** ksmd's counters, named as the files in /sys/kernel/mm/ksm. */
export interface KsmStats {
  /** KSM pages in use (stable tree nodes with at least one mapper). */
  pages_shared: number;
  /** Further pages mapping a KSM page: the pages saved. */
  pages_sharing: number;
  /** Pages in the unstable tree: unique so far, checked again every full scan. */
  pages_unshared: number;
  /** Tracked pages in no tree: changing too fast (checksum differs from the previous scan) or seen once. */
  pages_volatile: number;
  /** Pages visited since start. */
  pages_scanned: number;
  /** Completed passes over every registered region. */
  full_scans: number;
  /** Pages unbacked because they were all zero (use_zero_pages=1) and still unbacked. */
  ksm_zero_pages: number;
  /** Bytes: (pages_sharing + ksm_zero_pages) × 4096 − rmap items × 64, as mm/ksm.c computes it. */
  general_profit: number;
  /** Tracked pages (struct ksm_rmap_item in Linux). */
  rmap_items: number;
  /** Contents backed by several KSM pages because each reached max_page_sharing. */
  stable_node_chains: number;
  /** KSM pages in such chains. */
  stable_node_dups: number;
}

/** Per-region counters, named as /proc/<pid>/ksm_stat. */
export interface KsmRegionStats {
  ksm_rmap_items: number;
  ksm_merging_pages: number;
  ksm_zero_pages: number;
  /** Bytes: (ksm_merging_pages + ksm_zero_pages) × 4096 − ksm_rmap_items × 64. */
  ksm_process_profit: number;
}

export function generalProfit(pagesSharing: number, zeroPages: number, rmapItems: number): number {
  return (pagesSharing + zeroPages) * PAGE_SIZE - rmapItems * RMAP_ITEM_BYTES;
}

/** Linux: pages_volatile = rmap items − shared − sharing − unshared, clamped at 0. */
export function pagesVolatile(rmapItems: number, shared: number, sharing: number, unshared: number): number {
  return Math.max(0, rmapItems - shared - sharing - unshared);
}
