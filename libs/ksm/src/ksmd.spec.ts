import { FramePool, GuestMemory, PAGE_SIZE, initHashing } from '@vmm/emulator';
import { beforeAll, describe, expect, it } from 'vitest';
import { KsmScanner } from './ksm-scanner.js';
import { Ksmd } from './ksmd.js';

beforeAll(async () => {
  await initHashing();
});

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('Ksmd', () => {
  it('scans in batches on its timer until stopped, and idles while run≠1', async () => {
    const pool = new FramePool();
    const mems = [new GuestMemory(pool, 64), new GuestMemory(pool, 64)];
    const page = new Uint8Array(PAGE_SIZE).fill(3);
    for (const m of mems) for (let p = 0; p < 64; p++) m.writePage(p, page);
    const scanner = new KsmScanner({ pool, knobs: { run: 0, pages_to_scan: 16, sleep_millisecs: 1 } });
    mems.forEach((m, i) => scanner.addRegion(`vm${i}`, m));
    const ksmd = new Ksmd(scanner);
    ksmd.start();
    try {
      await new Promise((r) => setTimeout(r, 30));
      expect(scanner.stats().pages_scanned).toBe(0); // run=0
      scanner.configure({ run: 1 });
      await waitFor(() => scanner.stats().full_scans >= 3, 10_000);
      expect(scanner.stats().pages_sharing).toBe(127);
      expect(pool.framesInUse).toBe(1);
    } finally {
      ksmd.stop();
    }
    expect(ksmd.running).toBe(false);
    const batches = ksmd.batchCount;
    await new Promise((r) => setTimeout(r, 30));
    expect(ksmd.batchCount).toBe(batches);
  });

  it('reports a failing batch and keeps running', async () => {
    const pool = new FramePool();
    const scanner = new KsmScanner({ pool, knobs: { run: 1, sleep_millisecs: 1 } });
    const errors: unknown[] = [];
    let calls = 0;
    scanner.scanBatch = () => {
      if (++calls === 1) throw new Error('boom');
      return 0;
    };
    const ksmd = new Ksmd(scanner, (err) => errors.push(err));
    ksmd.start();
    try {
      await waitFor(() => calls >= 3, 5_000);
    } finally {
      ksmd.stop();
    }
    expect(errors).toHaveLength(1);
  });
});
