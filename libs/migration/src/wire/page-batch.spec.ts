import net from 'node:net';
import { once } from 'node:events';
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

/**
 * A sender's batcher over a real loopback socket (PAGE_RUN goes without a copy only there) and a
 * receiving parser that applies every page to `target`. `close()` flushes, waits until the target
 * applied every byte, and closes both ends.
 */
async function overSocket(memory: GuestMemory, target: GuestMemory, pageRuns = true) {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port });
  const [[accepted]] = await Promise.all([once(server, 'connection') as Promise<[net.Socket]>, once(client, 'connect')]);
  const parser = new FrameParser(
    {
      onPage: (page, src, off) => target.writePage(page, src, off),
      onPageRun: (pages, src, off) => target.writePagesFrom(pages, pages.length, src, off, PAGE_SIZE),
      onFrame: (type, payload) => {
        if (type === FrameType.ZERO) forEachZeroRange(payload, (first, count) => { for (let i = 0; i < count; i++) target.zeroPage(first + i); });
      },
    },
    new Set([FrameType.PAGES, FrameType.PAGE_RUN, FrameType.ZERO]),
  );
  accepted.on('data', (c: Buffer) => parser.push(c));
  const writer = new FrameWriter(client, new TokenBucket(Infinity), new AbortController().signal);
  const batcher = new PageBatcher(memory, writer, null);
  if (pageRuns) batcher.enablePageRuns();
  return {
    batcher,
    async close() {
      await batcher.flushAll();
      await writer.flushed();
      const deadline = Date.now() + 5000;
      while (parser.bytesParsed < writer.bytesWritten && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
      client.destroy();
      accepted.destroy();
      server.close();
      expect(parser.bytesParsed).toBe(writer.bytesWritten);
    },
  };
}

const refCounts = (memory: GuestMemory, pages: number) => [...Array(pages).keys()].map((p) => memory.pool.refCount(memory.frameOf(p)));

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

  describe('over a socket', () => {
    it('writes runs of consecutive frames straight from the slabs and copies short runs into PAGES', async () => {
      const memory = new GuestMemory(new FramePool(), 2048);
      const target = new GuestMemory(new FramePool(), 2048);
      for (const p of [1500, 1700, 1900]) memory.fillRandom(p, 1, p); // frames 0..2: one run, 3 < MIN_RUN_PAGES
      memory.fillRandom(0, 1000, 1); // frames 3..1002: runs of 253, 256, 256, 235 (a run ends at its slab)
      const link = await overSocket(memory, target);
      await addAll(link.batcher, [...Array(2048).keys()], false);
      await link.close();
      expect(link.batcher.counters).toMatchObject({ pagesRaw: 1003, pagesWithoutCopy: 1000, pagesZero: 1045 });
      expect(target.digest()).toBe(memory.digest());
      // Every pin was dropped once the socket took the bytes.
      expect(new Set(refCounts(memory, 1000))).toEqual(new Set([1]));
      expect(memory.pool.framesInUse).toBe(1003);
      memory.release();
      target.release();
    });

    it('copies every page into PAGES for a receiver that agreed on protocol version 1 (no PAGE_RUN)', async () => {
      const memory = new GuestMemory(new FramePool(), 1024);
      const target = new GuestMemory(new FramePool(), 1024);
      memory.fillRandom(0, 600, 4);
      const link = await overSocket(memory, target, false);
      await addAll(link.batcher, [...Array(1024).keys()], false);
      await link.close();
      expect(link.batcher.counters).toMatchObject({ pagesRaw: 600, pagesWithoutCopy: 0 });
      expect(target.digest()).toBe(memory.digest());
      memory.release();
      target.release();
    });

    it('keeps a run\'s frames pinned until sent: a guest write copies the page away, the run carries what was read', async () => {
      const memory = new GuestMemory(new FramePool(), 512);
      const target = new GuestMemory(new FramePool(), 512);
      memory.fillRandom(0, 64, 7);
      const before = new Uint8Array(PAGE_SIZE);
      memory.readPage(10, before);
      const frame10 = memory.frameOf(10);
      const link = await overSocket(memory, target);
      await addAll(link.batcher, [...Array(64).keys()], false); // one open run, nothing sent yet
      expect(memory.pool.refCount(frame10)).toBe(2);
      memory.writeWord(10, 0, 0xdead, 0xbeef); // copy-on-write: page 10 gets a frame of its own
      expect(memory.frameOf(10)).not.toBe(frame10);
      memory.zeroPage(11); // its pinned frame is not freed under the run
      expect(memory.pool.refCount(frame10 + 1)).toBe(1);
      await link.close();
      const got = new Uint8Array(PAGE_SIZE);
      target.readPage(10, got);
      expect(Buffer.compare(got, before)).toBe(0); // the next round resends page 10 (it is dirty)
      expect(memory.pool.refCount(frame10)).toBe(0); // unpinned and freed
      expect(memory.pool.framesInUse).toBe(63); // 64 - page 11 (zeroed); page 10 moved
      memory.release();
      target.release();
    });

    it('release() unpins the frames of runs never sent', async () => {
      const memory = new GuestMemory(new FramePool(), 512);
      memory.fillRandom(0, 300, 3);
      const link = await overSocket(memory, new GuestMemory(new FramePool(), 512));
      // Page 256 starts a slab: the run of 0..255 is closed (sent by the next flushFull) and 256 opens one.
      await addAll(link.batcher, [...Array(257).keys()], false);
      expect(new Set(refCounts(memory, 257))).toEqual(new Set([2]));
      link.batcher.release();
      link.batcher.release();
      expect(new Set(refCounts(memory, 300))).toEqual(new Set([1]));
      await link.close(); // nothing left to send
      memory.release();
    });
  });
});
