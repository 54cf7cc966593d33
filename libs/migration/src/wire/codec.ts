/**
 * Encoding of control frames and an incremental parser for every frame type.
 * The parser never holds more than one frame's payload (bounded by MAX_PAYLOAD_BYTES), and hands
 * PAGES records and PAGE_RUN pages to the caller as (chunk, offset) without copying whenever a page
 * lies in one chunk.
 */
import { ProtocolError } from '../errors.js';
import { boundedText } from '../bounded-text.js';
import {
  FRAME_HEADER_BYTES,
  FrameType,
  MAX_PAYLOAD_BYTES,
  MIN_PROTOCOL_VERSION,
  PAGE_RECORD_BYTES,
  PAGE_SIZE,
  PROTOCOL_VERSION,
  frameTypeName,
  type ErrorPayload,
  type HelloPayload,
} from './frame.js';

export function writeFrameHeader(buf: Uint8Array, offset: number, type: number, payloadBytes: number): void {
  buf[offset] = payloadBytes & 0xff;
  buf[offset + 1] = (payloadBytes >>> 8) & 0xff;
  buf[offset + 2] = (payloadBytes >>> 16) & 0xff;
  buf[offset + 3] = (payloadBytes >>> 24) & 0xff;
  buf[offset + 4] = type;
}

export function readU32(buf: Uint8Array, offset: number): number {
  return (buf[offset]! | (buf[offset + 1]! << 8) | (buf[offset + 2]! << 16) | (buf[offset + 3]! << 24)) >>> 0;
}

export function writeU32(buf: Uint8Array, offset: number, value: number): void {
  buf[offset] = value & 0xff;
  buf[offset + 1] = (value >>> 8) & 0xff;
  buf[offset + 2] = (value >>> 16) & 0xff;
  buf[offset + 3] = (value >>> 24) & 0xff;
}

/** A whole frame in a fresh buffer: for rare, small frames only (never pages). */
export function encodeFrame(type: number, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const max = MAX_PAYLOAD_BYTES[type];
  if (max === undefined || payload.length > max) {
    throw new ProtocolError(`${frameTypeName(type)} payload of ${payload.length} bytes exceeds ${max ?? 0}`);
  }
  const buf = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  writeFrameHeader(buf, 0, type, payload.length);
  buf.set(payload, FRAME_HEADER_BYTES);
  return buf;
}

export const encodeJsonFrame = (type: number, value: unknown): Buffer =>
  encodeFrame(type, Buffer.from(JSON.stringify(value), 'utf8'));
export const encodeHello = (hello: HelloPayload): Buffer => encodeJsonFrame(FrameType.HELLO, hello);

/**
 * The protocol version both ends speak, given the sender's HELLO (it offers version..maxVersion) and
 * this end's MIN_PROTOCOL_VERSION..PROTOCOL_VERSION; null when the ranges do not meet.
 */
export function agreedVersion(hello: Pick<HelloPayload, 'version' | 'maxVersion'>): number | null {
  const low = hello.version;
  const high = hello.maxVersion ?? low;
  if (!Number.isInteger(low) || !Number.isInteger(high) || high < low) return null;
  const agreed = Math.min(high, PROTOCOL_VERSION);
  return agreed >= Math.max(low, MIN_PROTOCOL_VERSION) ? agreed : null;
}

/** HELLO_ACK: the agreed version for a sender that offered a range, empty for one that did not (version 1). */
export function encodeHelloAck(hello: Pick<HelloPayload, 'maxVersion'>, agreed: number): Buffer {
  if (hello.maxVersion === undefined) return encodeFrame(FrameType.HELLO_ACK);
  const payload = Buffer.allocUnsafe(4);
  writeU32(payload, 0, agreed);
  return encodeFrame(FrameType.HELLO_ACK, payload);
}

/** The version a HELLO_ACK agreed on: an empty one (a receiver that predates maxVersion) means 1. */
export function decodeHelloAck(payload: Uint8Array): number {
  const version = payload.length === 0 ? 1 : payload.length === 4 ? readU32(payload, 0) : -1;
  if (version < MIN_PROTOCOL_VERSION || version > PROTOCOL_VERSION) throw new ProtocolError(`HELLO_ACK agreed on protocol version ${version}`);
  return version;
}
/** An ERROR's code: a stable UPPER_SNAKE code of errors.ts (anything else is sent as INTERNAL). */
const ERROR_CODE = /^[A-Z][A-Z0-9_]{0,63}$/;
/** An ERROR's message is cut to this many characters: the frame must encode whatever the error says. */
export const MAX_ERROR_MESSAGE_CHARS = 1024;

