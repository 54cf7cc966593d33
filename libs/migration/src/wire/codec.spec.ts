import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../errors.js';
import { FrameParser, decodeDigest, decodeJson, encodeDigestFrame, encodeFrame, encodeHello, encodeRound, readU32, writeFrameHeader, writeU32 } from './codec.js';
import { FRAME_HEADER_BYTES, FrameType, PAGE_RECORD_BYTES, PAGE_SIZE, type HelloPayload } from './frame.js';

const ALL = new Set(Object.values(FrameType) as number[]);

function pagesFrame(pages: number[]): Buffer {
  const buf = Buffer.alloc(FRAME_HEADER_BYTES + pages.length * PAGE_RECORD_BYTES);
  writeFrameHeader(buf, 0, FrameType.PAGES, pages.length * PAGE_RECORD_BYTES);
  pages.forEach((p, i) => {
    const at = FRAME_HEADER_BYTES + i * PAGE_RECORD_BYTES;
    writeU32(buf, at, p);
    buf.fill((p % 250) + 1, at + 4, at + 4 + PAGE_SIZE);
  });
  return buf;
}

function collect(bytes: Buffer, chunkSize: number) {
  const frames: { type: number; payload: Buffer }[] = [];
  const pages: { page: number; first: number; last: number }[] = [];
  const parser = new FrameParser(
    {
      onPage: (page, src, off) => pages.push({ page, first: src[off]!, last: src[off + PAGE_SIZE - 1]! }),
      onFrame: (type, payload) => frames.push({ type, payload: Buffer.from(payload) }),
    },
    ALL,
  );
  for (let off = 0; off < bytes.length; off += chunkSize) parser.push(bytes.subarray(off, off + chunkSize));
  return { frames, pages, idle: parser.idle };
}

