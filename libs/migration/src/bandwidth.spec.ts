import { describe, expect, it } from 'vitest';
import { BandwidthEstimator, TokenBucket } from './bandwidth.js';

describe('BandwidthEstimator', () => {
  it('starts from the cap, or a loopback guess when unlimited', () => {
    expect(new BandwidthEstimator(1e8).bytesPerSec).toBe(1e8);
    expect(new BandwidthEstimator(Infinity).bytesPerSec).toBe(1e9);
    expect(new BandwidthEstimator(4100e3).pagesPerSec).toBeCloseTo(1000, 6);
  });

  it('measures rounds, keeps the estimate over tiny rounds, and caps', () => {
    const b = new BandwidthEstimator(Infinity);
    b.sample(100e6, 20_000, 100);
    expect(b.bytesPerSec).toBe(1e9);
    expect(b.pagesPerSec).toBe(200_000);
    b.sample(1000, 10, 100); // too small to say anything
    expect(b.bytesPerSec).toBe(1e9);
    expect(b.pagesPerSec).toBe(200_000);
    const capped = new BandwidthEstimator(5e8);
    capped.sample(100e6, 20_000, 100);
    expect(capped.bytesPerSec).toBe(5e8);
  });

  it('predicts with the slower of the last two page rates', () => {
    const b = new BandwidthEstimator(Infinity);
    b.sample(10e6, 1000, 10); // 100k pages/s
    b.sample(10e6, 3000, 10); // 300k pages/s
    expect(b.pagesPerSec).toBe(100_000);
    b.sample(10e6, 2000, 10); // 200k pages/s
    expect(b.pagesPerSec).toBe(200_000);
  });
});

describe('TokenBucket', () => {
  it('never waits when unlimited', async () => {
    const t = new TokenBucket(Infinity);
    expect(t.unlimited).toBe(true);
    await t.take(1e12);
  });

  it('holds back bytes beyond the burst until they are paid for', async () => {
    const rate = 10 * 1024 * 1024; // 10 MiB/s
    const t = new TokenBucket(rate, 1024 * 1024);
    const start = process.hrtime.bigint();
    await t.take(1024 * 1024); // the burst: immediate
    await t.take(512 * 1024); // 0.5 MiB owed: about 50 ms
    const elapsedMs = Number(process.hrtime.bigint() - start) / 1e6;
    expect(elapsedMs).toBeGreaterThanOrEqual(45);
  });

  it('stops waiting when aborted', async () => {
    const t = new TokenBucket(1024, 1);
    const ctl = new AbortController();
    const wait = t.take(1024 * 1024, ctl.signal);
    ctl.abort();
    await expect(wait).rejects.toMatchObject({ name: 'AbortError' });
  });
});
