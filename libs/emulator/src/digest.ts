import xxhash, { type XXHashAPI } from 'xxhash-wasm';
import { HashingNotInitializedError, InvalidArgumentError } from './errors.js';
import { PAGE_SIZE, type FramePool } from './frame-pool.js';

/**
 * Page hashes and the memory digest. Per page: xxh64 (seed 0) of its 4 KiB. The digest is xxh64 over
 * the sequence of page hashes in page order (8 bytes each, little-endian lo word then hi word), so it
 * identifies the whole memory and both ends of a migration can compare one 16-hex-char string.
 * A zero (unbacked) page uses the precomputed hash of a zero page and is never hashed; a backed page
 * reuses its frame's cached hash unless the frame was written since.
 */

let api: XXHashAPI | null = null;
let initializing: Promise<void> | null = null;
let zeroLo = 0;
let zeroHi = 0;

const CHUNK_PAGES = 8192; // page hashes fed to the combining hasher at a time (64 KiB)
const chunkWords = new Uint32Array(CHUNK_PAGES * 2);
const chunkBytes = new Uint8Array(chunkWords.buffer);
const tmpHash = new Uint32Array(2);
// Splits a 64-bit hash into lo/hi words without BigInt arithmetic (little-endian host, as x86 and arm64).
const hashSplit = new BigUint64Array(1);
const hashWords = new Uint32Array(hashSplit.buffer);
const zeroChunk = new Uint32Array(CHUNK_PAGES * 2); // the zero page's hash, repeated
let framesHashed = 0;

/**
 * Frames hashed (not served from the cache) by digestPages and cacheFrameHash since the process
 * started: lets a caller split a digest's time into hashing and walking the page map.
 */
export function framesHashedTotal(): number {
  return framesHashed;
}

/** Loads the xxhash wasm module once; await it before digest() or pageHash(). Safe to call repeatedly. */
export function initHashing(): Promise<void> {
  initializing ??= xxhash().then((loaded) => {
    api = loaded;
    const h = loaded.h64Raw(new Uint8Array(PAGE_SIZE));
    zeroLo = Number(h & 0xffffffffn);
    zeroHi = Number(h >> 32n);
    for (let i = 0; i < CHUNK_PAGES; i++) {
      zeroChunk[2 * i] = zeroLo;
      zeroChunk[2 * i + 1] = zeroHi;
    }
  });
  return initializing;
}

function hashing(): XXHashAPI {
  if (api === null) throw new HashingNotInitializedError();
  return api;
}

/** xxh64 (seed 0) of one page's bytes. */
export function pageHash(bytes: Uint8Array): bigint {
  return hashing().h64Raw(bytes);
}

/** xxh64 of an all-zero page. */
export function zeroPageHash(): bigint {
  hashing();
  return (BigInt(zeroHi) << 32n) | BigInt(zeroLo);
}

/** 16 lowercase hex chars of a 64-bit hash. */
export function hashToHex(h: bigint): string {
  return h.toString(16).padStart(16, '0');
}

/** The digest of memory given by its page → frame map (-1 = zero page) over `pool`. */
export function digestPages(pool: FramePool, map: Int32Array): string {
  const xx = hashing();
  const combined = xx.create64(0n);
  for (let base = 0; base < map.length; base += CHUNK_PAGES) {
    const end = Math.min(map.length, base + CHUNK_PAGES);
    chunkWords.set(zeroChunk); // every page zero until proven otherwise: a zero page costs one map read
    for (let page = base; page < end; page++) {
      const frame = map[page];
      if (frame !== -1) frameHashInto(xx, pool, frame, 2 * (page - base));
    }
    combined.update(end - base === CHUNK_PAGES ? chunkBytes : chunkBytes.subarray(0, 8 * (end - base)));
  }
  return hashToHex(combined.digest());
}

/**
 * Computes and caches the frame's hash unless its cached one is valid, so that a later digest reuses it.
 * Meant for a page that was just copied (its bytes are in the CPU cache): the migration sender and
 * receiver call it per page as they stream, instead of hashing everything at the next digest.
 */
export function cacheFrameHash(pool: FramePool, frame: number): void {
  if (pool.hashValid(frame)) return;
  const xx = hashing();
  const off = pool.frameByteOffset(frame);
  hashSplit[0] = xx.h64Raw(pool.slabBytes(frame).subarray(off, off + PAGE_SIZE));
  framesHashed++;
  pool.storeHash(frame, hashWords[0], hashWords[1]);
}

/** Puts the frame's hash (cached, or computed and cached) at chunkWords[at], chunkWords[at + 1]. */
function frameHashInto(xx: XXHashAPI, pool: FramePool, frame: number, at: number): void {
  if (pool.cachedHash(frame, tmpHash)) {
    chunkWords[at] = tmpHash[0];
    chunkWords[at + 1] = tmpHash[1];
    return;
  }
  const off = pool.frameByteOffset(frame);
  hashSplit[0] = xx.h64Raw(pool.slabBytes(frame).subarray(off, off + PAGE_SIZE));
  framesHashed++;
  const lo = hashWords[0];
  const hi = hashWords[1];
  pool.storeHash(frame, lo, hi);
  chunkWords[at] = lo;
  chunkWords[at + 1] = hi;
}

/**
 * The digest of a memory given as its bytes in page order, fed in chunks of any length (a guest RAM
 * dump read from a file, as the QEMU driver's pmemsave makes): the same 16 hex chars as digestPages
 * over a page map holding those bytes, so that an emulator digest and a QEMU digest of the same memory
 * agree. A page that spans two chunks is carried over. Needs initHashing() first.
 */
export class FlatMemoryDigest {
  private readonly xx = hashing();
  private readonly combined = this.xx.create64(0n);
  private readonly carry = new Uint8Array(PAGE_SIZE);
  private carried = 0;
  private readonly hashes = new Uint32Array(CHUNK_PAGES * 2);
  private readonly hashBytes = new Uint8Array(this.hashes.buffer);
  private queued = 0; // page hashes in `hashes` not yet fed to `combined`
  /** Pages digested so far. */
  pages = 0;

  update(bytes: Uint8Array): void {
    let at = 0;
    if (this.carried > 0) {
      const take = Math.min(PAGE_SIZE - this.carried, bytes.length);
      this.carry.set(bytes.subarray(0, take), this.carried);
      this.carried += take;
      at = take;
      if (this.carried < PAGE_SIZE) return;
      this.addPage(this.carry);
      this.carried = 0;
    }
    for (; at + PAGE_SIZE <= bytes.length; at += PAGE_SIZE) this.addPage(bytes.subarray(at, at + PAGE_SIZE));
    if (at < bytes.length) {
      this.carry.set(bytes.subarray(at));
      this.carried = bytes.length - at;
    }
  }

  /** The digest of every page fed. @throws InvalidArgumentError when the bytes fed are not whole pages. */
  digest(): string {
    if (this.carried !== 0) throw new InvalidArgumentError('bytes', `${this.carried} bytes past the last whole page`);
    this.flush();
    return hashToHex(this.combined.digest());
  }

  private addPage(page: Uint8Array): void {
    hashSplit[0] = this.xx.h64Raw(page);
    this.hashes[2 * this.queued] = hashWords[0];
    this.hashes[2 * this.queued + 1] = hashWords[1];
    this.pages++;
    if (++this.queued === CHUNK_PAGES) this.flush();
  }

  private flush(): void {
    if (this.queued === 0) return;
    this.combined.update(this.hashBytes.subarray(0, 8 * this.queued));
    this.queued = 0;
  }
}
