import { afterEach, describe, expect, it } from 'vitest';
import { FramePool, GuestMemory } from '@vmm/emulator';
import { BackgroundHasher } from '../background-hasher.js';
import { ProtocolError } from '../errors.js';
import type { ReceiverStats } from '../progress.js';
import { writeU32 } from '../wire/codec.js';
import { PAGE_RECORD_BYTES, PAGE_SIZE } from '../wire/frame.js';
import { PageSink } from './page-sink.js';

const PAGES = 256; // a 1 MiB VM
const memories: GuestMemory[] = [];
const hashers: BackgroundHasher[] = [];
afterEach(() => {
  for (const h of hashers.splice(0)) h.stop();
  for (const m of memories.splice(0)) m.release();
});

function sink() {
  const memory = new GuestMemory(new FramePool(), PAGES);
  memories.push(memory);
  const hasher = new BackgroundHasher(memory);
  hashers.push(hasher);
  const stats: ReceiverStats = { rounds: 0, pagesRaw: 0, bytesInPlace: 0, pagesZero: 0, pagesXbzrle: 0, bytesReceived: 0 };
  return { memory, stats, sink: new PageSink(memory, hasher, stats) };
}

function zeroFrame(ranges: [number, number][]): Uint8Array {
  const payload = new Uint8Array(ranges.length * 8);
  ranges.forEach(([first, count], i) => {
    writeU32(payload, i * 8, first);
    writeU32(payload, i * 8 + 4, count);
  });
  return payload;
}

function xbzrleRecord(page: number, delta: Uint8Array): Uint8Array {
  const out = new Uint8Array(6 + delta.length);
  writeU32(out, 0, page);
  out[4] = delta.length & 0xff;
  out[5] = delta.length >>> 8;
  out.set(delta, 6);
  return out;
}

const page = (fill: number) => new Uint8Array(PAGE_SIZE).fill(fill);

describe('PageSink bounds', () => {
  it('zeroes the pages of valid ranges', () => {
    const { memory, stats, sink: s } = sink();
    for (let p = 0; p < 8; p++) memory.writePage(p, page(7));
    s.applyZero(zeroFrame([[0, 4], [6, 2]]));
    expect([0, 1, 2, 3, 6, 7].every((p) => memory.isZero(p))).toBe(true);
    expect(memory.isZero(4)).toBe(false);
    expect(stats.pagesZero).toBe(6);
  });

  it.each<[string, [number, number][], RegExp]>([
    ['a range past the end', [[PAGES - 1, 2]], /not inside the VM's 256 pages/],
    ['a range starting outside', [[PAGES, 1]], /not inside/],
    ['an empty range', [[0, 0]], /not inside/],
    ['a 2^32-page range', [[0, 0xffffffff]], /not inside/],
    ['full-memory ranges over and over (10^11 calls once)', Array.from({ length: 8192 }, () => [0, PAGES] as [number, number]), /more than the VM's 256/],
  ])('refuses %s before zeroing anything', (_what, ranges, message) => {
    const { memory, sink: s } = sink();
    memory.writePage(0, page(9));
    expect(() => s.applyZero(zeroFrame(ranges))).toThrow(ProtocolError);
    expect(() => s.applyZero(zeroFrame(ranges))).toThrow(message);
    expect(memory.isZero(0)).toBe(false); // nothing half-applied
  });

  it('refuses page indices outside the VM in every page frame, before writing', () => {
    const { memory, sink: s } = sink();
    const record = new Uint8Array(2 * PAGE_RECORD_BYTES).fill(3);
    writeU32(record, 0, 5);
    writeU32(record, PAGE_RECORD_BYTES, PAGES);
    expect(() => s.onPages(record, 0, 2)).toThrow(/page 256 is outside the VM's 256 pages/);
    expect(memory.isZero(5)).toBe(true);
    expect(() => s.onPage(PAGES + 7, page(1), 0)).toThrow(ProtocolError);
    expect(() => s.onPageRun(Uint32Array.of(1, 2, 0xffffffff), new Uint8Array(3 * PAGE_SIZE).fill(1), 0)).toThrow(/outside/);
    expect(memory.isZero(1)).toBe(true);
    expect(() => s.runTarget(Uint32Array.from({ length: 32 }, (_, i) => (i === 31 ? PAGES : i)))).toThrow(/outside/);
    expect(memory.residentPages).toBe(0);
  });

  it.each<[string, Uint8Array, RegExp]>([
    ['a page outside the VM', xbzrleRecord(PAGES, Uint8Array.of(0, 4, 1, 2, 3, 4)), /outside/],
    ['an empty delta', xbzrleRecord(3, new Uint8Array(0)), /delta of 0 bytes/],
    ['a delta longer than a page', xbzrleRecord(3, new Uint8Array(PAGE_SIZE + 1)), /delta of 4097 bytes/],
    ['a delta that decodes past the page (its decoded length)', xbzrleRecord(3, Uint8Array.of(0xff, 0x3f, 4, 1, 2, 3, 4)), /malformed/],
    ['a truncated record', xbzrleRecord(3, Uint8Array.of(0, 4, 1, 2, 3, 4)).subarray(0, 9), /truncated/],
  ])('refuses an XBZRLE frame with %s', (_what, payload, message) => {
    const { sink: s } = sink();
    expect(() => s.applyXbzrle(payload)).toThrow(message);
  });

  it('applies a valid XBZRLE delta', () => {
    const { memory, stats, sink: s } = sink();
    memory.writePage(3, page(1));
    s.applyXbzrle(xbzrleRecord(3, Uint8Array.of(0, 4, 1, 1, 1, 1))); // XOR the first word with 0x01010101
    const out = new Uint8Array(PAGE_SIZE);
    memory.readPage(3, out);
    expect([...out.subarray(0, 5)]).toEqual([0, 0, 0, 0, 1]);
    expect(stats.pagesXbzrle).toBe(1);
  });
});