/** ERROR frame; never throws (an error about huge input still gets a frame within ERROR_PAYLOAD_BYTES). */
export function encodeError(error: ErrorPayload): Buffer {
  const code = typeof error.code === 'string' && ERROR_CODE.test(error.code) ? error.code : 'INTERNAL';
  const message = boundedText(String(error.message), MAX_ERROR_MESSAGE_CHARS);
  return encodeJsonFrame(FrameType.ERROR, { code, message });
}

/** A peer's ERROR payload, its code and message bounded; malformed JSON reads as a PROTOCOL_ERROR. */
export function decodeError(payload: Uint8Array): ErrorPayload {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.length).toString('utf8'));
  } catch {
    return { code: 'PROTOCOL_ERROR', message: 'the peer sent an ERROR frame that is not JSON' };
  }
  const e = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<string, unknown>;
  return {
    code: typeof e.code === 'string' && ERROR_CODE.test(e.code) ? e.code : 'UNKNOWN',
    message: boundedText(String(e.message ?? ''), MAX_ERROR_MESSAGE_CHARS),
  };
}
export const encodeDigestFrame = (type: number, digest: string): Buffer =>
  encodeFrame(type, Buffer.from(digest.padEnd(16, ' ').slice(0, 16), 'ascii'));

export function encodeRound(round: number, type: number = FrameType.ROUND): Buffer {
  const payload = Buffer.allocUnsafe(4);
  writeU32(payload, 0, round);
  return encodeFrame(type, payload);
}

export function decodeJson<T>(payload: Uint8Array, what: string): T {
  try {
    return JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.length).toString('utf8')) as T;
  } catch {
    throw new ProtocolError(`${what}: payload is not valid JSON`);
  }
}

export const decodeDigest = (payload: Uint8Array): string =>
  Buffer.from(payload.buffer, payload.byteOffset, payload.length).toString('ascii').trim();

export interface FrameHandlers {
  /** One PAGES record: page index and its 4096 bytes at src[srcOffset…]. The view is valid during the call only. */
  onPage(page: number, src: Uint8Array, srcOffset: number): void;
  /**
   * Optional bulk form: `count` whole PAGES records (u32 index + 4096 bytes each) at src[srcOffset…],
   * all in one chunk and one frame. When present it is used instead of onPage for such runs.
   */
  onPages?(src: Uint8Array, srcOffset: number, count: number): void;
  /**
   * Optional bulk form for PAGE_RUN: page `pages[i]` is the 4096 bytes at src[srcOffset + i * 4096],
   * for every i < pages.length, all in one chunk. Without it, each page goes to onPage.
   */
  onPageRun?(pages: Uint32Array, src: Uint8Array, srcOffset: number): void;
  /**
   * Optional, PAGE_RUN in place: called once its indices arrived; returns where the frame's data
   * (pages.length × 4096 bytes, back to back) should land, e.g. the pages' own frames, or null for the
   * usual path. With a view, readTarget() points the socket's reads into it, any data that arrives
   * elsewhere is copied into it, and onRunInPlace(pages) is called once it holds every byte.
   */
  runTarget?(pages: Uint32Array): Uint8Array | null;
  /** `landedBytes`: how many of the view's bytes the socket read straight into it (the rest was copied). */
  onRunInPlace?(pages: Uint32Array, landedBytes: number): void;
  /** Any other frame; `payload` is valid during the call only. */
  onFrame(type: number, payload: Uint8Array): void;
}

/** The smallest payload buffer the parser allocates (control frames reuse it). */
const MIN_BODY_BYTES = 256;

/** Incremental frame parser. Feed it chunks in order; it calls the handlers synchronously. */
export class FrameParser {
  private readonly header = new Uint8Array(FRAME_HEADER_BYTES);
  private headerFill = 0;
  private type = -1;
  private remaining = 0;
  private payloadBytes = 0;
  /** Payload of the frame being gathered; grows to the largest frame seen (allocated on demand, so small before HELLO). */
  private body = new Uint8Array(0);
  private bodyFill = 0;
  private readonly record = new Uint8Array(PAGE_RECORD_BYTES);
  private recordFill = 0;
  /** PAGE_RUN: its page indices (gathered first), how many, and how many pages were handed on. */
  private readonly runIndexBytes = new Uint8Array((MAX_PAYLOAD_BYTES[FrameType.PAGE_RUN]! / PAGE_RECORD_BYTES) * 4);
  private readonly runPages = new Uint32Array(this.runIndexBytes.length / 4);
  private runCount = 0;
  private runIndexFill = 0;
  private runDone = 0;
  /** PAGE_RUN in place: the view runTarget gave, and how many of its bytes arrived. */
  private runView: Uint8Array | null = null;
  private runViewFill = 0;
  private runViewLanded = 0;
  /** The last frame was a PAGE_RUN read in place: another likely follows, read its header on its own. */
  private lastWasInPlace = false;
  /** Bytes consumed so far, for stats. */
  bytesParsed = 0;

