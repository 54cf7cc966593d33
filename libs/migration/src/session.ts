/**
 * One end's hold on the data connection: reads and parses the peer's frames, and turns every way a
 * migration can end early (user cancel, completion timeout, an idle connection, peer ERROR, connection
 * loss, protocol error, an exception in a handler) into one abort of `signal`, whose reason is the
 * error the caller throws. Nothing that arrives on the connection can throw out of its handlers: an
 * exception there ends this connection's migration, never the process.
 */
import type { Duplex } from 'node:stream';
import {
  CompletionTimeoutError,
  ConnectionIdleError,
  ConnectionLostError,
  MigrationCancelledError,
  PeerError,
  ProtocolError,
} from './errors.js';
import { FrameParser, decodeDigest, decodeError, encodeError, type FrameHandlers } from './wire/codec.js';
import { FrameType } from './wire/frame.js';

/** Node fires a timer longer than 2^31−1 ms after 1 ms: every timeout is clamped below it. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
const SENDER_ACCEPTS = [FrameType.HELLO_ACK, FrameType.ROUND_ACK, FrameType.VERIFIED, FrameType.ERROR];
/** How long a failing end waits for its ERROR frame to leave before destroying the socket. */
const ERROR_LINGER_MS = 1000;

export interface PeerSessionOptions {
  migrationId: string;
  /** The caller's cancel. */
  signal: AbortSignal | undefined;
  /** Gives up (COMPLETION_TIMEOUT) this long after the session started; 0 = no limit. */
  completionTimeoutMs: number;
  /** The receiver's own page and frame handlers; the sender leaves them out and uses expect(). */
  handlers?: FrameHandlers;
  /** Frame types allowed from the peer (ERROR is added); read live, so the caller may widen it later. */
  acceptedTypes?: Set<number>;
  /** The peer's last frame: a close after it is the normal end, not a failure. */
  finalType?: number;
}

interface Waiter {
  type: number;
  resolve(payload: Uint8Array): void;
  reject(err: unknown): void;
}

export class PeerSession {
  readonly migrationId: string;
  private readonly controller = new AbortController();
  private readonly parser: FrameParser;
  private readonly userSignal: AbortSignal | undefined;
  private readonly finalType: number;
  private readonly timer: NodeJS.Timeout | null;
  private idleTimer: NodeJS.Timeout | null = null;
  private readonly arrived = new Map<number, Uint8Array>();
  private waiter: Waiter | null = null;
  private done = false;
  /** Set once the peer sent its last frame: a close after it is the normal end, not a failure. */
  private peerFinished = false;
  /** Bytes of replies (HELLO_ACK, ROUND_ACK, VERIFIED) written: activity for the idle watch. */
  private repliedBytes = 0;
  private readonly onUserAbort: () => void;

  constructor(
    private readonly connection: Duplex,
    opts: PeerSessionOptions,
  ) {
    const migrationId = opts.migrationId;
    this.migrationId = migrationId;
    this.userSignal = opts.signal;
    this.finalType = opts.finalType ?? FrameType.VERIFIED;
    const own: FrameHandlers = opts.handlers ?? {
      onPage: () => undefined,
      onFrame: (type, payload) => this.deliver(type, payload),
    };
    const accepted = opts.acceptedTypes ?? new Set(SENDER_ACCEPTS);
    this.parser = new FrameParser(
      {
        onPage: own.onPage,
        onPages: own.onPages,
        onPageRun: own.onPageRun,
        runTarget: own.runTarget,
        onRunInPlace: own.onRunInPlace,
        onFrame: (type, payload) => {
          if (type === FrameType.ERROR) this.onPeerError(payload);
          else {
            if (type === this.finalType) this.peerFinished = true;
            own.onFrame(type, payload);
          }
        },
      },
      accepted.add(FrameType.ERROR),
    );
    this.onUserAbort = () => this.abort(new MigrationCancelledError(migrationId, reasonText(this.userSignal?.reason)), true);
    connection.on('data', this.onData);
    connection.on('error', this.onError);
    connection.on('close', this.onClose);
    connection.on('end', this.onClose);
    connection.resume(); // a listener may have paused it after reading HELLO
    const timeoutMs = Math.min(opts.completionTimeoutMs, MAX_TIMER_MS);
    this.timer = timeoutMs > 0 ? setTimeout(() => this.abort(new CompletionTimeoutError(migrationId, timeoutMs), true), timeoutMs) : null;
    this.timer?.unref();
    if (this.userSignal?.aborted) this.onUserAbort();
    else this.userSignal?.addEventListener('abort', this.onUserAbort, { once: true });
  }

  /** Aborted when the migration must stop; `signal.reason` is the error to report. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Where the next socket read should land (FrameParser.readTarget); null once the session ended. */
  readTarget(buffer: Uint8Array): Uint8Array | null {
    return this.done ? null : this.parser.readTarget(buffer);
  }

  get bytesReceived(): number {
    return this.parser.bytesParsed;
  }

