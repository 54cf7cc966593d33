/**
 * The target end of a pre-copy migration. Knows nothing of gRPC: give it a Duplex from the sender and
 * the incoming (paused, empty) VM. It checks the token before anything else, applies pages as they
 * arrive (no buffering beyond one frame), loads the device state, and answers COMPLETE with its own
 * digest. It never resumes the VM itself: the result's commit() does, after the cluster committed.
 * Any failure or cancel before that discards the incoming VM (stop() frees its memory).
 */
import { timingSafeEqual } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { initHashing, type FramePool, type FrameReservation, type VirtualMachine } from '@vmm/emulator';
import { forEachZeroRange } from './encoding/zero-runs.js';
import { xbzrleDecode } from './encoding/xbzrle.js';
import { DigestMismatchError, MigrationStateError, ProtocolError, TokenMismatchError } from './errors.js';
import type { ReceiverStats } from './progress.js';
import { BackgroundHasher } from './background-hasher.js';
import { PeerSession } from './session.js';
import { trace } from './trace.js';
import { setReadTarget } from './read-target.js';
import { agreedVersion, decodeDigest, decodeJson, encodeDigestFrame, encodeHelloAck, encodeRound, readU32 } from './wire/codec.js';
import {
  BATCH_PAYLOAD_BYTES,
  FrameType,
  MIN_PROTOCOL_VERSION,
  PAGE_RECORD_BYTES,
  PAGE_SIZE,
  PROTOCOL_VERSION,
  XBZRLE_RECORD_HEADER_BYTES,
  type HelloPayload,
} from './wire/frame.js';

export interface ReceiverOptions {
  /** The incoming VM (created with `incoming: true`): paused, same page count as the source. */
  vm: VirtualMachine;
  migrationId: string;
  /** The one-time token the sender must present in HELLO. */
  token: string;
  signal?: AbortSignal;
  /**
   * Gives up when the migration has not completed by then; 0 = no limit. A HELLO that carries the
   * source's completionTimeoutMs replaces it (that plus HELLO_TIMEOUT_MARGIN_MS), since the source's
   * policy is what bounds the transfer.
   */
  timeoutMs?: number;
}

/** Added to the source's completion timeout: the source's clock started before the HELLO arrived here. */
export const HELLO_TIMEOUT_MARGIN_MS = 10_000;

export interface IncomingResult {
  migrationId: string;
  hello: HelloPayload;
  sourceDigest: string;
  targetDigest: string;
  stats: ReceiverStats;
  /** After the cluster committed: resumes the target VM; returns the resume time (epoch ms). */
  commit(): { resumedAtMs: number };
  /** Before commit: discards the incoming VM. */
  abort(): void;
}

/** Fewer pages than this are not worth reads of their own (a header, the indices, the data). */
const MIN_IN_PLACE_PAGES = 16;
const SENDER_TYPES = [FrameType.PAGES, FrameType.ZERO, FrameType.XBZRLE, FrameType.ROUND, FrameType.DEVICE_STATE, FrameType.COMPLETE];

/** The frames of the PAGE_RUN being read in place, held by one more reference each. */
class PinnedRun {
  private frame = -1;
  private count = 0;

  constructor(private readonly pool: FramePool) {}

  pin(frame: number, count: number): void {
    this.unpin();
    for (let i = 0; i < count; i++) this.pool.incRef(frame + i);
    this.frame = frame;
    this.count = count;
  }

  unpin(): void {
    for (let i = 0; i < this.count; i++) this.pool.decRef(this.frame + i);
    this.count = 0;
  }

  /** After a failure: a read may still be armed with the run's frames until the socket is closed. */
  unpinOnClose(connection: Duplex): void {
    if (this.count === 0) return;
    if (connection.closed) this.unpin();
    else connection.once('close', () => this.unpin());
  }
}

