import { beforeAll, describe, expect, it } from 'vitest';
import { FramePool, GuestMemory, initHashing } from '@vmm/emulator';
import { BackgroundHasher, GAP_STEP_PAGES, STEP_PAGES, STREAM_QUIET_MS } from './background-hasher.js';
import { waitFor } from '../../../test/support/wait-for.js';

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('BackgroundHasher', () => {
  beforeAll(() => initHashing());

  it('follows the pages written so far, one gap-sized step per event-loop turn, and never walks beyond them', async () => {
    const memory = new GuestMemory(new FramePool(), 4 * GAP_STEP_PAGES);
    memory.fillRandom(0, 4 * GAP_STEP_PAGES, 1);
    const hasher = new BackgroundHasher(memory);
    hasher.noteWritten(GAP_STEP_PAGES + 9); // pages 0..GAP_STEP_PAGES+9 written, no read ever: a quiet stream
    expect(memory.pool.hashValid(memory.frameOf(0))).toBe(false); // nothing before the turn ends
    await turn();
    expect(memory.pool.hashValid(memory.frameOf(GAP_STEP_PAGES - 1))).toBe(true);
    expect(memory.pool.hashValid(memory.frameOf(GAP_STEP_PAGES))).toBe(false); // one step per turn
    await turn();
    expect(memory.pool.hashValid(memory.frameOf(GAP_STEP_PAGES + 9))).toBe(true);
    expect(memory.pool.hashValid(memory.frameOf(GAP_STEP_PAGES + 10))).toBe(false); // not written yet
    expect(hasher.running).toBe(false);
    memory.writeWord(3, 0, 1, 1); // a later round rewrites a page behind the cursor
    hasher.restart();
    await turn();
    expect(memory.pool.hashValid(memory.frameOf(3))).toBe(true);
    hasher.stop();
    hasher.noteWritten(4 * GAP_STEP_PAGES - 1);
    await turn();
    expect(memory.pool.hashValid(memory.frameOf(3 * GAP_STEP_PAGES))).toBe(false); // stopped for good
    memory.release();
  });

  it('waits while the stream flows, hashes in its gaps, and finishes in whole steps before whenCaughtUp calls back', async () => {
    const memory = new GuestMemory(new FramePool(), 2 * STEP_PAGES);
    memory.fillRandom(0, 2 * STEP_PAGES, 2);
    const hasher = new BackgroundHasher(memory);
    hasher.noteRead(); // data arriving
    const readAt = performance.now();
    hasher.noteWritten(2 * STEP_PAGES - 1);
    for (let i = 0; i < 3; i++) await turn();
    // Turns without a read right after one are not a gap: nothing hashed until the stream is quiet.
    if (performance.now() - readAt < STREAM_QUIET_MS) expect(memory.pool.hashValid(memory.frameOf(0))).toBe(false);
    expect(hasher.running).toBe(true);
    await waitFor(() => memory.pool.hashValid(memory.frameOf(0)), 2000, 'condition', 1);
    expect(performance.now() - readAt).toBeGreaterThanOrEqual(STREAM_QUIET_MS);
    hasher.noteRead(); // the stream flows again: the pass pauses
    const paused = [...Array(2 * STEP_PAGES).keys()].filter((p) => memory.pool.hashValid(memory.frameOf(p))).length;
    await turn();
    if (performance.now() - readAt < STREAM_QUIET_MS) {
      expect([...Array(2 * STEP_PAGES).keys()].filter((p) => memory.pool.hashValid(memory.frameOf(p))).length).toBe(paused);
    }
    let acked = false;
    hasher.whenCaughtUp(() => (acked = true));
    expect(acked).toBe(false);
    // The caller waits now: whole steps every turn, reads or not, at most two left.
    for (let i = 0; i < 2 && !acked; i++) {
      hasher.noteRead();
      await turn();
    }
    expect(acked).toBe(true);
    expect(memory.pool.hashValid(memory.frameOf(2 * STEP_PAGES - 1))).toBe(true);
    let again = false;
    hasher.whenCaughtUp(() => (again = true)); // nothing left: at once
    expect(again).toBe(true);
    expect(hasher.running).toBe(false);
    hasher.stop();
    memory.release();
  });
});
