import { beforeAll, describe, expect, it } from 'vitest';
import { FramePool, GuestMemory, initHashing } from '@vmm/emulator';
import { TokenBucket } from '../bandwidth.js';
import { XbzrleCache } from '../encoding/xbzrle-cache.js';
import { forEachZeroRange } from '../encoding/zero-runs.js';
import { duplexPair } from '../testing/duplex-pair.js';
import { FrameParser, readU32 } from './codec.js';
import { FrameType, PAGE_SIZE } from './frame.js';
import { FrameWriter } from './frame-writer.js';
import { PageBatcher } from './page-batch.js';

/** Runs `fill` on a batcher over `memory`, returns what a receiver would see, by frame type. */
async function batches(memory: GuestMemory, cache: XbzrleCache | null, fill: (b: PageBatcher) => Promise<void>) {
  const [a, b] = duplexPair();
  const seen = { raw: [] as number[], zero: [] as number[], xbzrle: [] as number[] };
  const parser = new FrameParser(
    {
      onPage: (page) => seen.raw.push(page),
      onFrame: (type, payload) => {
        if (type === FrameType.ZERO) forEachZeroRange(payload, (first, count) => { for (let i = 0; i < count; i++) seen.zero.push(first + i); });
        if (type === FrameType.XBZRLE) {
          for (let off = 0; off < payload.length; ) {
            seen.xbzrle.push(readU32(payload, off));
            off += 6 + (payload[off + 4]! | (payload[off + 5]! << 8));
          }
        }
      },
    },
    new Set([FrameType.PAGES, FrameType.ZERO, FrameType.XBZRLE]),
  );
  b.on('data', (c: Buffer) => parser.push(c));
  const writer = new FrameWriter(a, new TokenBucket(Infinity), new AbortController().signal);
  const batcher = new PageBatcher(memory, writer, cache);
  await fill(batcher);
  await batcher.flushAll();
  await writer.flushed();
  await new Promise((r) => setImmediate(r));
  a.destroy();
  return { seen, counters: batcher.counters };
}

async function addAll(b: PageBatcher, pages: number[], useDelta: boolean) {
  for (const p of pages) {
    if (b.full) await b.flushFull();
    b.add(p, useDelta);
  }
}

describe('page batches', () => {
  beforeAll(() => initHashing());

  it('sends zero pages as ranges and others raw, across several batches', async () => {
    const memory = new GuestMemory(new FramePool(), 1024);
    memory.fillRandom(0, 600, 1); // more than two 256-page batches
    const { seen, counters } = await batches(memory, null, (b) => addAll(b, [...Array(1024).keys()], false));
    expect(seen.raw).toEqual([...Array(600).keys()]);
    expect(seen.zero.length).toBe(424);
    expect(counters).toMatchObject({ pagesRaw: 600, pagesZero: 424 });
    // Every page sent was hashed on the way (the switch-over digest reuses it).
    for (let page = 0; page < 600; page++) expect(memory.pool.hashValid(memory.frameOf(page))).toBe(true);
    memory.release();
  });

  it('XBZRLE: delta on a hit, raw on a miss, raw when the delta is worse, nothing when unchanged', async () => {
    const memory = new GuestMemory(new FramePool(), 64);
    memory.fillRandom(0, 8, 2);
    const cache = new XbzrleCache(64, 4 * PAGE_SIZE); // 4 slots for 8 pages: misses guaranteed
    await batches(memory, cache, (b) => addAll(b, [0, 1, 2, 3, 4, 5, 6, 7], false)); // round 0 fills the cache
    memory.writeWord(6, 64, 1, 2); // small change, cached (recently inserted)
    memory.fillRandom(7, 1, 99); // whole page changed: delta bigger than a page
    memory.writeWord(0, 8, 3, 4); // page 0 was evicted by pages 4..7
    memory.zeroPage(5);
    const { seen, counters } = await batches(memory, cache, (b) => addAll(b, [4, 5, 6, 7, 0], true));
    expect(seen.xbzrle).toEqual([6]);
    expect(seen.raw.sort()).toEqual([0, 7]);
    expect(seen.zero).toEqual([5]);
    expect(counters.pagesUnchanged).toBe(1); // page 4: dirty but identical to the cached version
    expect(counters.xbzrleOverflows).toBe(1);
    expect(cache.lookup(5)).toBe(-1); // a zeroed page leaves the cache
    memory.release();
  });
});
