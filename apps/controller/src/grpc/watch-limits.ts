/**
 * Bounds on the watch streams a controller holds open (issue: a client could open streams without
 * end): at most MAX_WATCHES_PER_CLIENT per client host and MAX_WATCHES in all; one more is
 * RESOURCE_EXHAUSTED (TOO_MANY_STREAMS) at once, before any work. A stream's slot is freed when it ends,
 * fails or is cancelled.
 */
import { Injectable } from '@nestjs/common';
import { finalize, type Observable } from 'rxjs';
import { TooManyStreamsError } from '../errors.js';

export const MAX_WATCHES_PER_CLIENT = 32;
export const MAX_WATCHES = 512;

/** `ipv4:127.0.0.1:5678`, `ipv6:[::1]:5678` → the host: a client reconnecting from another port is the same client. */
export function clientHost(peer: string | undefined): string {
  const p = (peer ?? '').replace(/^ipv[46]:/, '');
  return p.replace(/:\d+$/, '') || 'unknown';
}

@Injectable()
export class WatchLimits {
  private total = 0;
  private readonly perClient = new Map<string, number>();

  /** `open()` as a stream that holds one slot of `peer`'s while it runs. */
  guard<T>(peer: string | undefined, open: () => Observable<T>): Observable<T> {
    const host = clientHost(peer);
    const held = this.perClient.get(host) ?? 0;
    if (held >= MAX_WATCHES_PER_CLIENT) throw new TooManyStreamsError(`${host} holds ${held} (at most ${MAX_WATCHES_PER_CLIENT} per client)`);
    if (this.total >= MAX_WATCHES) throw new TooManyStreamsError(`the controller holds ${this.total} (at most ${MAX_WATCHES})`);
    this.total++;
    this.perClient.set(host, held + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.total--;
      const left = (this.perClient.get(host) ?? 1) - 1;
      if (left > 0) this.perClient.set(host, left);
      else this.perClient.delete(host);
    };
    try {
      return open().pipe(finalize(release));
    } catch (error) {
      release();
      throw error;
    }
  }
}
