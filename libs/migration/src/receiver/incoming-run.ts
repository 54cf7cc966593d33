/**
 * One receive on one data connection: the peer session with the receiver's handlers, the HELLO
 * (checked, memory prepared before HELLO_ACK), the page frames (PageSink), the ROUND acks after the
 * round's hashing, DEVICE_STATE and COMPLETE (load, digest, VERIFIED). It settles `verified`, or the
 * session's signal aborts with the error to report.
 */
import type { Duplex } from 'node:stream';
import type { FrameReservation, VirtualMachine } from '@vmm/emulator';
import { BackgroundHasher } from '../background-hasher.js';
import { DigestMismatchError, ProtocolError } from '../errors.js';
import type { ReceiverStats } from '../progress.js';
import { setReadTarget } from '../read-target.js';
import { PeerSession } from '../session.js';
import { trace } from '../trace.js';
import { decodeDigest, encodeDigestFrame, encodeHelloAck, encodeRound, readU32 } from '../wire/codec.js';
import { decodeHello } from '../wire/hello.js';
import { FrameType, type HelloPayload } from '../wire/frame.js';
import { checkDeviceState } from './device-state-check.js';
import { checkHello } from './hello-check.js';
import { PageSink } from './page-sink.js';

/** Frames a sender may send once its HELLO was accepted (PAGE_RUN only at version 2). */
const SENDER_TYPES = [FrameType.PAGES, FrameType.ZERO, FrameType.XBZRLE, FrameType.ROUND, FrameType.DEVICE_STATE, FrameType.COMPLETE];

export interface IncomingRunOptions {
  vm: VirtualMachine;
  migrationId: string;
  token: string;
  signal: AbortSignal | undefined;
  /** Until the migration completes; 0 = no limit. */
  timeoutMs: number;
  /** No bytes either way for this long after HELLO_ACK ends the migration (CONNECTION_IDLE); 0 = no bound. */
  idleTimeoutMs: number;
}

export interface Verified {
  hello: HelloPayload;
  sourceDigest: string;
  targetDigest: string;
}

export class IncomingRun {
  readonly session: PeerSession;
  private readonly accepted: Set<number>;
  private readonly hasher: BackgroundHasher;
  private readonly sink: PageSink;
  private reservation: FrameReservation | null = null;
  private hello: HelloPayload | null = null;
  private deviceState: Uint8Array | null = null;
  private settleVerified!: (v: Verified) => void;
  readonly verified = new Promise<Verified>((resolve) => (this.settleVerified = resolve));

  /** @param hello a HELLO already read and token-checked by the listener; otherwise the first frame must be one */
  constructor(
    private readonly opts: IncomingRunOptions,
    private readonly connection: Duplex,
    private readonly stats: ReceiverStats,
    hello: HelloPayload | undefined,
  ) {
    const memory = opts.vm.memory;
    this.accepted = new Set<number>(hello ? SENDER_TYPES : [FrameType.HELLO]);
    this.hasher = new BackgroundHasher(memory);
    this.sink = new PageSink(memory, this.hasher, stats);
    // The pass hashes in the stream's gaps only: every read tells it the stream still flows.
    connection.on('data', this.onRead);
    const sink = this.sink;
    this.session = new PeerSession(connection, {
      migrationId: opts.migrationId,
      signal: opts.signal,
      completionTimeoutMs: timeoutAfterHello(hello, opts.timeoutMs),
      handlers: { onPage: sink.onPage, onPages: sink.onPages, onPageRun: sink.onPageRun, runTarget: sink.runTarget, onRunInPlace: sink.onRunInPlace, onFrame: this.onFrame },
      acceptedTypes: this.accepted,
      finalType: FrameType.COMPLETE,
    });
    setReadTarget(connection, (buffer) => (memory.isReleased ? null : this.session.readTarget(buffer)));
  }

  /** Success or failure: the connection no longer reads into guest frames, the reservation goes back. */
  detach(): void {
    this.connection.off('data', this.onRead);
    setReadTarget(this.connection, null);
    this.reservation?.release();
  }

  /** Failure: the hashing stops, the peer is told, the run's pinned frames wait for the socket to close. */
  fail(err: unknown): Error {
    this.hasher.stop();
    this.connection.off('data', this.onRead);
    setReadTarget(this.connection, null);
    const error = this.session.failure(err);
    this.session.fail(error);
    this.sink.pinned.unpinOnClose(this.connection);
    return error;
  }

  /** Releases the memory reservation (once the incoming VM is stopped or holds every page). */
  releaseReservation(): void {
    this.reservation?.release();
  }

