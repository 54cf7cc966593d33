/**
 * The target end of a pre-copy migration. Knows nothing of gRPC: give it a Duplex from the sender and
 * the incoming (paused, empty) VM. It checks the token before anything else, applies pages as they
 * arrive (no buffering beyond one frame), loads the device state, and answers COMPLETE with its own
 * digest. It never resumes the VM itself: the result's commit() does, after the cluster committed.
 * Any failure or cancel before that discards the incoming VM (stop() frees its memory).
 */
import type { Duplex } from 'node:stream';
import { initHashing, type VirtualMachine } from '@vmm/emulator';
import { DEFAULT_IDLE_TIMEOUT_MS, checkTimeoutOption } from './data-plane-limits.js';
import type { ReceiverStats } from './progress.js';
import { ReadyToCommit } from './ready-result.js';
import { IncomingRun, type Verified } from './receiver/incoming-run.js';
import { trace } from './trace.js';
import type { HelloPayload } from './wire/frame.js';

export { HELLO_TIMEOUT_MARGIN_MS } from './receiver/incoming-run.js';
export { tokenMatches } from './token.js';

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
  /**
   * No byte either way on the connection for this long after HELLO_ACK fails the migration with
   * CONNECTION_IDLE, in ms; 0 = no bound. Default DEFAULT_IDLE_TIMEOUT_MS (30 s).
   */
  idleTimeoutMs?: number;
}

export interface IncomingResult {
  migrationId: string;
  hello: HelloPayload;
  sourceDigest: string;
  targetDigest: string;
  stats: ReceiverStats;
  /** After the cluster committed: resumes the target VM; returns the resume time (epoch ms). Idempotent. */
  commit(): { resumedAtMs: number };
  /** Before commit: discards the incoming VM. */
  abort(): void;
}

export class MigrationReceiver {
  private readonly stats: ReceiverStats = { rounds: 0, pagesRaw: 0, bytesInPlace: 0, pagesZero: 0, pagesXbzrle: 0, bytesReceived: 0 };

  private readonly idleTimeoutMs: number;

  constructor(private readonly opts: ReceiverOptions) {
    this.idleTimeoutMs = checkTimeoutOption('idleTimeoutMs', opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS, true);
  }

  /**
   * Receives one migration on `connection`.
   * @param hello a HELLO already read and token-checked (listenForIncoming does that); otherwise the
   *   first frame must be a HELLO with the right token.
   */
  async run(connection: Duplex, hello?: HelloPayload): Promise<IncomingResult> {
    const { vm, migrationId, token, signal } = this.opts;
    await initHashing();
    const options = { vm, migrationId, token, signal, timeoutMs: this.opts.timeoutMs ?? 0, idleTimeoutMs: this.idleTimeoutMs };
    const run = new IncomingRun(options, connection, this.stats, hello);
    try {
      if (hello) run.answerHello(hello);
      const verified = await untilAborted(run.verified, run.session.signal);
      run.detach();
      return this.readyResult(verified);
    } catch (err) {
      const error = run.fail(err);
      if (vm.state !== 'stopped') vm.stop();
      run.releaseReservation();
      trace(migrationId, () => `receiver failed, incoming VM discarded: ${error.message}`);
      throw error;
    }
  }

  private readyResult(verified: Verified): IncomingResult {
    const { vm, migrationId, signal } = this.opts;
    const verdict = new ReadyToCommit(
      migrationId,
      signal,
      () => {
        vm.resume();
        return { resumedAtMs: performance.timeOrigin + performance.now() };
      },
      () => {
        if (vm.state !== 'stopped') vm.stop();
      },
    );
    return { migrationId, ...verified, stats: { ...this.stats }, commit: verdict.commit, abort: verdict.abort };
  }
}

/** `work`, or the abort reason of `signal` if it aborts first. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  const aborted = new Promise<never>((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
  return Promise.race([work, aborted]);
}
