/**
 * The source's side of the data connection for one migration: the peer session, the flow-controlled
 * writer, the page batcher (PAGE_RUN / PAGES / ZERO / XBZRLE), the dirty log and its bitmaps. The
 * sender's steps (handshake, pre-copy rounds, stop-and-copy) speak to the receiver only through it.
 */
import type { Duplex } from 'node:stream';
import type { DirtyLog, GuestMemory } from '@vmm/emulator';
import { TokenBucket } from '../bandwidth.js';
import { countDirty } from '../convergence.js';
import { XbzrleCache } from '../encoding/xbzrle-cache.js';
import { ProtocolError } from '../errors.js';
import { bandwidthBytesPerSec, type MigrationPolicy } from '../policy.js';
import { PeerSession } from '../session.js';
import { decodeHelloAck, encodeDigestFrame, encodeFrame, encodeHello, encodeRound, readU32 } from '../wire/codec.js';
import { FrameType, type HelloPayload } from '../wire/frame.js';
import { FrameWriter } from '../wire/frame-writer.js';
import { PageBatcher, type BatchCounters } from '../wire/page-batch.js';

/** Which pages a round sends: every page (round 0) or the pages of the last dirty-log sync. */
export type RoundPages = 'all' | 'dirty';

export class OutgoingStream {
  readonly session: PeerSession;
  readonly writer: FrameWriter;
  readonly cache: XbzrleCache | null;
  private readonly batcher: PageBatcher;
  /** The pacing of every frame (max_bandwidth): its rate may change mid-migration (setBandwidth). */
  private readonly bucket: TokenBucket;
  private readonly dirtyLog: DirtyLog;
  /** The pages a dirty round sends: the last sync, plus (at the pause) what was written since. */
  private readonly bitmap: Uint32Array;
  private readonly lateBitmap: Uint32Array;
  /** Page records sent so far (raw, XBZRLE and zero pages, every round). */
  pagesSent = 0;

  /**
   * Attaches to `connection` at once (its 'error' is handled from here on) and starts dirty logging,
   * so that round 0's sync covers every write from now on.
   */
  constructor(
    connection: Duplex,
    private readonly memory: GuestMemory,
    policy: MigrationPolicy,
    migrationId: string,
    signal: AbortSignal | undefined,
  ) {
    this.session = new PeerSession(connection, { migrationId, signal, completionTimeoutMs: policy.completionTimeoutMs });
    this.bucket = new TokenBucket(bandwidthBytesPerSec(policy));
    this.writer = new FrameWriter(connection, this.bucket, this.session.signal);
    this.cache = policy.xbzrle ? new XbzrleCache(memory.pageCount, policy.xbzrleCacheMib * 1024 * 1024) : null;
    this.batcher = new PageBatcher(memory, this.writer, this.cache);
    this.dirtyLog = memory.createDirtyLog();
    this.bitmap = new Uint32Array(Math.ceil(memory.pageCount / 32));
    this.lateBitmap = new Uint32Array(this.bitmap.length);
  }

  /** Paces the frames from now on at `bytesPerSec` (Infinity = unlimited): UpdateMigration's bandwidth. */
  setBandwidth(bytesPerSec: number): void {
    this.bucket.setRate(bytesPerSec);
  }

  get counters(): Readonly<BatchCounters> {
    return this.batcher.counters;
  }

  /** Non-zero pages handled so far (raw, delta or unchanged): what the page rate is measured in. */
  get nonZeroPages(): number {
    const c = this.batcher.counters;
    return c.pagesRaw + c.pagesXbzrle + c.pagesUnchanged;
  }

  get bytesWritten(): number {
    return this.writer.bytesWritten;
  }

  /** Hash each raw page as it is copied (off for round 0 at unlimited bandwidth: see precopy.ts). */
  set hashOnCopy(on: boolean) {
    this.batcher.hashOnCopy = on;
  }

  /**
   * Sends HELLO and waits for HELLO_ACK; from then on the connection may not stay idle for more than
   * `idleTimeoutMs` (0 = no bound). Returns the agreed protocol version (2 enables PAGE_RUN).
   */
  async handshake(hello: HelloPayload, idleTimeoutMs: number): Promise<number> {
    await this.writer.sendFrame(encodeHello(hello));
    const version = decodeHelloAck(await this.session.expect(FrameType.HELLO_ACK));
    if (version >= 2) this.batcher.enablePageRuns();
    this.session.watchIdle(idleTimeoutMs, () => this.writer.bytesWritten);
    return version;
  }

  /**
   * Sends one round, then announces the next with a ROUND frame, so that the receiver can hash what it
   * has while the source still runs (the final round, `last`, needs no announcement of its own).
   * @returns the page records the round sent
   */
  async sendRound(round: number, pages: RoundPages, last: boolean): Promise<number> {
    const batcher = this.batcher;
    if (round === 0) await this.writer.sendFrame(encodeRound(0));
    const before = this.sentRecords();
    if (pages === 'all') {
      for (let page = 0, n = this.memory.pageCount; page < n; page++) {
        if (batcher.full) await batcher.flushFull();
        batcher.add(page, false);
      }
    } else {
      const bitmap = this.bitmap;
      const useDelta = this.cache !== null;
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
    if (!last) await this.writer.sendFrame(encodeRound(round + 1));
    const sent = this.sentRecords() - before;
    this.pagesSent += sent;
    return sent;
  }

  /** Waits until the receiver applied round `round` (its ROUND_ACK names the round announced next). */
  async roundApplied(round: number): Promise<void> {
    const acked = readU32(await this.session.expect(FrameType.ROUND_ACK), 0);
    if (acked !== round + 1) throw new ProtocolError(`ROUND_ACK ${acked}, expected ${round + 1}`);
  }

  /** Syncs the dirty log into the round bitmap; returns how many pages are dirty. */
  syncDirty(): number {
    this.dirtyLog.sync(this.bitmap);
    return countDirty(this.bitmap);
  }

  /** At the pause: adds what was written since the last sync to the round bitmap; returns the total. */
  addLateDirty(): number {
    this.dirtyLog.sync(this.lateBitmap);
    const bitmap = this.bitmap;
    const late = this.lateBitmap;
    for (let w = 0; w < bitmap.length; w++) bitmap[w] |= late[w]!;
    return countDirty(bitmap);
  }

  async sendDeviceState(state: Uint8Array): Promise<void> {
    await this.writer.sendFrame(encodeFrame(FrameType.DEVICE_STATE, state));
  }

  async sendComplete(sourceDigest: string): Promise<void> {
    await this.writer.sendFrame(encodeDigestFrame(FrameType.COMPLETE, sourceDigest));
  }

  /** The target's digest once it applied everything (VERIFIED). */
  verified(): Promise<string> {
    return this.session.expectDigest(FrameType.VERIFIED);
  }

  /** Success: every write taken by the socket (pins dropped), dirty logging off, the connection half-closed. */
  async finish(): Promise<void> {
    await this.writer.flushed();
    this.dirtyLog.disable();
    this.session.finish();
  }

  /**
   * Failure: dirty logging off, unsent runs unpinned, the peer told with an ERROR frame.
   * @returns the error to report (the session's abort reason when it ended first)
   */
  fail(err: unknown): Error {
    this.dirtyLog.disable();
    this.batcher.release();
    const error = this.session.failure(err);
    this.session.fail(error);
    return error;
  }

  private sentRecords(): number {
    const c = this.batcher.counters;
    return c.pagesRaw + c.pagesZero + c.pagesXbzrle;
  }
}