  /**
   * Accepts a HELLO (the listener's, or one that arrived here): checks it, prepares the memory, sends
   * HELLO_ACK and starts the idle watch.
   * @throws what checkHello throws (the caller fails the run with it)
   */
  answerHello(hello: HelloPayload): void {
    this.session.reply(this.acceptHello(hello));
    this.session.watchIdle(this.opts.idleTimeoutMs);
  }

  /** Checks the HELLO, prepares the memory, and returns the HELLO_ACK to send. */
  private acceptHello(h: HelloPayload): Buffer {
    const { vm, migrationId, token } = this.opts;
    const memory = vm.memory;
    const version = checkHello(h, { token, migrationId, vm });
    this.hello = h;
    // Prepare the VM's memory before HELLO_ACK (QEMU's -mem-prealloc): first-touch page faults cost
    // more than the copy itself, so they must not happen while the source streams.
    const reserveStart = performance.now();
    const reservation = memory.pool.reserve(Math.min(h.residentPages ?? 0, memory.pageCount));
    this.reservation = reservation;
    trace(migrationId, () => `reserved ${reservation.frames} frames in ${(performance.now() - reserveStart).toFixed(1)} ms`);
    this.accepted.delete(FrameType.HELLO);
    for (const t of SENDER_TYPES) this.accepted.add(t);
    if (version >= 2) this.accepted.add(FrameType.PAGE_RUN);
    return encodeHelloAck(h, version);
  }

  private readonly onRead = (): void => this.hasher.noteRead();

  private readonly onFrame = (type: number, payload: Uint8Array): void => {
    switch (type) {
      case FrameType.HELLO:
        this.answerHello(decodeHello(payload));
        return;
      case FrameType.ZERO:
        this.sink.applyZero(payload);
        return;
      case FrameType.XBZRLE:
        this.sink.applyXbzrle(payload);
        return;
      case FrameType.ROUND:
        this.onRound(readU32(payload, 0));
        return;
      case FrameType.DEVICE_STATE:
        checkDeviceState(payload, this.opts.vm);
        this.deviceState = payload.slice();
        return;
      case FrameType.COMPLETE:
        this.onComplete(decodeDigest(payload));
        return;
      default:
        throw new ProtocolError(`unexpected frame 0x${type.toString(16)}`);
    }
  };

  /**
   * ROUND n: round n-1 is applied. Its pages are hashed before the ack (in steps; the source waits for
   * it, and hashes its own round-0 pages meanwhile), so that the round's time counts the hashing and the
   * digest under pause only hashes the pages of the paused round: the pass hashes only in the stream's
   * gaps, and a pre-copy round at full speed has none. Round 0 arrived in page order and the pass
   * followed it; a later round's pages lie anywhere behind it.
   */
  private onRound(round: number): void {
    this.stats.rounds++;
    if (round === 0) return;
    if (round > 1) this.hasher.restart();
    this.hasher.whenCaughtUp(() => this.session.reply(encodeRound(round, FrameType.ROUND_ACK)));
  }

  /** COMPLETE: load the device state, digest the memory, answer VERIFIED, compare. */
  private onComplete(sourceDigest: string): void {
    const { vm, migrationId } = this.opts;
    if (this.deviceState === null) throw new ProtocolError('COMPLETE before DEVICE_STATE');
    this.hasher.stop();
    vm.loadDeviceState(this.deviceState);
    const digestStart = performance.now();
    const targetDigest = vm.memory.digest();
    trace(migrationId, () => `receiver digest in ${(performance.now() - digestStart).toFixed(1)} ms`);
    this.session.reply(encodeDigestFrame(FrameType.VERIFIED, targetDigest));
    if (targetDigest !== sourceDigest) throw new DigestMismatchError(migrationId, sourceDigest, targetDigest);
    this.stats.bytesReceived = this.session.bytesReceived;
    this.session.finish();
    trace(migrationId, () => `receiver verified digest ${targetDigest} after ${this.stats.rounds} rounds`);
    this.settleVerified({ hello: this.hello!, sourceDigest, targetDigest });
  }
}

/** Added to the source's completion timeout: the source's clock started before the HELLO arrived here. */
export const HELLO_TIMEOUT_MARGIN_MS = 10_000;

/** A HELLO that carries the source's completion timeout replaces the receiver's own (plus a margin). */
function timeoutAfterHello(hello: HelloPayload | undefined, ownTimeoutMs: number): number {
  const t = hello?.completionTimeoutMs;
  return t !== undefined && Number.isInteger(t) && t > 0 ? t + HELLO_TIMEOUT_MARGIN_MS : ownTimeoutMs;
}