  /**
   * Ends the migration with CONNECTION_IDLE once no byte moved either way for `idleTimeoutMs` (0 = never):
   * bytes received, replies sent, and `bytesSent()` (the sender's writer). Checked a few times per
   * period, never per chunk. Armed by the caller once the handshake is done: before it the target may
   * spend seconds preparing memory, and the completion timeout bounds that.
   */
  watchIdle(idleTimeoutMs: number, bytesSent: () => number = () => 0): void {
    if (idleTimeoutMs <= 0 || this.done || this.idleTimer !== null) return;
    let seen = -1;
    let lastActivityMs = performance.now();
    const check = () => {
      const moved = this.parser.bytesParsed + this.repliedBytes + bytesSent();
      const now = performance.now();
      if (moved !== seen) {
        seen = moved;
        lastActivityMs = now;
      } else if (now - lastActivityMs >= idleTimeoutMs) {
        this.abort(new ConnectionIdleError(this.migrationId, idleTimeoutMs), true);
      }
    };
    check();
    this.idleTimer = setInterval(check, Math.min(MAX_TIMER_MS, Math.max(10, Math.ceil(idleTimeoutMs / 4))));
    this.idleTimer.unref();
  }

  /** Waits for the next frame of `type` from the peer (sender side). */
  expect(type: number): Promise<Uint8Array> {
    this.signal.throwIfAborted();
    const ready = this.arrived.get(type);
    if (ready) {
      this.arrived.delete(type);
      return Promise.resolve(ready);
    }
    return new Promise((resolve, reject) => {
      this.waiter = { type, resolve, reject };
    });
  }

  async expectDigest(type: number): Promise<string> {
    return decodeDigest(await this.expect(type));
  }

  /** Sends a frame outside any flow control (small replies: HELLO_ACK, ROUND_ACK, VERIFIED). */
  reply(frame: Uint8Array): void {
    if (this.done || this.connection.destroyed || !this.connection.writable) return;
    this.repliedBytes += frame.length;
    this.connection.write(frame);
  }

  /** The error to throw for `err`: the abort reason when the session was aborted first. */
  failure(err: unknown): Error {
    if (this.signal.aborted) return this.signal.reason as Error;
    return err instanceof Error ? err : new Error(String(err));
  }

  /** Stops with `error`: tells the peer with an ERROR frame (best effort), then closes. */
  fail(error: Error): void {
    this.abort(error, true);
  }

  /** Success: detaches and half-closes; the peer closes its end. */
  finish(): void {
    if (this.done) return;
    this.cleanup();
    this.connection.end();
  }

  /** Never throws: it runs inside socket and timer handlers. */
  private abort(error: Error, tellPeer: boolean): void {
    if (!this.controller.signal.aborted) this.controller.abort(error);
    if (this.waiter) {
      this.waiter.reject(error);
      this.waiter = null;
    }
    if (this.done) return;
    this.cleanup();
    const c = this.connection;
    try {
      if (tellPeer && !c.destroyed && c.writable) {
        const code = (error as { code?: unknown }).code;
        c.end(encodeError({ code: typeof code === 'string' ? code : 'INTERNAL', message: error.message }));
        setTimeout(() => c.destroy(), ERROR_LINGER_MS).unref();
      } else c.destroy();
    } catch {
      c.destroy();
    }
  }

  private cleanup(): void {
    this.done = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.idleTimer) clearInterval(this.idleTimer);
    this.userSignal?.removeEventListener('abort', this.onUserAbort);
    this.connection.off('data', this.onData);
    this.connection.off('end', this.onClose);
    this.connection.off('close', this.onClose);
    // Keep a no-op error listener: a late socket error must not crash the process.
    this.connection.off('error', this.onError);
    this.connection.on('error', () => undefined);
  }

  /** The peer gave up. An idle connection is CONNECTION_IDLE on both ends, whichever noticed first. */
  private onPeerError(payload: Uint8Array): void {
    const e = decodeError(payload);
    const error = e.code === 'CONNECTION_IDLE' ? new ConnectionIdleError(this.migrationId, null, e.message) : new PeerError(this.migrationId, e.code, e.message);
    this.abort(error, false);
  }

  private deliver(type: number, payload: Uint8Array): void {
    const copy = payload.slice();
    if (this.waiter && this.waiter.type === type) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(copy);
    } else if (this.waiter) {
      this.abort(new ProtocolError(`expected frame 0x${this.waiter.type.toString(16)}, got 0x${type.toString(16)}`), true);
    } else if (this.arrived.has(type)) {
      this.abort(new ProtocolError(`a second frame 0x${type.toString(16)} before the first was read`), true);
    } else this.arrived.set(type, copy);
  }

  /** Every frame handler runs under this catch: whatever they throw fails this migration only. */
  private readonly onData = (chunk: Buffer): void => {
    if (this.done) return;
    try {
      this.parser.push(chunk);
    } catch (err) {
      this.abort(err instanceof Error ? err : new ProtocolError(String(err)), true);
    }
  };

  private readonly onError = (err: Error): void => {
    this.abort(new ConnectionLostError(this.migrationId, err.message), false);
  };

  private readonly onClose = (): void => {
    if (this.peerFinished) return;
    this.abort(new ConnectionLostError(this.migrationId, 'closed by peer'), false);
  };
}

function reasonText(reason: unknown): string {
  if (reason instanceof Error) return reason.message;
  return reason === undefined ? 'aborted' : String(reason);
}
