/**
 * The sender's hashing outside the copy: timing one page hash before HELLO, hashing round 0's pages
 * after they left, and measuring a digest's walk over cached hashes near the switch-over. The downtime
 * prediction (switch-over.ts) needs the last two figures; the pass keeps round 0 at the socket's pace.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { framesHashedTotal, type GuestMemory } from '@vmm/emulator';

/** A hash's cost when no calibration sample was taken (about 1.5 µs per 4 KiB page with xxhash-wasm). */
export const DEFAULT_HASH_MS_PER_PAGE = 0.0015;
/** Resident pages hashed up front to time one hash (they would be hashed in round 0 anyway). */
const CALIBRATION_PAGES = 512;
/** Pages hashed per event-loop turn by the pass after round 0 (a few ms; the vCPU timers keep running). */
const HASH_PASS_STEP_PAGES = 4096;

/**
 * Hashes the first CALIBRATION_PAGES resident pages and returns one hash's cost in ms: the downtime
 * prediction subtracts hashing from a measured digest to get the cost of walking the cached hashes.
 * Hashing more up front does not pay: on two cores it slows the target's page faulting in PREPARING.
 */
export function calibrateHashMsPerPage(memory: GuestMemory): number {
  const before = framesHashedTotal();
  const start = performance.now();
  for (let page = 0, n = 0; page < memory.pageCount && n < CALIBRATION_PAGES; page++) {
    if (memory.frameOf(page) === -1) continue;
    memory.cachePageHash(page);
    n++;
  }
  const hashed = framesHashedTotal() - before;
  return hashed >= CALIBRATION_PAGES / 2 ? (performance.now() - start) / hashed : DEFAULT_HASH_MS_PER_PAGE;
}

/**
 * Hashes every resident page whose cached hash is stale, in steps of HASH_PASS_STEP_PAGES with a turn
 * of the event loop between them. Stops early when `signal` aborts.
 */
export async function hashPass(memory: GuestMemory, signal: AbortSignal): Promise<void> {
  for (let first = 0; first < memory.pageCount && !signal.aborted; first += HASH_PASS_STEP_PAGES) {
    memory.cachePageHashRange(first, Math.min(HASH_PASS_STEP_PAGES, memory.pageCount - first));
    await nextTurn();
  }
}

/**
 * A digest's cost when every page's hash is cached, in ms: runs one digest and subtracts its hashing
 * of the pages dirtied since they were sent (counted by framesHashedTotal, at `hashMsPerPage` each).
 */
export function measureDigestWalkMs(memory: GuestMemory, hashMsPerPage: number): number {
  const hashedBefore = framesHashedTotal();
  const start = performance.now();
  memory.digest();
  const hashed = framesHashedTotal() - hashedBefore;
  return Math.max(0, performance.now() - start - hashed * hashMsPerPage);
}