/** Constant-time token comparison. */
export function tokenMatches(expected: string, presented: unknown): boolean {
  if (typeof presented !== 'string') return false;
  const a = Buffer.from(expected, 'utf8');
  const b = Buffer.from(presented, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

export class MigrationReceiver {
  private readonly scratch = new Uint8Array(PAGE_SIZE);
  /** Page indices of one run of PAGES records (a frame holds at most BATCH_PAGES). */
  private readonly runPages = new Uint32Array(BATCH_PAYLOAD_BYTES / PAGE_RECORD_BYTES);
  private readonly stats: ReceiverStats = { rounds: 0, pagesRaw: 0, bytesInPlace: 0, pagesZero: 0, pagesXbzrle: 0, bytesReceived: 0 };

  constructor(private readonly opts: ReceiverOptions) {}

  /**
   * Receives one migration on `connection`.
   * @param hello a HELLO already read and token-checked (listenForIncoming does that); otherwise the
   *   first frame must be a HELLO with the right token.
   */
  async run(connection: Duplex, hello?: HelloPayload): Promise<IncomingResult> {
    const { vm, migrationId } = this.opts;
    await initHashing();
    const memory = vm.memory;
    const accepted = new Set<number>(hello ? SENDER_TYPES : [FrameType.HELLO]);
    let deviceState: Uint8Array | null = null;
    let announced: HelloPayload | null = null;
    let reservation = null as FrameReservation | null;
    let finish!: (r: { sourceDigest: string; targetDigest: string }) => void;
    const completed = new Promise<{ sourceDigest: string; targetDigest: string }>((resolve) => (finish = resolve));

    /** Checks the HELLO, prepares the memory, and returns the HELLO_ACK to send. */
    const acceptHello = (h: HelloPayload): Buffer => {
      if (!tokenMatches(this.opts.token, h.token)) throw new TokenMismatchError(migrationId);
      const version = agreedVersion(h);
      if (version === null) {
        throw new ProtocolError(
          `sender speaks protocol versions ${h.version}..${h.maxVersion ?? h.version}, this receiver ${MIN_PROTOCOL_VERSION}..${PROTOCOL_VERSION}`,
        );
      }
      if (h.migrationId !== migrationId) throw new ProtocolError(`HELLO for migration ${h.migrationId}, expected ${migrationId}`);
      if (h.pageCount !== memory.pageCount) {
        throw new MigrationStateError(`migration ${migrationId}: source has ${h.pageCount} pages, incoming VM ${memory.pageCount}`);
      }
      if (vm.state !== 'paused') throw new MigrationStateError(`migration ${migrationId}: incoming VM is ${vm.state}, not paused`);
      announced = h;
      // Prepare the VM's memory before HELLO_ACK (QEMU's -mem-prealloc): first-touch page faults cost
      // more than the copy itself, so they must not happen while the source streams.
      const resident = h.residentPages;
      if (resident !== undefined && (!Number.isInteger(resident) || resident < 0)) throw new ProtocolError(`HELLO residentPages ${resident}`);
      const reserveStart = performance.now();
      reservation = memory.pool.reserve(Math.min(resident ?? 0, memory.pageCount));
      trace(migrationId, () => `reserved ${reservation!.frames} frames in ${(performance.now() - reserveStart).toFixed(1)} ms`);
      accepted.delete(FrameType.HELLO);
      for (const t of SENDER_TYPES) accepted.add(t);
      if (version >= 2) accepted.add(FrameType.PAGE_RUN);
      return encodeHelloAck(h, version);
    };

    const hasher = new BackgroundHasher(memory);
    const pinned = new PinnedRun(memory.pool);
    // The pass hashes in the stream's gaps only: every read tells it the stream still flows.
    const onRead = () => hasher.noteRead();
    connection.on('data', onRead);
    const session = new PeerSession(
      connection,
      migrationId,
      this.opts.signal,
      hello?.completionTimeoutMs !== undefined && Number.isInteger(hello.completionTimeoutMs) && hello.completionTimeoutMs > 0
        ? hello.completionTimeoutMs + HELLO_TIMEOUT_MARGIN_MS
        : (this.opts.timeoutMs ?? 0),
      {
        onPage: (page, src, offset) => {
          memory.writePage(page, src, offset);
          hasher.noteWritten(page);
          this.stats.pagesRaw++;
        },
        onPages: (src, offset, count) => {
          const pages = this.runPages;
          for (let i = 0, at = offset; i < count; i++, at += PAGE_RECORD_BYTES) pages[i] = readU32(src, at);
          memory.writePagesFrom(pages, count, src, offset + 4, PAGE_RECORD_BYTES);
          if (count > 0) hasher.noteWritten(pages[count - 1]!);
          this.stats.pagesRaw += count;
        },
        onPageRun: (pages, src, offset) => {
          memory.writePagesFrom(pages, pages.length, src, offset, PAGE_SIZE);
          hasher.noteWritten(pages[pages.length - 1]!);
          this.stats.pagesRaw += pages.length;
        },
        // A PAGE_RUN into frames that follow each other (round 0 into the reservation: nearly always)
        // is read by the kernel straight into them: no copy out of the read buffer. The socket's next
        // read is armed with the view before anything else can happen, and stays armed if the
        // migration ends meanwhile (an abort, the VM discarded): its frames are pinned until the run
        // completed or, failing that, the socket closed, so that no read can land in a frame that was
        // freed and handed to another VM.
        runTarget: (pages) => {
          if (pages.length < MIN_IN_PLACE_PAGES) return null;
          const frame = memory.prepareOverwrite(pages);
          if (frame === -1) return null;
          pinned.pin(frame, pages.length);
          const off = memory.pool.frameByteOffset(frame);
          return memory.pool.slabBytes(frame).subarray(off, off + pages.length * PAGE_SIZE);
        },
        onRunInPlace: (pages, landedBytes) => {
          memory.finishOverwrite(pages);
          pinned.unpin();
          hasher.noteWritten(pages[pages.length - 1]!);
          this.stats.pagesRaw += pages.length;
          this.stats.bytesInPlace += landedBytes;
        },
        onFrame: (type, payload) => {
          switch (type) {
            case FrameType.HELLO:
              session.reply(acceptHello(decodeJson<HelloPayload>(payload, 'HELLO')));
              return;
            case FrameType.ZERO:
              forEachZeroRange(payload, (first, count) => {
                for (let p = first; p < first + count; p++) memory.zeroPage(p);
                this.stats.pagesZero += count;
              });
              return;
            case FrameType.XBZRLE:
              hasher.noteWritten(this.applyXbzrle(payload));
              return;
            case FrameType.ROUND: {
              this.stats.rounds++;
              const round = readU32(payload, 0);
              if (round === 0) return;
              // The round that just ended is applied. Its pages are hashed before the ack (in steps;
              // the source waits for it, and hashes its own round-0 pages meanwhile), so that the
              // round's time counts the hashing and the digest under pause only hashes the pages of
              // the paused round: the pass hashes only in the stream's gaps, and a pre-copy round at
              // full speed has none. Round 0 arrived in page order and the pass followed it; a later
              // round's pages lie anywhere behind it.
              if (round > 1) hasher.restart();
              hasher.whenCaughtUp(() => session.reply(encodeRound(round, FrameType.ROUND_ACK)));
              return;
            }
            case FrameType.DEVICE_STATE:
              deviceState = payload.slice();
              return;
            case FrameType.COMPLETE: {
              if (deviceState === null) throw new ProtocolError('COMPLETE before DEVICE_STATE');
              hasher.stop();
              const sourceDigest = decodeDigest(payload);
              vm.loadDeviceState(deviceState);
              const digestStart = performance.now();
              const targetDigest = memory.digest();
              trace(migrationId, () => `receiver digest in ${(performance.now() - digestStart).toFixed(1)} ms`);
              session.reply(encodeDigestFrame(FrameType.VERIFIED, targetDigest));
              if (targetDigest !== sourceDigest) throw new DigestMismatchError(migrationId, sourceDigest, targetDigest);
              this.stats.bytesReceived = session.bytesReceived;
              session.finish();
              trace(migrationId, () => `receiver verified digest ${targetDigest} after ${this.stats.rounds} rounds`);
              finish({ sourceDigest, targetDigest });
              return;
            }
            default:
              throw new ProtocolError(`unexpected frame 0x${type.toString(16)}`);
          }
        },
      },
      accepted,
      FrameType.COMPLETE,
    );
    setReadTarget(connection, (buffer) => (memory.isReleased ? null : session.readTarget(buffer)));
    if (hello) {
      let ack: Buffer;
      try {
        ack = acceptHello(hello);
      } catch (err) {
        session.fail(err as Error);
        connection.off('data', onRead);
        setReadTarget(connection, null);
        if (vm.state !== 'stopped') vm.stop();
        throw err;
      }
      session.reply(ack);
    }

    try {
      const aborted = new Promise<never>((_, reject) => {
        const s = session.signal;
        if (s.aborted) reject(s.reason);
        else s.addEventListener('abort', () => reject(s.reason), { once: true });
      });
      const { sourceDigest, targetDigest } = await Promise.race([completed, aborted]);
      connection.off('data', onRead);
      setReadTarget(connection, null);
      reservation?.release();
      return this.readyResult(announced!, sourceDigest, targetDigest);
    } catch (err) {
      hasher.stop();
      connection.off('data', onRead);
      setReadTarget(connection, null);
      const error = session.failure(err);
      session.fail(error);
      pinned.unpinOnClose(connection);
      if (vm.state !== 'stopped') vm.stop();
      reservation?.release();
      trace(migrationId, () => `receiver failed, incoming VM discarded: ${error.message}`);
      throw error;
    }
  }

  /** Applies one XBZRLE frame; returns its highest page (-1 if empty). */
  private applyXbzrle(payload: Uint8Array): number {
    const memory = this.opts.vm.memory;
    let highest = -1;
    let off = 0;
    while (off < payload.length) {
      if (off + XBZRLE_RECORD_HEADER_BYTES > payload.length) throw new ProtocolError('truncated XBZRLE record');
      const page = readU32(payload, off);
      const bytes = payload[off + 4]! | (payload[off + 5]! << 8);
      off += XBZRLE_RECORD_HEADER_BYTES;
      if (off + bytes > payload.length) throw new ProtocolError('truncated XBZRLE record');
      memory.readPage(page, this.scratch, 0);
      if (!xbzrleDecode(payload, off, bytes, this.scratch, 0)) throw new ProtocolError(`malformed XBZRLE delta for page ${page}`);
      memory.writePage(page, this.scratch, 0);
      if (page > highest) highest = page;
      off += bytes;
      this.stats.pagesXbzrle++;
    }
    return highest;
  }

  private readyResult(hello: HelloPayload, sourceDigest: string, targetDigest: string): IncomingResult {
    const { vm, migrationId, signal } = this.opts;
    let settled: 'ready' | 'committed' | 'aborted' = 'ready';
    const abort = () => {
      if (settled === 'aborted') return;
      if (settled === 'committed') throw new MigrationStateError(`migration ${migrationId}: cannot abort after commit`);
      settled = 'aborted';
      signal?.removeEventListener('abort', abort);
      if (vm.state !== 'stopped') vm.stop();
    };
    signal?.addEventListener('abort', abort, { once: true });
    return {
      migrationId, hello, sourceDigest, targetDigest, stats: { ...this.stats },
      commit: () => {
        if (settled === 'aborted') throw new MigrationStateError(`migration ${migrationId}: cannot commit after abort`);
        settled = 'committed';
        signal?.removeEventListener('abort', abort);
        vm.resume();
        return { resumedAtMs: performance.timeOrigin + performance.now() };
      },
      abort,
    };
  }
}
