import { FramePool, GuestMemory, PAGE_SIZE, VirtualMachine, initHashing, loadImage, pageHash } from '@vmm/emulator';
import { beforeAll, describe, expect, it } from 'vitest';
import { InvalidKnobError, KnobBusyError, PoolMismatchError, RegionExistsError, UnknownRegionError } from './errors.js';
import { KsmScanner } from './ksm-scanner.js';

beforeAll(async () => {
  await initHashing();
});

/** Pages saved if every set of identical backed pages shared one frame: backed pages − distinct contents. */
function duplicateTruth(memories: GuestMemory[]): number {
  const seen = new Set<bigint>();
  let backed = 0;
  for (const m of memories) {
    for (let p = 0; p < m.pageCount; p++) {
      const v = m.pageView(p);
      if (v === null) continue;
      backed++;
      seen.add(pageHash(v));
    }
  }
  return backed - seen.size;
}

function imageVms(pool: FramePool, count: number, image = 'alpine-3.20', pages = 4096 + 512): GuestMemory[] {
  return Array.from({ length: count }, () => {
    const m = new GuestMemory(pool, pages);
    loadImage(m, image);
    return m;
  });
}

function scannerFor(pool: FramePool, memories: GuestMemory[], knobs: Partial<KsmScanner['knobs']> = {}): KsmScanner {
  const ksm = new KsmScanner({ pool, knobs: { run: 1, pages_to_scan: 1000, ...knobs } });
  memories.forEach((m, i) => ksm.addRegion(`vm${i}`, m));
  return ksm;
}

/** A page of `value` repeated (non-zero for value ≠ 0). */
function pageOf(value: number): Uint8Array {
  return new Uint8Array(new Uint32Array(PAGE_SIZE / 4).fill(value).buffer);
}

