/**
 * One end's hold on the data connection: reads and parses the peer's frames, and turns every way a
 * migration can end early (user cancel, completion timeout, peer ERROR, connection loss, protocol
 * error) into one abort of `signal`, whose reason is the error the caller throws.
 */
import type { Duplex } from 'node:stream';
import {
  CompletionTimeoutError,
  ConnectionLostError,
  MigrationCancelledError,
  PeerError,
  ProtocolError,
} from './errors.js';
import { FrameParser, decodeDigest, decodeJson, encodeError, type FrameHandlers } from './wire/codec.js';
import { FrameType, type ErrorPayload } from './wire/frame.js';

const SENDER_ACCEPTS = new Set<number>([FrameType.HELLO_ACK, FrameType.ROUND_ACK, FrameType.VERIFIED, FrameType.ERROR]);
/** How long a failing end waits for its ERROR frame to leave before destroying the socket. */
const ERROR_LINGER_MS = 1000;

interface Waiter {
  type: number;
  resolve(payload: Uint8Array): void;
  reject(err: unknown): void;
}

export class PeerSession {
  private readonly controller = new AbortController();
  private readonly parser: FrameParser;
  private readonly timer: NodeJS.Timeout | null;
  private readonly arrived = new Map<number, Uint8Array>();
  private waiter: Waiter | null = null;
  private done = false;
  /** Set once the peer sent its last frame: a close after it is the normal end, not a failure. */
  private peerFinished = false;
  private readonly onUserAbort: () => void;

  /**
   * @param handlers the receiver's own page/frame handlers; the sender leaves it out and uses expect().
   * @param acceptedTypes frame types allowed from the peer (ERROR is added); read live, so it may change.
   */
  constructor(
    private readonly connection: Duplex,
    readonly migrationId: string,
    private readonly userSignal: AbortSignal | undefined,
    timeoutMs: number,
    handlers?: FrameHandlers,
    acceptedTypes: Set<number> = new Set(SENDER_ACCEPTS),
    private readonly finalType: number = FrameType.VERIFIED,
  ) {
    const own: FrameHandlers = handlers ?? {
      onPage: () => undefined,
      onFrame: (type, payload) => this.deliver(type, payload),
    };
    this.parser = new FrameParser(
      {
        onPage: own.onPage,
        onPages: own.onPages,
        onPageRun: own.onPageRun,
        runTarget: own.runTarget,
        onRunInPlace: own.onRunInPlace,
        onFrame: (type, payload) => {
          if (type === FrameType.ERROR) {
            const e = decodeJson<ErrorPayload>(payload, 'ERROR');
            this.abort(new PeerError(migrationId, String(e.code), String(e.message)), false);
          } else {
            if (type === this.finalType) this.peerFinished = true;
            own.onFrame(type, payload);
          }
        },
      },
      acceptedTypes.add(FrameType.ERROR), // the caller may widen this set later (receiver, after HELLO)
    );
    this.onUserAbort = () => this.abort(new MigrationCancelledError(migrationId, reasonText(this.userSignal?.reason)), true);
    connection.on('data', this.onData);
    connection.on('error', this.onError);
    connection.on('close', this.onClose);
    connection.on('end', this.onClose);
    connection.resume(); // a listener may have paused it after reading HELLO
    this.timer = timeoutMs > 0 ? setTimeout(() => this.abort(new CompletionTimeoutError(migrationId, timeoutMs), true), timeoutMs) : null;
    this.timer?.unref();
    if (userSignal?.aborted) this.onUserAbort();
    else userSignal?.addEventListener('abort', this.onUserAbort, { once: true });
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

  /** Sends a frame outside any flow control (small replies: HELLO_ACK, VERIFIED). */
  reply(frame: Uint8Array): void {
    if (!this.done && !this.connection.destroyed) this.connection.write(frame);
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

  private abort(error: Error, tellPeer: boolean): void {
    if (!this.controller.signal.aborted) this.controller.abort(error);
    if (this.waiter) {
      this.waiter.reject(error);
      this.waiter = null;
    }
    if (this.done) return;
    this.cleanup();
    const c = this.connection;
    if (tellPeer && !c.destroyed && c.writable) {
      const code = (error as { code?: unknown }).code;
      c.end(encodeError({ code: typeof code === 'string' ? code : 'INTERNAL', message: error.message }));
      setTimeout(() => c.destroy(), ERROR_LINGER_MS).unref();
    } else c.destroy();
  }

  private cleanup(): void {
    this.done = true;
    if (this.timer) clearTimeout(this.timer);
    this.userSignal?.removeEventListener('abort', this.onUserAbort);
    this.connection.off('data', this.onData);
    this.connection.off('end', this.onClose);
    this.connection.off('close', this.onClose);
    // Keep a no-op error listener: a late socket error must not crash the process.
    this.connection.off('error', this.onError);
    this.connection.on('error', () => undefined);
  }

  private deliver(type: number, payload: Uint8Array): void {
    const copy = payload.slice();
    if (this.waiter && this.waiter.type === type) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(copy);
    } else if (this.waiter) {
      this.abort(new ProtocolError(`expected frame 0x${this.waiter.type.toString(16)}, got 0x${type.toString(16)}`), true);
    } else this.arrived.set(type, copy);
  }

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
