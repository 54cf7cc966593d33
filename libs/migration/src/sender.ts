/**
 * The source end of a pre-copy migration. Knows nothing of gRPC: give it a Duplex to the receiver.
 *
 * PREPARING (HELLO, wait for HELLO_ACK) → PRECOPY (round 0: every page; round n: pages dirtied during
 * round n-1) → STOP_AND_COPY (pause, last dirty pages, device state, COMPLETE, wait for VERIFIED) →
 * ready to commit. Any failure before commit rolls back: the source resumes (if it was running).
 */
import type { Duplex } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { framesHashedTotal, initHashing, type VirtualMachine } from '@vmm/emulator';
import { AutoConverge, countDirty, decideAfterRound, expectedDowntimeFromPageRateMs } from './convergence.js';
import { BandwidthEstimator, TokenBucket } from './bandwidth.js';
import { XbzrleCache } from './encoding/xbzrle-cache.js';
import { ConvergenceError, DigestMismatchError, MigrationStateError, ProtocolError } from './errors.js';
import { assertTransition, type MigrationPhase } from './phase.js';
import { bandwidthBytesPerSec, resolvePolicy, type MigrationPolicy, type PartialMigrationPolicy } from './policy.js';
import type { MigrationProgress, SenderStats } from './progress.js';
import { decodeHelloAck, encodeDigestFrame, encodeFrame, encodeHello, encodeRound, readU32 } from './wire/codec.js';
import { FrameType, MIN_PROTOCOL_VERSION, PAGE_SIZE, PROTOCOL_VERSION } from './wire/frame.js';
import { FrameWriter } from './wire/frame-writer.js';
import { PageBatcher } from './wire/page-batch.js';
import { PeerSession } from './session.js';
import { trace } from './trace.js';

/**
 * Device state, COMPLETE/VERIFIED round trip and the target's resume, in ms, when the caller knows no
 * better. Through a control plane the switch-over also waits for the commit (agents, controller): the
 * agent passes what it measured as `switchOverOverheadMs`.
 */
export const DEFAULT_SWITCH_OVER_OVERHEAD_MS = 5;
/**
 * Safety factor on the pages to send under pause: the dirty set grows between the last sync and the
 * pause, and the final round also competes with both digests for the CPU.
 */
const DIRTY_MARGIN = 1.25;

export interface SenderOptions {
  vm: VirtualMachine;
  migrationId: string;
  token: string;
  policy?: PartialMigrationPolicy;
  /** Cancels the migration in any phase before commit. */
  signal?: AbortSignal;
  onProgress?: (progress: MigrationProgress) => void;
  /**
   * Fixed cost of the switch-over beyond sending the last pages and the two digests (device state, the
   * VERIFIED round trip, the commit through the control plane, the target's resume), in ms. Counted in
   * the expected downtime. Default DEFAULT_SWITCH_OVER_OVERHEAD_MS (an in-process commit).
   */
  switchOverOverheadMs?: number;
}

/** Ready to commit: the target holds a verified copy; the source is paused, not destroyed. */
export interface OutgoingResult {
  migrationId: string;
  sourceDigest: string;
  targetDigest: string;
  /** Epoch ms when the source paused: downtime runs from here to the target's resume. */
  pausedAtMs: number;
  /** Start → ready to commit. */
  totalTimeMs: number;
  policy: MigrationPolicy;
  stats: SenderStats;
  /** After the cluster committed: the source VM is destroyed; it can never run again. */
  commit(): void;
  /** Before commit: the source VM resumes where it paused. */
  abort(): void;
}

/** A hash's cost when no calibration sample was taken (about 1.5 µs per 4 KiB page with xxhash-wasm). */
const DEFAULT_HASH_MS_PER_PAGE = 0.0015;
/** Resident pages hashed up front to time one hash (they would be hashed in round 0 anyway). */
const CALIBRATION_PAGES = 512;

/**
 * Hashes the first CALIBRATION_PAGES resident pages and returns one hash's cost in ms: the downtime
 * prediction subtracts hashing from a measured digest to get the cost of walking the cached hashes.
 * Hashing more up front does not pay: on two cores it slows the target's page faulting in PREPARING.
 */