describe('KsmScanner merging', () => {
  it('merges 4 VMs of one image to the exact duplicate count, freeing one frame per page saved, content intact', () => {
    const pool = new FramePool();
    const vms = imageVms(pool, 4);
    const truth = duplicateTruth(vms);
    const digests = vms.map((m) => m.digest());
    const framesBefore = pool.framesInUse;
    const ksm = scannerFor(pool, vms);

    ksm.scanFull(1);
    expect(ksm.stats().pages_sharing).toBe(0); // first scan only records checksums
    ksm.scanFull(2);

    const s = ksm.stats();
    expect(truth).toBeGreaterThan(3 * 3000);
    expect(s.pages_sharing).toBeGreaterThanOrEqual(0.95 * truth);
    expect(s.pages_sharing).toBeLessThanOrEqual(truth);
    expect(framesBefore - pool.framesInUse).toBeGreaterThanOrEqual(0.9 * s.pages_sharing);
    expect(framesBefore - pool.framesInUse).toBe(s.pages_sharing);
    expect(s.full_scans).toBe(3);
    expect(s.general_profit).toBe(s.pages_sharing * PAGE_SIZE - s.rmap_items * 64);
    expect(vms.map((m) => m.digest())).toEqual(digests);
    const merging = [0, 1, 2, 3].reduce((a, i) => a + ksm.regionStats(`vm${i}`).ksm_merging_pages, 0);
    expect(merging).toBe(s.pages_shared + s.pages_sharing);
  });

  it('a write to a merged page unshares that page only', () => {
    const pool = new FramePool();
    const vms = imageVms(pool, 4);
    const ksm = scannerFor(pool, vms);
    ksm.scanFull(3);
    const before = ksm.stats();
    const page = firstPageSharedBy(vms, 4);
    const frame = vms[0].frameOf(page);
    const frames = pool.framesInUse;

    vms[0].writeWord(page, 8, 0xdead, 0xbeef);
    expect(pool.framesInUse).toBe(frames + 1); // COW copy
    expect(vms[0].frameOf(page)).not.toBe(frame);
    expect(vms.slice(1).map((m) => m.frameOf(page))).toEqual([frame, frame, frame]);

    ksm.scanFull(1);
    const after = ksm.stats();
    expect(after.pages_sharing).toBe(before.pages_sharing - 1);
    expect(after.pages_shared).toBe(before.pages_shared);
    expect(after.pages_volatile).toBe(before.pages_volatile + 1);
    expect(ksm.regionStats('vm0').ksm_merging_pages).toBe(ksm.regionStats('vm1').ksm_merging_pages - 1);
    expect(pool.refCount(frame)).toBe(3);
  });

  it('a KSM page whose last mapper wrote it in place (refcount 1, no COW) is dissolved', () => {
    const pool = new FramePool();
    const m = new GuestMemory(pool, 3);
    for (let p = 0; p < 3; p++) m.writePage(p, pageOf(9));
    const ksm = scannerFor(pool, [m]);
    ksm.scanFull(2);
    expect(ksm.stats()).toMatchObject({ pages_shared: 1, pages_sharing: 2 });
    m.writeWord(1, 0, 1, 0); // COW
    m.writeWord(2, 0, 2, 0); // COW
    m.writeWord(0, 0, 3, 0); // refcount 1 now: written in place
    ksm.scanFull(1);
    expect(ksm.stats()).toMatchObject({ pages_shared: 0, pages_sharing: 0, pages_volatile: 3 });
    m.writePage(1, pageOf(9)); // the old content again: must not join the dissolved KSM page
    ksm.scanFull(2);
    expect(ksm.stats()).toMatchObject({ pages_shared: 0, pages_sharing: 0 });
    expect(new Set([0, 1, 2].map((p) => m.frameOf(p))).size).toBe(3);
  });

  it('run=2 unmerges everything: each page gets its own frame again and the counters drop to zero', () => {
    const pool = new FramePool();
    const vms = imageVms(pool, 3);
    const digests = vms.map((m) => m.digest());
    const framesBefore = pool.framesInUse;
    const ksm = scannerFor(pool, vms);
    ksm.scanFull(3);
    expect(pool.framesInUse).toBeLessThan(framesBefore * 0.5);

    ksm.configure({ run: 2 });

    expect(pool.framesInUse).toBe(framesBefore);
    for (const m of vms) for (let p = 0; p < m.pageCount; p++) if (!m.isZero(p)) expect(pool.refCount(m.frameOf(p))).toBe(1);
    expect(ksm.stats()).toMatchObject({ pages_shared: 0, pages_sharing: 0, pages_unshared: 0, pages_volatile: 0, rmap_items: 0, general_profit: 0 });
    expect(vms.map((m) => m.digest())).toEqual(digests);
    expect(ksm.scanBatch()).toBe(0); // run=2 also stops ksmd
  });

  it('run=2 through configureYielding unmerges in slices between which the event loop runs, and VMs come and go', async () => {
    const pool = new FramePool();
    const vms = imageVms(pool, 4);
    const digests = vms.map((m) => m.digest());
    const ksm = scannerFor(pool, vms);
    ksm.scanFull(3);
    const merged = ksm.stats().pages_sharing + ksm.stats().pages_shared;
    expect(merged).toBeGreaterThan(4 * 256);

    let turns = 0;
    let removed = false;
    const runSeen = new Set<number>();
    let stopped = false;
    let vm3Frames: number[] = [];
    // Another task of the event loop, one turn per loop iteration (as a gRPC call's callbacks would).
    const other = (): void => {
      if (stopped) return;
      setImmediate(other);
      turns++;
      runSeen.add(ksm.knobs.run);
      if (turns === 2) {
        // A VM leaves KSM mid-unmerge (the agent detaches it before it stops): the unmerge must not
        // touch it any more, not even to give its merged pages private copies.
        ksm.removeRegion('vm3');
        vm3Frames = Array.from({ length: vms[3]!.pageCount }, (_, p) => vms[3]!.frameOf(p));
        removed = true;
      }
    };
    setImmediate(other);
    let next: Promise<void>;
    try {
      const done = ksm.configureYielding({ run: 2 }, 256);
      expect(ksm.scanBatch()).toBe(0); // scanning stopped at once
      next = ksm.configureYielding({ run: 1 }); // waits for the unmerge: knobs apply in call order
      await done;
    } finally {
      stopped = true;
    }
    expect(removed).toBe(true);
    expect(turns).toBeGreaterThanOrEqual(2);
    expect([...runSeen]).toEqual([2]); // the second call did not apply while the unmerge ran
    for (const m of vms.slice(0, 3)) for (let p = 0; p < m.pageCount; p++) if (!m.isZero(p)) expect(pool.refCount(m.frameOf(p))).toBe(1);
    expect(ksm.stats()).toMatchObject({ pages_shared: 0, pages_sharing: 0, pages_unshared: 0, rmap_items: 0 });
    expect(vms.slice(0, 3).map((m) => m.digest())).toEqual(digests.slice(0, 3));
    expect(Array.from({ length: vms[3]!.pageCount }, (_, p) => vms[3]!.frameOf(p))).toEqual(vm3Frames);
    expect(vms[3]!.digest()).toBe(digests[3]);
    await next;
    expect(ksm.knobs.run).toBe(1);
  });

  it('configure() during a yielding unmerge finishes it first, synchronously', async () => {
    const pool = new FramePool();
    const vms = imageVms(pool, 3);
    const framesBefore = pool.framesInUse;
    const ksm = scannerFor(pool, vms);
    ksm.scanFull(3);
    const done = ksm.configureYielding({ run: 2 }, 64);
    ksm.configure({ run: 1, pages_to_scan: 50 });
    expect(pool.framesInUse).toBe(framesBefore);
    expect(ksm.stats()).toMatchObject({ pages_shared: 0, pages_sharing: 0, rmap_items: 0 });
    await done;
    expect(ksm.knobs).toMatchObject({ run: 1, pages_to_scan: 50 });
    await expect(ksm.configureYielding({ pages_to_scan: 0 })).rejects.toThrow(InvalidKnobError);
  });

  it('counts pages written between every scan as volatile and never merges them', () => {
    const pool = new FramePool();
    const vms = [new GuestMemory(pool, 64), new GuestMemory(pool, 64)];
    for (const m of vms) for (let p = 0; p < 64; p++) m.writePage(p, pageOf(p + 1));
    const ksm = scannerFor(pool, vms, { pages_to_scan: 16 });
    for (let round = 1; round <= 5; round++) {
      for (const m of vms) for (let p = 0; p < 10; p++) m.writeWord(p, 0, round, p); // same content in both VMs, new every scan
      ksm.scanFull(1);
    }
    const s = ksm.stats();
    expect(s.pages_volatile).toBe(20);
    expect(s.pages_sharing).toBe(54);
    for (let p = 0; p < 10; p++) expect(vms[0].frameOf(p)).not.toBe(vms[1].frameOf(p));
  });

  it('honours max_page_sharing: a full KSM page gets a second KSM page of the same content', () => {
    const pool = new FramePool();
    const m = new GuestMemory(pool, 10);
    for (let p = 0; p < 10; p++) m.writePage(p, pageOf(7));
    const ksm = scannerFor(pool, [m], { max_page_sharing: 4 });
    ksm.scanFull(3);
    const s = ksm.stats();
    expect(s).toMatchObject({ pages_shared: 3, pages_sharing: 7, stable_node_chains: 1, stable_node_dups: 3 });
    const refs = new Map<number, number>();
    for (let p = 0; p < 10; p++) refs.set(m.frameOf(p), pool.refCount(m.frameOf(p)));
    expect([...refs.values()].sort()).toEqual([2, 4, 4]);
    expect(pool.framesInUse).toBe(3);
    expect(() => ksm.configure({ max_page_sharing: 8 })).toThrow(KnobBusyError);
    ksm.configure({ run: 2, max_page_sharing: 8 });
    ksm.configure({ run: 1 });
    ksm.scanFull(2);
    expect(ksm.stats()).toMatchObject({ pages_shared: 2, pages_sharing: 8, stable_node_chains: 1, stable_node_dups: 2 });
    for (let p = 0; p < 3; p++) m.writeWord(p, 0, p + 1, 0); // pages 0-2 leave their KSM page
    ksm.scanFull(1);
    expect(ksm.stats()).toMatchObject({ pages_shared: 2, pages_sharing: 5, stable_node_chains: 1, stable_node_dups: 2 });
  });

  it('never merges pages whose bytes differ, even when every checksum collides', () => {
    const pool = new FramePool();
    const m = new GuestMemory(pool, 12);
    for (let p = 0; p < 10; p++) m.writePage(p, pageOf(100 + p));
    m.writePage(10, pageOf(5));
    m.writePage(11, pageOf(5));
    const digest = m.digest();
    const ksm = new KsmScanner({ pool, checksum: () => 7, knobs: { run: 1 } });
    ksm.addRegion('vm', m);
    ksm.scanFull(3);
    expect(ksm.stats()).toMatchObject({ pages_shared: 1, pages_sharing: 1, pages_unshared: 10 });
    expect(m.frameOf(10)).toBe(m.frameOf(11));
    expect(new Set(Array.from({ length: 10 }, (_, p) => m.frameOf(p))).size).toBe(10);
    expect(m.digest()).toBe(digest);
  });

  it('use_zero_pages unbacks pages that became all zero instead of merging them', () => {
    const pool = new FramePool();
    const m = new GuestMemory(pool, 8);
    for (let p = 0; p < 8; p++) m.writeWord(p, 0, 1, 0);
    for (let p = 0; p < 4; p++) m.writeWord(p, 0, 0, 0); // backed, all zero now
    const ksm = scannerFor(pool, [m], { use_zero_pages: 1 });
    ksm.scanFull(2);
    expect(ksm.stats()).toMatchObject({ ksm_zero_pages: 4, pages_shared: 1, pages_sharing: 3 });
    expect([0, 1, 2, 3].map((p) => m.isZero(p))).toEqual([true, true, true, true]);
    expect(ksm.stats().general_profit).toBe((3 + 4) * PAGE_SIZE - 4 * 64);
    m.writeWord(0, 0, 9, 9); // backed again
    ksm.scanFull(1);
    expect(ksm.stats().ksm_zero_pages).toBe(3);
  });

  it('without use_zero_pages all-zero backed pages merge into one KSM page', () => {
    const pool = new FramePool();
    const m = new GuestMemory(pool, 4);
    for (let p = 0; p < 4; p++) {
      m.writeWord(p, 0, 1, 0);
      m.writeWord(p, 0, 0, 0);
    }
    const ksm = scannerFor(pool, [m]);
    ksm.scanFull(2);
    expect(ksm.stats()).toMatchObject({ ksm_zero_pages: 0, pages_shared: 1, pages_sharing: 3 });
    expect(pool.framesInUse).toBe(1);
  });
});

