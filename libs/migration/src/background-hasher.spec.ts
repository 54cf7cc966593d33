import { beforeAll, describe, expect, it } from 'vitest';
import { FramePool, GuestMemory, initHashing } from '@vmm/emulator';
import { BackgroundHasher, IN_STREAM_STEP_PAGES, STEP_PAGES } from './background-hasher.js';

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('BackgroundHasher', () => {
  beforeAll(() => initHashing());

  it('follows the pages written so far, one step per event-loop turn, and never walks beyond them', async () => {
    const memory = new GuestMemory(new FramePool(), 3 * STEP_PAGES);
    memory.fillRandom(0, 3 * STEP_PAGES, 1);
    const hasher = new BackgroundHasher(memory);
    hasher.noteWritten(STEP_PAGES + 9); // pages 0..STEP_PAGES+9 written
    expect(memory.pool.hashValid(memory.frameOf(0))).toBe(false); // nothing before the turn ends
    await turn();
    expect(memory.pool.hashValid(memory.frameOf(STEP_PAGES - 1))).toBe(true);
    expect(memory.pool.hashValid(memory.frameOf(STEP_PAGES))).toBe(false); // one step per turn
    await turn();
    expect(memory.pool.hashValid(memory.frameOf(STEP_PAGES + 9))).toBe(true);
    expect(memory.pool.hashValid(memory.frameOf(STEP_PAGES + 10))).toBe(false); // not written yet
    expect(hasher.running).toBe(false);
    memory.writeWord(3, 0, 1, 1); // a later round rewrites a page behind the cursor
    hasher.restart();
    await turn();
    expect(memory.pool.hashValid(memory.frameOf(3))).toBe(true);
    hasher.stop();
    hasher.noteWritten(3 * STEP_PAGES - 1);
    await turn();
    expect(memory.pool.hashValid(memory.frameOf(2 * STEP_PAGES))).toBe(false); // stopped for good
    memory.release();
  });

  it('yields in turns that read data, and finishes the pass before whenCaughtUp calls back', async () => {
    const memory = new GuestMemory(new FramePool(), 2 * STEP_PAGES);
    memory.fillRandom(0, 2 * STEP_PAGES, 2);
    const hasher = new BackgroundHasher(memory);
    hasher.noteWritten(2 * STEP_PAGES - 1);
    hasher.noteRead(1024, 1024); // data arrived this turn
    await turn();
    expect(memory.pool.hashValid(memory.frameOf(0))).toBe(false); // skipped for receiving
    await turn(); // a turn without a read: a step (small right after a read, whole on a quiet connection)
    expect(memory.pool.hashValid(memory.frameOf(IN_STREAM_STEP_PAGES - 1))).toBe(true);
    hasher.noteRead(1024, 1024);
    let acked = false;
    hasher.whenCaughtUp(() => (acked = true));
    expect(acked).toBe(false);
    // No longer skipped for reads (the caller waits for the pass): whole steps, at most two left.
    for (let i = 0; i < 2 && !acked; i++) {
      hasher.noteRead(1024, 1024);
      await turn();
    }
    expect(acked).toBe(true);
    expect(memory.pool.hashValid(memory.frameOf(2 * STEP_PAGES - 1))).toBe(true);
    let again = false;
    hasher.whenCaughtUp(() => (again = true)); // nothing left: at once
    expect(again).toBe(true);
    hasher.stop();
    memory.release();
  });
});