  constructor(
    private readonly handlers: FrameHandlers,
    private readonly acceptedTypes: ReadonlySet<number>,
  ) {}

  /** True when no frame is partially received. */
  get idle(): boolean {
    return this.type < 0 && this.headerFill === 0;
  }

  push(chunk: Uint8Array): void {
    const len = chunk.length;
    let off = 0;
    this.bytesParsed += len;
    while (off < len) {
      if (this.type < 0) {
        const take = Math.min(FRAME_HEADER_BYTES - this.headerFill, len - off);
        this.header.set(chunk.subarray(off, off + take), this.headerFill);
        this.headerFill += take;
        off += take;
        if (this.headerFill === FRAME_HEADER_BYTES) this.startFrame();
        continue;
      }
      if (this.type === FrameType.PAGES) off = this.pushPages(chunk, off);
      else if (this.type === FrameType.PAGE_RUN) off = this.pushRun(chunk, off);
      else off = this.pushBody(chunk, off);
    }
  }

  private startFrame(): void {
    this.headerFill = 0;
    const bytes = readU32(this.header, 0);
    const type = this.header[4]!;
    const max = MAX_PAYLOAD_BYTES[type];
    if (max === undefined || !this.acceptedTypes.has(type)) {
      throw new ProtocolError(`unexpected frame type ${frameTypeName(type)}`);
    }
    if (bytes > max) throw new ProtocolError(`${frameTypeName(type)} frame of ${bytes} bytes exceeds ${max}`);
    const paged = type === FrameType.PAGES || type === FrameType.PAGE_RUN;
    if (paged && bytes % PAGE_RECORD_BYTES !== 0) {
      throw new ProtocolError(`${frameTypeName(type)} frame of ${bytes} bytes is not a whole number of pages`);
    }
    this.type = type;
    this.remaining = bytes;
    this.payloadBytes = bytes;
    this.bodyFill = 0;
    this.recordFill = 0;
    this.runCount = bytes / PAGE_RECORD_BYTES;
    this.runIndexFill = 0;
    this.runDone = 0;
    this.runView = null;
    this.runViewFill = 0;
    this.runViewLanded = 0;
    this.lastWasInPlace = false;
    if (!paged && this.body.length < bytes) this.body = new Uint8Array(Math.max(bytes, MIN_BODY_BYTES));
    if (bytes === 0) this.endFrame();
  }

  private endFrame(): void {
    const type = this.type;
    this.type = -1;
    if (type !== FrameType.PAGES && type !== FrameType.PAGE_RUN) this.handlers.onFrame(type, this.body.subarray(0, this.payloadBytes));
  }

  private pushPages(chunk: Uint8Array, start: number): number {
    let off = start;
    const len = chunk.length;
    if (this.recordFill > 0) {
      const take = this.gather(this.record, this.recordFill, PAGE_RECORD_BYTES, chunk, off);
      this.recordFill += take;
      off += take;
      if (this.recordFill < PAGE_RECORD_BYTES) return off;
      this.recordFill = 0;
      this.handlers.onPage(readU32(this.record, 0), this.record, 4);
    }
    const whole = Math.floor(Math.min(this.remaining, len - off) / PAGE_RECORD_BYTES);
    if (whole > 0 && this.handlers.onPages) {
      this.handlers.onPages(chunk, off, whole);
      off += whole * PAGE_RECORD_BYTES;
      this.remaining -= whole * PAGE_RECORD_BYTES;
    }
    while (this.remaining > 0 && len - off >= PAGE_RECORD_BYTES) {
      this.handlers.onPage(readU32(chunk, off), chunk, off + 4);
      off += PAGE_RECORD_BYTES;
      this.remaining -= PAGE_RECORD_BYTES;
    }
    if (this.remaining > 0 && off < len) {
      this.recordFill = this.gather(this.record, 0, PAGE_RECORD_BYTES, chunk, off); // less than one record
      off = len;
    }
    if (this.remaining === 0 && this.recordFill === 0) this.type = -1;
    return off;
  }

