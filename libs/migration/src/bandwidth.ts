/**
 * Pacing (a token bucket for max_bandwidth) and the bandwidth estimate that predicts downtime.
 */
import { setTimeout as sleep } from 'node:timers/promises';

/** Token bucket in bytes. `take()` resolves once the bytes may be sent; rate Infinity never waits. */
export class TokenBucket {
  private tokens: number;
  private lastNs = process.hrtime.bigint();

  /**
   * @param rateBytesPerSec refill rate; Infinity = unlimited
   * @param burstBytes bucket size: the most that can leave at once after an idle spell
   */
  constructor(
    private rateBytesPerSec: number,
    private readonly burstBytes: number = 1024 * 1024,
  ) {
    this.tokens = burstBytes;
  }

  /**
   * A new rate from now on (UpdateMigration's bandwidth): what is already taken is not re-paced; a
   * bucket that was unlimited starts full.
   */
  setRate(rateBytesPerSec: number): void {
    if (!this.unlimited) this.refill();
    else {
      this.tokens = this.burstBytes;
      this.lastNs = process.hrtime.bigint();
    }
    this.rateBytesPerSec = rateBytesPerSec;
  }

  get unlimited(): boolean {
    return !Number.isFinite(this.rateBytesPerSec);
  }

  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    if (this.unlimited) return;
    this.refill();
    this.tokens -= bytes;
    if (this.tokens >= 0) return;
    const waitMs = (-this.tokens / this.rateBytesPerSec) * 1000;
    await sleep(Math.ceil(waitMs), undefined, { signal });
    this.refill();
  }

  private refill(): void {
    const now = process.hrtime.bigint();
    const elapsedSec = Number(now - this.lastNs) / 1e9;
    this.lastNs = now;
    this.tokens = Math.min(this.burstBytes, this.tokens + elapsedSec * this.rateBytesPerSec);
  }
}

/** Below this many bytes a round is too short to measure the link; the previous estimate stands. */
const MIN_SAMPLE_BYTES = 512 * 1024;
/** Below this many non-zero pages a round is too short to measure the page rate. */
const MIN_SAMPLE_PAGES = 256;
const PAGE_RECORD_BYTES = 4100;

/**
 * Throughput of the data connection, measured per round (bytes handed to the socket / round time), as
 * QEMU's migration_update_counters does per iteration, capped by the policy's bandwidth limit; and the
 * rate at which the sender gets through dirty (non-zero) pages, which is what predicts downtime: with
 * XBZRLE a page costs far fewer bytes than 4 KiB, and on a fast link the CPU, not the wire, sets the pace.
 */
export class BandwidthEstimator {
  private estimateBytesPerSec = 0;
  private estimatePagesPerSec = 0;
  private previousPagesPerSec = 0;

  constructor(private capBytesPerSec: number) {}

  /** A new bandwidth limit (UpdateMigration): estimates from here on are capped by it. */
  setCap(capBytesPerSec: number): void {
    this.capBytesPerSec = capBytesPerSec;
    if (this.estimateBytesPerSec > capBytesPerSec) this.estimateBytesPerSec = capBytesPerSec;
  }

  /** Records one round: bytes written, non-zero pages handled (raw, delta or unchanged), its duration. */
  sample(bytes: number, pages: number, elapsedMs: number): void {
    if (elapsedMs <= 0) return;
    if (bytes >= MIN_SAMPLE_BYTES || this.estimateBytesPerSec === 0) {
      this.estimateBytesPerSec = Math.min(this.capBytesPerSec, (bytes / elapsedMs) * 1000);
    }
    if (pages >= MIN_SAMPLE_PAGES || (this.estimatePagesPerSec === 0 && pages > 0)) {
      this.previousPagesPerSec = this.estimatePagesPerSec;
      this.estimatePagesPerSec = (pages / elapsedMs) * 1000;
    }
  }

  /** Bytes per second; before any sample: the cap, or 1 GB/s when unlimited (a loopback-ish guess). */
  get bytesPerSec(): number {
    if (this.estimateBytesPerSec > 0) return this.estimateBytesPerSec;
    return Number.isFinite(this.capBytesPerSec) ? this.capBytesPerSec : 1e9;
  }

  /**
   * Dirty pages per second the sender gets through: the slower of the last two rounds (the pace swings
   * with the host's load, and an optimistic guess breaks the downtime limit); derived from bytes until a
   * page sample exists.
   */
  get pagesPerSec(): number {
    if (this.estimatePagesPerSec === 0) return this.bytesPerSec / PAGE_RECORD_BYTES;
    return this.previousPagesPerSec > 0 ? Math.min(this.previousPagesPerSec, this.estimatePagesPerSec) : this.estimatePagesPerSec;
  }
}
