/**
 * xoshiro128** (Blackman & Vigna): a small, fast PRNG whose whole state is four 32-bit words in a
 * Uint32Array, so that it can be saved into device state and restored bit-exactly.
 */
export class Xoshiro128 {
  readonly state = new Uint32Array(4);

  constructor(seed = 0) {
    this.seed(seed);
  }

  /** Re-seeds from a 32-bit seed through splitmix32, so that nearby seeds give unrelated streams. */
  seed(seed: number): void {
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      this.state[i] = (z ^ (z >>> 16)) >>> 0;
    }
    // The all-zero state is the generator's only fixed point.
    if ((this.state[0] | this.state[1] | this.state[2] | this.state[3]) === 0) this.state[0] = 1;
  }

  /** The next uint32. */
  next(): number {
    return this.nextInt32() >>> 0;
  }

  /**
   * The next output as a signed int32 (same bits as next()). Hot loops use it: an int32 stays a small
   * integer in V8, where a uint32 above 2^31 returned from a call may be boxed on the heap.
   */
  nextInt32(): number {
    const s = this.state;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9);
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** A float in [0, 1) with 32 bits of randomness. */
  nextFloat(): number {
    return this.next() / 4294967296;
  }

  /** An integer in [0, n) for 1 ≤ n ≤ 2^32 (multiply-shift; the bias is below 2^-32·n, irrelevant here). */
  nextBelow(n: number): number {
    return Math.floor(this.nextFloat() * n);
  }

  /**
   * Fills words[from, to) with the next outputs, exactly as repeated next() calls would, but with the
   * state in locals: several times faster for bulk content (fillRandom, image templates).
   */
  fill(words: Uint32Array, from: number, to: number): void {
    const st = this.state;
    let s0 = st[0] | 0;
    let s1 = st[1] | 0;
    let s2 = st[2] | 0;
    let s3 = st[3] | 0;
    for (let i = from; i < to; i++) {
      const r = Math.imul(s1, 5);
      words[i] = Math.imul((r << 7) | (r >>> 25), 9);
      const t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
    }
    st[0] = s0;
    st[1] = s1;
    st[2] = s2;
    st[3] = s3;
  }

  save(out: Uint32Array, offset = 0): void {
    out.set(this.state, offset);
  }

  restore(src: ArrayLike<number>, offset = 0): void {
    for (let i = 0; i < 4; i++) this.state[i] = src[offset + i] >>> 0;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** A 32-bit avalanche mix (murmur3 finalizer): turns counters and ids into well-spread words. */
export function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** FNV-1a of a string, 32 bits: a VM id to a seed. */
export function hashString32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
