/**
 * An in-process connection for tests: two Duplex ends, each write() lands in the peer's readable
 * side, with backpressure (a write's callback waits until the peer reads). Optionally slow: each
 * chunk is delivered after `delayMs`, like a slow link or a slow receiver. A link (linkPair) can also
 * be cut one way or both without either end hearing of it, like a dead network path without a reset.
 */
import { Duplex } from 'node:stream';

class PipeEnd extends Duplex {
  peer!: PipeEnd;
  /** Writes are held forever (never delivered, never called back): the link is cut in this direction. */
  cut = false;
  private waiting: (() => void) | null = null;

  constructor(
    highWaterMark: number,
    private readonly delayMs: number,
  ) {
    super({ highWaterMark, allowHalfOpen: true });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const deliver = () => {
      if (this.cut) return;
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
    if (!this.cut) this.peer.push(null);
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.cut && !this.peer.destroyed) this.peer.destroy();
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

/** Two connected ends whose link can be cut (see PipeEnd.cut): `cut('a→b')`, `cut('b→a')` or both. */
export function linkPair(opts: { highWaterMark?: number } = {}): { a: Duplex; b: Duplex; cut(direction?: 'a→b' | 'b→a'): void } {
  const [a, b] = duplexPair(opts) as [PipeEnd, PipeEnd];
  return {
    a,
    b,
    cut: (direction) => {
      if (direction !== 'b→a') a.cut = true;
      if (direction !== 'a→b') b.cut = true;
    },
  };
}
