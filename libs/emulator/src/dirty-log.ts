import { bitmapWords, popcount, setAll } from './bitmap.js';
import { InvalidArgumentError } from './errors.js';

/** What a DirtyLog needs from its memory: to stop feeding it when disabled. */
export interface DirtyLogOwner {
  detachDirtyLog(log: DirtyLog): void;
}

/**
 * One dirty-memory client, like a KVM dirty log slot (QEMU keeps one per client: migration, VGA, TCG).
 * Every guest write sets the page's bit in every enabled log; sync() returns the bits and clears them.
 * The memory writes into `bits` directly on its hot path.
 */
export class DirtyLog {
  /** 1 bit per page; written by GuestMemory. */
  readonly bits: Uint32Array;
  private on = true;

  constructor(
    private readonly owner: DirtyLogOwner,
    readonly pageCount: number,
  ) {
    this.bits = new Uint32Array(bitmapWords(pageCount));
  }

  get enabled(): boolean {
    return this.on;
  }

  /**
   * The pages written since the last sync (or since creation), then clears the log. With `into` (at
   * least bitmapWords(pageCount) words) the bitmap is copied there and no memory is allocated.
   */
  sync(into?: Uint32Array): Uint32Array {
    let out: Uint32Array;
    if (into) {
      if (into.length < this.bits.length) {
        throw new InvalidArgumentError('into', `needs ${this.bits.length} words, has ${into.length}`);
      }
      into.set(this.bits);
      out = into;
    } else {
      out = this.bits.slice();
    }
    this.bits.fill(0);
    return out;
  }

  /** Dirty pages counted now, without clearing. */
  dirtyCount(): number {
    return popcount(this.bits);
  }

  /** Marks every page dirty (a migration's round 0 sends everything). */
  markAll(): void {
    setAll(this.bits, this.pageCount);
  }

  /** Stops logging; the log no longer receives writes. Idempotent. */
  disable(): void {
    if (!this.on) return;
    this.on = false;
    this.owner.detachDirtyLog(this);
  }
}