describe('frame codec', () => {
  const hello: HelloPayload = { version: 1, migrationId: 'm1', token: 't', pageCount: 256, memoryMib: 1, image: 'empty', vcpus: 2 };
  const stream = Buffer.concat([
    encodeHello(hello),
    encodeRound(7),
    pagesFrame([3, 9, 300]),
    encodeFrame(FrameType.DEVICE_STATE, Buffer.from([1, 2, 3])),
    encodeDigestFrame(FrameType.COMPLETE, '0123456789abcdef'),
    encodeFrame(FrameType.HELLO_ACK),
  ]);

  it.each([1, 5, 7, 100, 4099, 4100, 4101, 65536, stream.length])('round-trips every frame in chunks of %d bytes', (chunk) => {
    const { frames, pages, idle } = collect(stream, chunk);
    expect(idle).toBe(true);
    expect(frames.map((f) => f.type)).toEqual([FrameType.HELLO, FrameType.ROUND, FrameType.DEVICE_STATE, FrameType.COMPLETE, FrameType.HELLO_ACK]);
    expect(decodeJson<HelloPayload>(frames[0]!.payload, 'HELLO')).toEqual(hello);
    expect(readU32(frames[1]!.payload, 0)).toBe(7);
    expect([...frames[2]!.payload]).toEqual([1, 2, 3]);
    expect(decodeDigest(frames[3]!.payload)).toBe('0123456789abcdef');
    expect(frames[4]!.payload.length).toBe(0);
    expect(pages).toEqual([3, 9, 300].map((p) => ({ page: p, first: (p % 250) + 1, last: (p % 250) + 1 })));
  });

  it('rejects a frame type the end does not accept', () => {
    const parser = new FrameParser({ onPage: () => undefined, onFrame: () => undefined }, new Set([FrameType.HELLO]));
    expect(() => parser.push(encodeRound(1))).toThrow(ProtocolError);
  });

  it('rejects oversized frames before buffering them', () => {
    const header = Buffer.alloc(FRAME_HEADER_BYTES);
    writeFrameHeader(header, 0, FrameType.HELLO, 10 * 1024 * 1024);
    const parser = new FrameParser({ onPage: () => undefined, onFrame: () => undefined }, ALL);
    expect(() => parser.push(header)).toThrow(/exceeds/);
  });

  it('rejects a PAGES frame that is not whole records', () => {
    const header = Buffer.alloc(FRAME_HEADER_BYTES);
    writeFrameHeader(header, 0, FrameType.PAGES, PAGE_RECORD_BYTES + 1);
    const parser = new FrameParser({ onPage: () => undefined, onFrame: () => undefined }, ALL);
    expect(() => parser.push(header)).toThrow(/whole number/);
  });

  it('refuses to encode a payload over the type limit', () => {
    expect(() => encodeFrame(FrameType.COMPLETE, new Uint8Array(17))).toThrow(ProtocolError);
  });

  /** A PAGE_RUN frame: indices, then each page filled with (index + 1) & 0xff. */
  function runFrame(pages: number[]): Buffer {
    const buf = Buffer.alloc(FRAME_HEADER_BYTES + pages.length * PAGE_RECORD_BYTES);
    writeFrameHeader(buf, 0, FrameType.PAGE_RUN, pages.length * PAGE_RECORD_BYTES);
    pages.forEach((p, i) => {
      writeU32(buf, FRAME_HEADER_BYTES + i * 4, p);
      buf.fill((p + 1) & 0xff, FRAME_HEADER_BYTES + pages.length * 4 + i * PAGE_SIZE, FRAME_HEADER_BYTES + pages.length * 4 + (i + 1) * PAGE_SIZE);
    });
    return buf;
  }

  it('PAGE_RUN: whole pages in bulk, split ones gathered, whatever the chunking', () => {
    const pages = [7, 3, 9, 100];
    const wire = Buffer.concat([runFrame(pages), encodeRound(2)]);
    for (const size of [1, 3, 1000, 4097, 9000, wire.length]) {
      const got: [number, number][] = [];
      let rounds = 0;
      const parser = new FrameParser(
        {
          onPage: (p, src, at) => got.push([p, src[at + 4095]!]),
          onRunPages: (ps, first, count, src, at) => {
            for (let i = 0; i < count; i++) got.push([ps[first + i]!, src[at + i * PAGE_SIZE]!]);
          },
          onFrame: (type) => (rounds += type === FrameType.ROUND ? 1 : 0),
        },
        ALL,
      );
      for (let off = 0; off < wire.length; off += size) parser.push(wire.subarray(off, off + size));
      expect(got, `chunks of ${size}`).toEqual(pages.map((p) => [p, (p + 1) & 0xff]));
      expect(rounds).toBe(1);
      expect(parser.idle).toBe(true);
    }
  });

  it('PAGE_RUN: reads land in the frames runTarget gives, with only the header and indices in the default buffer', () => {
    const pages = [4, 5, 6];
    const wire = runFrame(pages);
    const frames = new Uint8Array(3 * PAGE_SIZE);
    const inPlace: number[] = [];
    let viaDefault = 0;
    const parser = new FrameParser(
      {
        onPage: () => viaDefault++,
        onRunPages: (_ps, _first, count) => (viaDefault += count),
        runTarget: (ps, first, count) => {
          expect(ps[first]).toBe(4);
          expect(count).toBe(3);
          return frames;
        },
        onRunInPlace: (ps, first, count) => {
          for (let i = first; i < first + count; i++) inPlace.push(ps[i]!);
        },
        onFrame: () => undefined,
      },
      ALL,
    );
    const defaultBuffer = new Uint8Array(64 * 1024);
    let off = 0;
    const read = (target: Uint8Array, max: number) => {
      const n = Math.min(target.length, max, wire.length - off);
      target.set(wire.subarray(off, off + n));
      off += n;
      parser.push(target.subarray(0, n));
    };
    read(defaultBuffer, 64 * 1024); // a first PAGE_RUN read as a whole into the default buffer
    expect(viaDefault).toBe(3);
    expect(inPlace).toEqual([]);
    viaDefault = 0;
    // A frame after a PAGE_RUN: the parser asks for exactly the header, then the indices, then frames.
    const frames2: number[] = [];
    const wire2 = runFrame(pages);
    off = 0;
    const read2 = (max: number) => {
      const target = parser.readTarget(defaultBuffer) ?? defaultBuffer;
      const n = Math.min(target.length, max, wire2.length - off);
      target.set(wire2.subarray(off, off + n));
      off += n;
      parser.push(target.subarray(0, n));
      frames2.push(n);
    };
    while (off < wire2.length) read2(5000); // reads of at most 5000 bytes: pages split between reads
    expect(frames2.slice(0, 2)).toEqual([FRAME_HEADER_BYTES, 12]);
    expect(inPlace).toEqual(pages);
    expect(viaDefault).toBe(0);
    for (let i = 0; i < 3; i++) expect(frames[i * PAGE_SIZE + 4095]).toBe(pages[i]! + 1);
    expect(parser.idle).toBe(true);
  });
});
