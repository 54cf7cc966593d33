/**
 * What the engine reports. Field names mirror cluster.v1 Migration (camelCase) so the agent can copy them.
 */
import type { MigrationPhase } from './phase.js';

/** Emitted after every pre-copy round and at each phase change. */
export interface MigrationProgress {
  migrationId: string;
  phase: MigrationPhase;
  round: number;
  pagesTotal: number;
  /** Page records sent so far (raw, XBZRLE and zero pages, every round). */
  pagesSent: number;
  bytesSent: number;
  dirtyPagesRemaining: number;
  dirtyRatePagesPerSec: number;
  throughputBytesPerSec: number;
  expectedDowntimeMs: number;
  throttlePercent: number;
  /** Epoch ms of the source's pause: set from the STOP_AND_COPY event on (emitted at the pause itself). */
  pausedAtMs?: number;
  /**
   * STOP_AND_COPY of a source that holds before the last pages until the controller continues the
   * switch-over (QEMU's pause-before-switchover), giving up after `switchoverHoldMs`.
   */
  awaitingSwitchover?: boolean;
  switchoverHoldMs?: number;
}

export interface SenderStats {
  /** Pre-copy rounds plus the stop-and-copy pass (QEMU's dirty sync count). */
  rounds: number;
  pagesTotal: number;
  pagesSent: number;
  pagesRaw: number;
  /** Of pagesRaw: written straight from the guest's frames (PAGE_RUN), not copied into a batch. */
  pagesWithoutCopy: number;
  pagesZero: number;
  pagesXbzrle: number;
  pagesUnchanged: number;
  xbzrleCacheHits: number;
  xbzrleCacheMisses: number;
  xbzrleOverflows: number;
  bytesSent: number;
  throttlePercentMax: number;
  /** Pages sent while the source was paused. */
  stopAndCopyPages: number;
  /** Source paused → target digest received (what the pause costs before commit). */
  stopAndCopyMs: number;
  /**
   * What the sender predicted for stopAndCopyMs when it decided to switch over (paused copy and both
   * digests, the fixed switch-over overhead excluded): callers compare it with stopAndCopyMs to learn.
   */
  expectedStopAndCopyMs: number;
  /** Largest number of bytes queued in the connection's writable buffer. */
  maxBufferedBytes: number;
}

export interface ReceiverStats {
  rounds: number;
  pagesRaw: number;
  /** Page bytes the kernel read straight into their frames (PAGE_RUN in place), not via the read buffer. */
  bytesInPlace: number;
  pagesZero: number;
  pagesXbzrle: number;
  bytesReceived: number;
}