function calibrateHashMsPerPage(memory: VirtualMachine['memory']): number {
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

/** Pages hashed per event-loop turn by the pass after round 0 (a few ms; the vCPU timers keep running). */
const HASH_PASS_STEP_PAGES = 4096;

/**
 * Hashes every resident page whose cached hash is stale, in steps of HASH_PASS_STEP_PAGES with a turn
 * of the event loop between them. Stops early when `signal` aborts.
 */
async function hashPass(memory: VirtualMachine['memory'], signal: AbortSignal): Promise<void> {
  for (let first = 0; first < memory.pageCount && !signal.aborted; first += HASH_PASS_STEP_PAGES) {
    memory.cachePageHashRange(first, Math.min(HASH_PASS_STEP_PAGES, memory.pageCount - first));
    await nextTurn();
  }
}

export class MigrationSender {
  readonly policy: MigrationPolicy;
  private phase: MigrationPhase = 'PREPARING';
  private round = 0;
  private lastProgress: MigrationProgress | null = null;

  constructor(private readonly opts: SenderOptions) {
    this.policy = resolvePolicy(opts.policy, opts.vm.memory.pageCount * PAGE_SIZE);
    const overhead = opts.switchOverOverheadMs ?? DEFAULT_SWITCH_OVER_OVERHEAD_MS;
    if (!Number.isFinite(overhead) || overhead < 0) throw new MigrationStateError(`switchOverOverheadMs must be ≥ 0, got ${overhead}`);
    this.switchOverOverheadMs = overhead;
  }

  private readonly switchOverOverheadMs: number;

  get currentPhase(): MigrationPhase {
    return this.phase;
  }

  async run(connection: Duplex): Promise<OutgoingResult> {
    const { vm, migrationId, policy } = { ...this.opts, policy: this.policy };
    const memory = vm.memory;
    const pageCount = memory.pageCount;
    const startMs = performance.now();
    const wasRunning = vm.state === 'running';
    if (vm.state === 'stopped') {
      connection.destroy();
      throw new MigrationStateError(`migration ${migrationId}: source VM ${vm.id} is stopped`);
    }
    // The session listens for 'error' from here on: nothing may await before it is attached.
    const session = new PeerSession(connection, migrationId, this.opts.signal, policy.completionTimeoutMs);
    const writer = new FrameWriter(connection, new TokenBucket(bandwidthBytesPerSec(policy)), session.signal);
    const cache = policy.xbzrle ? new XbzrleCache(pageCount, policy.xbzrleCacheMib * 1024 * 1024) : null;
    const batcher = new PageBatcher(memory, writer, cache);
    const bandwidth = new BandwidthEstimator(bandwidthBytesPerSec(policy));
    const converge = new AutoConverge(policy.autoConverge);
    const dirtyLog = memory.createDirtyLog();
    const bitmap = new Uint32Array(Math.ceil(pageCount / 32));
    const lateBitmap = new Uint32Array(bitmap.length);
    let pagesSent = 0;
    let pausedAtMs = 0;
    let pausedAtPerf = 0;
    let stopAndCopyPages = 0;
    const sentPages = () => batcher.counters.pagesRaw + batcher.counters.pagesZero + batcher.counters.pagesXbzrle;

    const nonZeroPages = () => batcher.counters.pagesRaw + batcher.counters.pagesXbzrle + batcher.counters.pagesUnchanged;

    /**
     * Sends one round, then announces the next with a ROUND frame, so that the receiver can digest what
     * it has while the source still runs (the final round needs no announcement of its own).
     */
    const sendRound = async (round: number, all: boolean, last: boolean): Promise<number> => {
      if (round === 0) await writer.sendFrame(encodeRound(0));
      const before = sentPages();
      if (all) {
        for (let page = 0; page < pageCount; page++) {
          if (batcher.full) await batcher.flushFull();
          batcher.add(page, false);
        }
      } else {
        const useDelta = cache !== null;
        for (let w = 0; w < bitmap.length; w++) {
          let v = bitmap[w]!;
          while (v !== 0) {
            const low = v & -v;
            v ^= low;
            if (batcher.full) await batcher.flushFull();
            batcher.add(w * 32 + 31 - Math.clz32(low), useDelta);
          }
        }
      }
      await batcher.flushAll();
      if (!last) await writer.sendFrame(encodeRound(round + 1));
      return sentPages() - before;
    };

    try {
      await initHashing();
      const hashMsPerPage = calibrateHashMsPerPage(memory);
      this.setPhase('PREPARING');
      await writer.sendFrame(
        encodeHello({ version: MIN_PROTOCOL_VERSION, maxVersion: PROTOCOL_VERSION, migrationId, token: this.opts.token, pageCount, memoryMib: vm.memoryMib, image: vm.image, vcpus: vm.vcpus, residentPages: memory.residentPages, completionTimeoutMs: policy.completionTimeoutMs }),
      );
      const version = decodeHelloAck(await session.expect(FrameType.HELLO_ACK));
      if (version >= 2) batcher.enablePageRuns();
      trace(migrationId, () => `HELLO_ACK (protocol version ${version}) after ${(performance.now() - startMs).toFixed(1)} ms`);

      this.setPhase('PRECOPY');
      let lastSyncMs = performance.now();
      let roundsDone = 0;
      let copyAndDigestMs = 0; // the last prediction of the paused copy and both digests, overhead excluded
      let walkMs = -1; // a digest's cost when every page's hash is cached, measured once near the switch-over
      for (;;) {
        const roundStart = performance.now();
        const bytesBefore = writer.bytesWritten;
        const nonZeroBefore = nonZeroPages();
        // Round 0 at unlimited bandwidth: move the pages first, hash them while the receiver finishes
        // its own hashing before ROUND_ACK (hashing on copy is a third of the sender's CPU per page, and
        // on a CPU-bound stream it sets the pace). Under a bandwidth cap the sender idles anyway.
        const hashAfter = this.round === 0 && !Number.isFinite(bandwidthBytesPerSec(policy));
        batcher.hashOnCopy = !hashAfter;
        pagesSent += await sendRound(this.round, this.round === 0, false);
        if (hashAfter) {
          await hashPass(memory, session.signal);
          batcher.hashOnCopy = true;
        }
        // A round ends when the receiver has applied it, not when the socket took it: kernel buffers
        // hold thousands of XBZRLE deltas, and the downtime estimate needs the end-to-end pace.
        const acked = readU32(await session.expect(FrameType.ROUND_ACK), 0);
        if (acked !== this.round + 1) throw new ProtocolError(`ROUND_ACK ${acked}, expected ${this.round + 1}`);
        roundsDone++;
        const roundBytes = writer.bytesWritten - bytesBefore;
        bandwidth.sample(roundBytes, nonZeroPages() - nonZeroBefore, performance.now() - roundStart);
        dirtyLog.sync(bitmap);
        const now = performance.now();
        const dirty = countDirty(bitmap);
        let expectedMs = expectedDowntimeFromPageRateMs(dirty * DIRTY_MARGIN, bandwidth.pagesPerSec);
        if (expectedMs <= policy.downtimeLimitMs) {
          // Close to switching over. The source hashes every page as it sends it (the rate above
          // includes it) and the receiver hashes in the background after each round, so under pause a
          // digest walks the page map over cached hashes, plus, on the receiver, the last round's
          // pages. Measure the walk once (this digest also hashes the pages dirtied since they were
          // sent: subtract them).
          if (walkMs < 0) {
            const hashedBefore = framesHashedTotal();
            const digestStart = performance.now();
            memory.digest();
            const hashed = framesHashedTotal() - hashedBefore;
            walkMs = Math.max(0, performance.now() - digestStart - hashed * hashMsPerPage);
          }
          // The receiver hashes the paused round's pages in its digest (the source did while sending).
          copyAndDigestMs = expectedMs + 2 * walkMs + dirty * DIRTY_MARGIN * hashMsPerPage;
          expectedMs = copyAndDigestMs + this.switchOverOverheadMs;
        }
        const throttle = converge.onSync(dirty * PAGE_SIZE, roundBytes);
        if (throttle >= 0) vm.setThrottle(throttle);
        this.emit({
          round: this.round,
          pagesTotal: pageCount,
          pagesSent,
          bytesSent: writer.bytesWritten,
          dirtyPagesRemaining: dirty,
          dirtyRatePagesPerSec: (dirty * 1000) / Math.max(1, now - lastSyncMs),
          throughputBytesPerSec: bandwidth.bytesPerSec,
          expectedDowntimeMs: expectedMs,
          throttlePercent: converge.throttlePercent,
        });
        lastSyncMs = now;
        const decision = decideAfterRound(expectedMs, policy.downtimeLimitMs, roundsDone, policy.maxRounds);
        trace(migrationId, () => `round ${this.round}: ${dirty} dirty, expected downtime ${expectedMs.toFixed(1)} ms, throttle ${converge.throttlePercent}% → ${decision}`);
        if (decision === 'switch-over') break;
        if (decision === 'give-up') {
          throw new ConvergenceError(migrationId, roundsDone, dirty, expectedMs, policy.maxRounds, policy.downtimeLimitMs);
        }
        this.round++;
      }

      this.setPhase('STOP_AND_COPY');
      vm.pause();
      pausedAtMs = performance.timeOrigin + performance.now(); // epoch ms, sub-ms precision
      pausedAtPerf = performance.now();
      // Throttling was a migration aid: neither the target nor a rolled-back source keeps it.
      vm.setThrottle(0);
      // The pages of the last pre-copy sync were not sent yet: add what was written since.
      dirtyLog.sync(lateBitmap);
      for (let w = 0; w < bitmap.length; w++) bitmap[w] |= lateBitmap[w]!;
      this.round++;
      // Watchers see the pause when it happens (the listener must not block: the VM is down).
      this.emit({
        ...this.lastProgress!,
        round: this.round,
        pagesSent,
        bytesSent: writer.bytesWritten,
        dirtyPagesRemaining: countDirty(bitmap),
        throttlePercent: 0,
        pausedAtMs,
      });
      stopAndCopyPages = await sendRound(this.round, false, true);
      pagesSent += stopAndCopyPages;
      const sentAt = performance.now();
      await writer.sendFrame(encodeFrame(FrameType.DEVICE_STATE, vm.saveDeviceState()));
      const sourceDigest = memory.digest();
      const digestAt = performance.now();
      await writer.sendFrame(encodeDigestFrame(FrameType.COMPLETE, sourceDigest));
      const targetDigest = await session.expectDigest(FrameType.VERIFIED);
      trace(migrationId, () => {
        const now = performance.now();
        return `stop-and-copy: ${stopAndCopyPages} pages queued in ${(sentAt - pausedAtPerf).toFixed(1)} ms, source digest ${(digestAt - sentAt).toFixed(1)} ms, VERIFIED after ${(now - digestAt).toFixed(1)} ms more (paused ${(now - pausedAtPerf).toFixed(1)} ms)`;
      });
      if (targetDigest !== sourceDigest) throw new DigestMismatchError(migrationId, sourceDigest, targetDigest);
      await writer.flushed();
      dirtyLog.disable();
      session.finish();
      const stats: SenderStats = {
        rounds: this.round + 1,
        pagesTotal: pageCount,
        pagesSent,
        ...batcher.counters,
        xbzrleCacheHits: cache?.hits ?? 0,
        xbzrleCacheMisses: cache?.misses ?? 0,
        bytesSent: writer.bytesWritten,
        throttlePercentMax: converge.maxPercent,
        stopAndCopyPages,
        stopAndCopyMs: performance.now() - pausedAtPerf,
        expectedStopAndCopyMs: copyAndDigestMs,
        maxBufferedBytes: writer.maxBufferedBytes,
      };
      this.emit({ ...this.lastProgress!, round: this.round, pagesSent, bytesSent: writer.bytesWritten, dirtyPagesRemaining: 0, expectedDowntimeMs: 0, throttlePercent: 0, pausedAtMs });
      return this.readyResult(sourceDigest, targetDigest, pausedAtMs, performance.now() - startMs, stats, wasRunning);
    } catch (err) {
      dirtyLog.disable();
      batcher.release();
      const state: string = vm.state;
      if (state !== 'stopped') {
        vm.setThrottle(0);
        if (wasRunning && state === 'paused') vm.resume();
      }
      const error = session.failure(err);
      session.fail(error);
      this.phase = (error as { code?: string }).code === 'CANCELLED' ? 'CANCELLED' : 'FAILED';
      trace(migrationId, () => `${this.phase}: ${error.message}; source ${vm.state}`);
      throw error;
    }
  }

  private readyResult(
    sourceDigest: string, targetDigest: string, pausedAtMs: number, totalTimeMs: number, stats: SenderStats, wasRunning: boolean,
  ): OutgoingResult {
    const vm = this.opts.vm;
    const migrationId = this.opts.migrationId;
    let settled: 'ready' | 'committed' | 'aborted' = 'ready';
    const abort = () => {
      if (settled === 'aborted') return;
      if (settled === 'committed') throw new MigrationStateError(`migration ${migrationId}: cannot abort after commit`);
      settled = 'aborted';
      this.opts.signal?.removeEventListener('abort', abort);
      if (wasRunning && vm.state === 'paused') vm.resume();
    };
    this.opts.signal?.addEventListener('abort', abort, { once: true });
    return {
      migrationId, sourceDigest, targetDigest, pausedAtMs, totalTimeMs, policy: this.policy, stats,
      commit: () => {
        if (settled === 'committed') return;
        if (settled === 'aborted') throw new MigrationStateError(`migration ${migrationId}: cannot commit after abort`);
        settled = 'committed';
        this.opts.signal?.removeEventListener('abort', abort);
        if (vm.state !== 'stopped') vm.stop();
      },
      abort,
    };
  }

  private setPhase(next: MigrationPhase): void {
    if (this.phase === next) return;
    trace(this.opts.migrationId, () => `${this.phase} → ${next}`);
    this.phase = assertTransition(this.phase, next);
  }

  /** `fields` may carry an earlier event's migrationId and phase: the current ones win. */
  private emit(fields: Omit<MigrationProgress, 'migrationId' | 'phase'>): void {
    const progress: MigrationProgress = { ...fields, migrationId: this.opts.migrationId, phase: this.phase };
    this.lastProgress = progress;
    this.opts.onProgress?.(progress);
  }
}
