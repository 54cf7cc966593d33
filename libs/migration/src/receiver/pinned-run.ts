/**
 * The frames of the PAGE_RUN the receiver reads in place, held by one more reference each: a socket
 * read armed with them may still land after the migration ended, so they must not be freed and given
 * to another VM before the run completed or the socket closed.
 */
import type { Duplex } from 'node:stream';
import type { FramePool } from '@vmm/emulator';

export class PinnedRun {
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