describe('KsmScanner regions', () => {
  it('removing a region (VM destroyed) drops its rmap items and sharers; the survivor keeps its frames', () => {
    const pool = new FramePool();
    const vms = imageVms(pool, 2);
    const ksm = scannerFor(pool, vms);
    ksm.scanFull(3);
    expect(ksm.stats().pages_sharing).toBeGreaterThan(3000);
    ksm.removeRegion('vm1');
    vms[1].release();
    const s = ksm.stats();
    expect(s.pages_sharing).toBe(ksm.regionStats('vm0').ksm_merging_pages - s.pages_shared);
    expect(s.rmap_items).toBe(ksm.regionStats('vm0').ksm_rmap_items);
    ksm.scanFull(2); // sole mappers whose content is unchanged stay KSM pages, as in Linux
    expect(ksm.stats().pages_shared + ksm.stats().pages_sharing).toBe(ksm.regionStats('vm0').ksm_merging_pages);
    expect(() => ksm.regionStats('vm1')).toThrow(UnknownRegionError);
  });

  it('unmerges on removal when asked (MADV_UNMERGEABLE on a live VM)', () => {
    const pool = new FramePool();
    const vms = imageVms(pool, 2);
    const ksm = scannerFor(pool, vms);
    ksm.scanFull(3);
    ksm.removeRegion('vm1', { unmerge: true });
    for (let p = 0; p < vms[1].pageCount; p++) if (!vms[1].isZero(p)) expect(pool.refCount(vms[1].frameOf(p))).toBe(1);
  });

  it('a region removed mid-scan leaves no stale candidate behind, and a new one merges with the rest', () => {
    const pool = new FramePool();
    const vms = imageVms(pool, 3);
    const ksm = scannerFor(pool, vms.slice(0, 2), { pages_to_scan: 500 });
    ksm.scanFull(1);
    while (ksm.regionIds().length === 2 && ksm.stats().pages_unshared < 1000) ksm.scanBatch();
    ksm.removeRegion('vm0');
    vms[0].release();
    ksm.addRegion('vm2', vms[2]);
    ksm.scanFull(3);
    expect(ksm.stats().pages_sharing).toBeGreaterThanOrEqual(0.95 * duplicateTruth([vms[1], vms[2]]));
  });

  it('skips unbacked pages without counting them and does not spin over empty memory', () => {
    const pool = new FramePool();
    const empty = new GuestMemory(pool, 1 << 16);
    const ksm = scannerFor(pool, [empty]);
    expect(ksm.scanBatch(100)).toBe(0);
    expect(ksm.stats().full_scans).toBe(1);
    empty.writeWord(5, 0, 1, 1);
    expect(ksm.scanFull(1)).toBe(1);
    expect(ksm.stats()).toMatchObject({ full_scans: 2, pages_scanned: 1, rmap_items: 1, pages_volatile: 1 });
  });

  it('survives VMs that write while merged and a VM stopped while still registered', () => {
    const pool = new FramePool();
    const workload = (seed: number) => ({ kind: 'uniform' as const, dirtyRatePagesPerSec: 0, workingSetPages: 2048, seed });
    const vms = [0, 1, 2].map((i) => new VirtualMachine({ id: `vm${i}`, pool, memoryMib: 32, vcpus: 1, image: 'alpine-3.20', workload: workload(i) }));
    const ksm = new KsmScanner({ pool, knobs: { run: 1, pages_to_scan: 500 } });
    for (const vm of vms) ksm.addRegion(vm.id, vm.memory);
    for (let i = 0; i < 40; i++) {
      ksm.scanBatch();
      for (const vm of vms) vm.workload.step(50);
    }
    expect(ksm.stats().pages_sharing).toBeGreaterThan(1000);
    vms[2].stop(); // releases its memory; its rmap items go away as ksmd passes
    ksm.scanFull(2);
    expect(ksm.regionStats('vm2')).toEqual({ ksm_rmap_items: 0, ksm_merging_pages: 0, ksm_zero_pages: 0, ksm_process_profit: 0 });
    const digests = vms.slice(0, 2).map((vm) => vm.memory.digest());
    ksm.configure({ run: 2 });
    expect(vms.slice(0, 2).map((vm) => vm.memory.digest())).toEqual(digests);
    ksm.removeRegion('vm2');
  });

  it('rejects duplicate ids, unknown ids, another pool and bad knobs, changing nothing', () => {
    const pool = new FramePool();
    const ksm = new KsmScanner({ pool });
    ksm.addRegion('a', new GuestMemory(pool, 4));
    expect(() => ksm.addRegion('a', new GuestMemory(pool, 4))).toThrow(RegionExistsError);
    expect(() => ksm.removeRegion('b')).toThrow(UnknownRegionError);
    expect(() => ksm.addRegion('c', new GuestMemory(new FramePool(), 4))).toThrow(PoolMismatchError);
    expect(() => ksm.configure({ pages_to_scan: 50, run: 3 as 1 })).toThrow(InvalidKnobError);
    expect(() => ksm.configure({ max_page_sharing: 1 })).toThrow(InvalidKnobError);
    expect(() => ksm.configure({ sleep_millisecs: -1 })).toThrow(InvalidKnobError);
    expect(() => ksm.configure({ nope: 1 } as never)).toThrow(InvalidKnobError);
    expect(ksm.knobs).toEqual({ run: 0, pages_to_scan: 100, sleep_millisecs: 20, max_page_sharing: 256, use_zero_pages: 0 });
    expect(ksm.scanBatch()).toBe(0); // run=0 by default, as in Linux
  });
});

function firstPageSharedBy(vms: GuestMemory[], n: number): number {
  const pool = vms[0].pool;
  for (let p = 0; p < vms[0].pageCount; p++) {
    const f = vms[0].frameOf(p);
    if (f !== -1 && pool.refCount(f) === n && vms.every((m) => m.frameOf(p) === f)) return p;
  }
  throw new Error(`no page shared by ${n} VMs`);
}
