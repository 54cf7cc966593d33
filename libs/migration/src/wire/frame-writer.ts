/**
 * Writes frames to a Duplex with flow control: honours write() backpressure ('drain'), paces with a
 * token bucket, and builds page batches in a small ring of reusable buffers. A ring buffer is reused
 * only after the stream reported its previous write done, so bytes queued in the sender stay bounded
 * by (ring size × batch size + the stream's highWaterMark).
 *
 * Reuse is safe only where a write's callback means the bytes were copied out (a net.Socket: the kernel
 * has them). An in-process Duplex (PassThrough and friends) may still hold the chunk by reference in
 * its readable buffer after the callback, so on any other stream each batch gets a fresh buffer.
 */
import { once } from 'node:events';
import { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { TokenBucket } from '../bandwidth.js';
import { BATCH_PAYLOAD_BYTES, FRAME_HEADER_BYTES } from './frame.js';
import { writeFrameHeader } from './codec.js';

/**
 * Bytes the stream may hold queued before the writer waits for 'drain'. A socket's highWaterMark (16 KiB)
 * is below one batch, so waiting on every write() === false would leave the kernel buffer empty while the
 * next batch is built; a few batches in flight keep it full. The ring still bounds what is queued.
 */
const MAX_QUEUED_BYTES = 3 * (FRAME_HEADER_BYTES + BATCH_PAYLOAD_BYTES);

/** Longest stretch the sender computes without letting timers (the guest's vCPU workload) run. */
const MAX_BUSY_MS = 8;

export class FrameWriter {
  private readonly ring: Buffer[];
  private readonly pending: (Promise<void> | null)[];
  /** Slots handed out by acquire() and not yet sent: never handed out twice. */
  private readonly acquired: boolean[];
  /** PAGE_RUN writes not yet taken by the stream. */
  private readonly runsInFlight = new Set<Promise<void>>();
  private next = 0;
  private lastYieldMs = performance.now();
  private writeOk = true;
  /** Bytes handed to the stream (frame headers included). */
  bytesWritten = 0;
  /** Largest writableLength seen right after a write: what flow control bounds. */
  maxBufferedBytes = 0;

  constructor(
    private readonly stream: Writable,
    private readonly bucket: TokenBucket,
    private readonly signal: AbortSignal,
    ringSize = 6,
    private readonly reuseBuffers = stream instanceof Socket,
  ) {
    this.ring = Array.from({ length: ringSize }, () => Buffer.allocUnsafe(FRAME_HEADER_BYTES + BATCH_PAYLOAD_BYTES));
    this.pending = new Array<Promise<void> | null>(ringSize).fill(null);
    this.acquired = new Array<boolean>(ringSize).fill(false);
  }

  /**
   * True when a write's callback means the stream copied the bytes out (a socket): PAGE_RUN data may
   * then be written straight from the guest's frames, held (pinned by the caller) until that callback.
   */
  get zeroCopy(): boolean {
    return this.reuseBuffers;
  }

  /** A ring buffer free for a new batch; its payload starts at FRAME_HEADER_BYTES. */
  async acquire(): Promise<Buffer> {
    let slot = this.next;
    while (this.acquired[slot]) slot = (slot + 1) % this.ring.length;
    this.next = (slot + 1) % this.ring.length;
    this.acquired[slot] = true;
    const waiting = this.pending[slot];
    if (waiting) {
      await waiting;
      this.pending[slot] = null;
    }
    this.signal.throwIfAborted();
    if (!this.reuseBuffers) this.ring[slot] = Buffer.allocUnsafe(this.ring[slot]!.length);
    return this.ring[slot]!;
  }

  /** Sends the batch built in the buffer returned by the last acquire(). */
  async sendBatch(buf: Buffer, type: number, payloadBytes: number): Promise<void> {
    const slot = this.ring.indexOf(buf);
    if (slot < 0 || !this.acquired[slot]) throw new Error('sendBatch: buffer was not acquired');
    writeFrameHeader(buf, 0, type, payloadBytes);
    await this.bucket.take(FRAME_HEADER_BYTES + payloadBytes, this.signal);
    this.acquired[slot] = false;
    this.pending[slot] = this.write(buf.subarray(0, FRAME_HEADER_BYTES + payloadBytes));
    await this.afterWrite();
  }

  /**
   * Sends a frame whose payload ends in bytes the writer must not copy (PAGE_RUN): `head` (frame header
   * and the start of the payload), then `data`, in one writev. `written` runs once the stream no longer
   * needs `data`, also when the send fails or is cancelled.
   */
  async sendWithoutCopy(head: Uint8Array, data: Uint8Array, written: () => void): Promise<void> {
    try {
      await this.bucket.take(head.length + data.length, this.signal);
    } catch (err) {
      written();
      throw err;
    }
    this.stream.cork();
    void this.write(head);
    const done = this.write(data).then(written);
    this.stream.uncork();
    this.runsInFlight.add(done);
    void done.then(() => this.runsInFlight.delete(done));
    await this.afterWrite();
  }

  /** Sends a complete frame built elsewhere (control frames, zero ranges). */
  async sendFrame(frame: Uint8Array): Promise<void> {
    await this.bucket.take(frame.length, this.signal);
    void this.write(frame);
    await this.afterWrite();
  }

  /** Resolves once every write was taken by the stream. */
  async flushed(): Promise<void> {
    await Promise.all([...this.pending.filter((p) => p !== null), ...this.runsInFlight]);
    this.pending.fill(null);
  }

  private write(bytes: Uint8Array): Promise<void> {
    this.bytesWritten += bytes.length;
    return new Promise<void>((resolve) => {
      // A failed write surfaces through the stream's 'error'/'close', which aborts the migration.
      this.writeOk = this.stream.write(bytes, () => resolve());
      if (this.stream.writableLength > this.maxBufferedBytes) this.maxBufferedBytes = this.stream.writableLength;
    });
  }

  private async afterWrite(): Promise<void> {
    if (!this.writeOk && this.stream.writableLength > MAX_QUEUED_BYTES) await once(this.stream, 'drain', { signal: this.signal });
    const now = performance.now();
    if (now - this.lastYieldMs > MAX_BUSY_MS) {
      this.lastYieldMs = now;
      await yieldToLoop(undefined, { signal: this.signal });
    }
  }
}