  /**
   * Copies into `into[have…]` what `chunk[off…]` holds of the `need - have` bytes still missing (a
   * record, page or index list split across reads); returns how many bytes it took.
   */
  private gather(into: Uint8Array, have: number, need: number, chunk: Uint8Array, off: number): number {
    const take = Math.min(need - have, chunk.length - off);
    into.set(chunk.subarray(off, off + take), have);
    this.remaining -= take;
    return take;
  }

  /** PAGE_RUN: gathers the indices, then hands on the pages as they arrive (split pages gathered). */
  private pushRun(chunk: Uint8Array, start: number): number {
    let off = start;
    const len = chunk.length;
    const count = this.runCount;
    const indexBytes = count * 4;
    if (this.runIndexFill < indexBytes) {
      const take = this.gather(this.runIndexBytes, this.runIndexFill, indexBytes, chunk, off);
      this.runIndexFill += take;
      off += take;
      if (this.runIndexFill < indexBytes) return off;
      for (let i = 0; i < count; i++) this.runPages[i] = readU32(this.runIndexBytes, i * 4);
      const view = this.handlers.runTarget?.(this.runPages.subarray(0, count)) ?? null;
      if (view !== null && view.length !== count * PAGE_SIZE) throw new RangeError(`runTarget gave ${view.length} bytes for ${count} pages`);
      this.runView = view;
    }
    if (this.runView !== null) return this.pushRunInPlace(chunk, off);
    if (this.recordFill > 0) {
      const take = this.gather(this.record, this.recordFill, PAGE_SIZE, chunk, off);
      this.recordFill += take;
      off += take;
      if (this.recordFill < PAGE_SIZE) return off;
      this.recordFill = 0;
      this.handlers.onPage(this.runPages[this.runDone++]!, this.record, 0);
    }
    const whole = Math.min(count - this.runDone, Math.floor((len - off) / PAGE_SIZE));
    if (whole > 0) {
      if (this.handlers.onPageRun) this.handlers.onPageRun(this.runPages.subarray(this.runDone, this.runDone + whole), chunk, off);
      else for (let i = 0; i < whole; i++) this.handlers.onPage(this.runPages[this.runDone + i]!, chunk, off + i * PAGE_SIZE);
      this.runDone += whole;
      off += whole * PAGE_SIZE;
      this.remaining -= whole * PAGE_SIZE;
    }
    if (this.runDone < count && off < len) {
      this.recordFill = this.gather(this.record, 0, PAGE_SIZE, chunk, off); // less than one page
      off = len;
    }
    if (this.remaining === 0 && this.recordFill === 0) this.type = -1;
    return off;
  }

  /** PAGE_RUN data with a target view: a read that landed in it is only counted, anything else is copied in. */
  private pushRunInPlace(chunk: Uint8Array, off: number): number {
    const view = this.runView!;
    const take = Math.min(view.length - this.runViewFill, chunk.length - off);
    const landed = chunk.buffer === view.buffer && chunk.byteOffset + off === view.byteOffset + this.runViewFill;
    if (landed) this.runViewLanded += take;
    else view.set(chunk.subarray(off, off + take), this.runViewFill);
    this.runViewFill += take;
    this.remaining -= take;
    if (this.runViewFill === view.length) {
      this.runView = null;
      this.type = -1;
      this.lastWasInPlace = true;
      this.handlers.onRunInPlace?.(this.runPages.subarray(0, this.runCount), this.runViewLanded);
    }
    return off + take;
  }

  /**
   * Where the next socket read should land, given the read buffer the transport would use: inside a
   * PAGE_RUN's data with a target view, that view (the kernel copies straight into guest frames);
   * before a PAGE_RUN's indices, or at the next frame header after a PAGE_RUN read in place, just the
   * bytes still missing of them, so that the data behind is not read into the buffer; otherwise null
   * (the buffer).
   */
  readTarget(buffer: Uint8Array): Uint8Array | null {
    if (this.type === FrameType.PAGE_RUN) {
      if (this.runView !== null) return this.runView.subarray(this.runViewFill);
      const missing = this.runCount * 4 - this.runIndexFill;
      return missing > 0 ? buffer.subarray(0, missing) : null;
    }
    if (this.type < 0 && this.lastWasInPlace) return buffer.subarray(0, FRAME_HEADER_BYTES - this.headerFill);
    return null;
  }

  private pushBody(chunk: Uint8Array, start: number): number {
    const take = Math.min(this.remaining, chunk.length - start);
    this.body.set(chunk.subarray(start, start + take), this.bodyFill);
    this.bodyFill += take;
    this.remaining -= take;
    if (this.remaining === 0) this.endFrame();
    return start + take;
  }
}
