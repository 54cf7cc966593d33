/**
 * A hash multimap from a 32-bit checksum to 32-bit values (rmap item ids, stable node ids), held in two
 * typed arrays: open addressing with linear probing, backward-shift deletion, no per-entry objects.
 * A key may hold several values (different contents with the same checksum, or several KSM pages of
 * one content once max_page_sharing is reached), so lookups walk every slot of the key's probe run.
 *
 * Walk a key: `for (let s = t.first(key); s !== -1; s = t.next(key, s)) t.valueAt(s)`.
 * After removeAt(s), restart the walk: deletion moves later entries back.
 */
const EMPTY = -1;
const MIN_BITS = 10;

export class ItemTable {
  private keys: Int32Array;
  private vals: Int32Array;
  private bits: number;
  private mask: number;
  private count = 0;

  constructor(initialBits = MIN_BITS) {
    this.bits = Math.max(MIN_BITS, initialBits);
    this.mask = (1 << this.bits) - 1;
    this.keys = new Int32Array(1 << this.bits);
    this.vals = new Int32Array(1 << this.bits).fill(EMPTY);
  }

  get size(): number {
    return this.count;
  }

  /** Bytes held by the table's arrays (for memory accounting). */
  get bytes(): number {
    return this.keys.byteLength + this.vals.byteLength;
  }

  /** Empties the table, keeping its capacity: the next full scan refills the unstable tree to about the same size. */
  clear(): void {
    this.count = 0;
    this.vals.fill(EMPTY);
  }

  insert(key: number, value: number): void {
    if ((this.count + 1) * 2 > this.vals.length) this.resize(this.bits + 1);
    let i = this.home(key);
    while (this.vals[i] !== EMPTY) i = (i + 1) & this.mask;
    this.keys[i] = key;
    this.vals[i] = value;
    this.count++;
  }

  /** The first slot holding `key`, or -1. */
  first(key: number): number {
    return this.scan(key, this.home(key));
  }

  /** The slot after `slot` holding `key`, or -1. */
  next(key: number, slot: number): number {
    return this.scan(key, (slot + 1) & this.mask);
  }

  valueAt(slot: number): number {
    return this.vals[slot];
  }

  /** Removes the entry (key, value) if present; true if it was. */
  remove(key: number, value: number): boolean {
    for (let s = this.first(key); s !== -1; s = this.next(key, s)) {
      if (this.vals[s] === value) {
        this.removeAt(s);
        return true;
      }
    }
    return false;
  }

  /** Removes the entry at `slot`, shifting back the entries whose probe run crossed it. */
  removeAt(slot: number): void {
    const { keys, vals, mask } = this;
    let hole = slot;
    let j = slot;
    for (;;) {
      j = (j + 1) & mask;
      if (vals[j] === EMPTY) break;
      const h = this.home(keys[j]);
      // The entry at j may fill the hole only if its home is not cyclically inside (hole, j].
      if (((j - h) & mask) >= ((j - hole) & mask)) {
        keys[hole] = keys[j];
        vals[hole] = vals[j];
        hole = j;
      }
    }
    vals[hole] = EMPTY;
    this.count--;
  }

  private scan(key: number, from: number): number {
    const { keys, vals, mask } = this;
    for (let i = from; vals[i] !== EMPTY; i = (i + 1) & mask) {
      if (keys[i] === key) return i;
    }
    return -1;
  }

  /** Fibonacci hashing: the top `bits` bits of key × 2^32/φ spread similar checksums apart. */
  private home(key: number): number {
    return Math.imul(key, 0x9e3779b1) >>> (32 - this.bits);
  }

  private resize(bits: number): void {
    const oldKeys = this.keys;
    const oldVals = this.vals;
    this.bits = bits;
    this.mask = (1 << bits) - 1;
    this.keys = new Int32Array(1 << bits);
    this.vals = new Int32Array(1 << bits).fill(EMPTY);
    this.count = 0;
    for (let i = 0; i < oldVals.length; i++) {
      if (oldVals[i] !== EMPTY) this.insert(oldKeys[i], oldVals[i]);
    }
  }
}
