/**
 * An in-process connection for tests: two Duplex ends, each write() lands in the peer's readable
 * side, with backpressure (a write's callback waits until the peer reads). Optionally slow: each
 * chunk is delivered after `delayMs`, like a slow link or a slow receiver.
 */
import { Duplex } from 'node:stream';

class PipeEnd extends Duplex {
  peer!: PipeEnd;
  private waiting: (() => void) | null = null;

  constructor(
    highWaterMark: number,
    private readonly delayMs: number,
  ) {
    super({ highWaterMark, allowHalfOpen: true });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const deliver = () => {
      if (this.peer.destroyed) return cb(new Error('peer destroyed'));
      if (this.peer.push(chunk)) cb();
      else this.peer.waiting = cb;
    };
    if (this.delayMs > 0) setTimeout(deliver, this.delayMs);
    else deliver();
  }

  override _read(): void {
    const cb = this.waiting;
    this.waiting = null;
    cb?.();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.peer.push(null);
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.peer.destroyed) this.peer.destroy();
    cb(err);
  }
}

export function duplexPair(opts: { highWaterMark?: number; delayMs?: number } = {}): [Duplex, Duplex] {
  const hwm = opts.highWaterMark ?? 64 * 1024;
  const a = new PipeEnd(hwm, opts.delayMs ?? 0);
  const b = new PipeEnd(hwm, opts.delayMs ?? 0);
  a.peer = b;
  b.peer = a;
  return [a, b];
}
