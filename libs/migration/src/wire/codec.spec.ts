import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../errors.js';
import {
  FrameParser,
  agreedVersion,
  decodeDigest,
  decodeError,
  decodeHelloAck,
  decodeJson,
  encodeDigestFrame,
  encodeError,
  encodeFrame,
  encodeHello,
  encodeHelloAck,
  encodeRound,
  readU32,
  writeFrameHeader,
  writeU32,
} from './codec.js';
import { ERROR_PAYLOAD_BYTES, FRAME_HEADER_BYTES, FrameType, HELLO_PAYLOAD_BYTES, PAGE_RECORD_BYTES, PAGE_SIZE, ZERO_PAYLOAD_BYTES, type HelloPayload } from './frame.js';

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

function pageRunFrame(pages: number[]): Buffer {
  const buf = Buffer.alloc(FRAME_HEADER_BYTES + pages.length * PAGE_RECORD_BYTES);
  writeFrameHeader(buf, 0, FrameType.PAGE_RUN, pages.length * PAGE_RECORD_BYTES);
  const data = FRAME_HEADER_BYTES + pages.length * 4;
  pages.forEach((p, i) => {
    writeU32(buf, FRAME_HEADER_BYTES + i * 4, p);
    buf.fill((p % 250) + 1, data + i * PAGE_SIZE, data + (i + 1) * PAGE_SIZE);
    buf[data + i * PAGE_SIZE] = 255 - (p % 250); // first byte differs from the rest: pages must not shift
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

  const runs = Buffer.concat([pageRunFrame([5, 6, 7, 40]), encodeRound(2), pageRunFrame([1000]), pagesFrame([3])]);
  const runPages = [5, 6, 7, 40, 1000].map((p) => ({ page: p, first: 255 - (p % 250), last: (p % 250) + 1 }));

  it.each([1, 3, 7, 4096, 4099, 4100, 4117, 9000, runs.length])('hands PAGE_RUN pages to onPage in chunks of %d bytes', (chunk) => {
    const { frames, pages, idle } = collect(runs, chunk);
    expect(idle).toBe(true);
    expect(frames.map((f) => f.type)).toEqual([FrameType.ROUND]);
    expect(pages).toEqual([...runPages.slice(0, 4), runPages[4], { page: 3, first: 4, last: 4 }]);
  });

  it.each([5000, 4117, runs.length])('hands whole PAGE_RUN pages to onPageRun without copying (chunks of %d bytes)', (chunk) => {
    const seen: { page: number; first: number; last: number; bulk: boolean }[] = [];
    const parser = new FrameParser(
      {
        onPage: (page, src, off) => seen.push({ page, first: src[off]!, last: src[off + PAGE_SIZE - 1]!, bulk: false }),
        onPageRun: (pages, src, off) => {
          pages.forEach((page, i) => seen.push({ page, first: src[off + i * PAGE_SIZE]!, last: src[off + (i + 1) * PAGE_SIZE - 1]!, bulk: true }));
        },
        onFrame: () => undefined,
      },
      ALL,
    );
    for (let off = 0; off < runs.length; off += chunk) parser.push(runs.subarray(off, off + chunk));
    expect(parser.idle).toBe(true);
    expect(seen.map(({ bulk: _, ...p }) => p)).toEqual([...runPages, { page: 3, first: 4, last: 4 }]);
    if (chunk === runs.length) expect(seen.slice(0, 5).every((p) => p.bulk)).toBe(true);
  });

  it('PAGE_RUN in place: points reads at the header, the indices, then the target view; counts what lands there, copies the rest in', () => {
    const frame = pageRunFrame([5, 6, 7, 40]);
    const target = new Uint8Array(4 * PAGE_SIZE + 8).subarray(4, 4 + 4 * PAGE_SIZE); // a view inside a bigger buffer
    const inPlace: number[][] = [];
    const parser = new FrameParser(
      {
        onPage: () => expect.unreachable('pages go to the target view'),
        runTarget: (pages) => {
          expect([...pages]).toEqual([5, 6, 7, 40]);
          return target;
        },
        onRunInPlace: (pages, landed) => inPlace.push([...pages, landed]),
        onFrame: () => undefined,
      },
      ALL,
    );
    const buffer = new Uint8Array(64 * 1024);
    expect(parser.readTarget(buffer)).toBeNull(); // nothing known yet: the whole buffer
    parser.push(frame.subarray(0, 2)); // part of the header
    expect(parser.readTarget(buffer)).toBeNull();
    parser.push(frame.subarray(2, 5 + 10)); // the header and 10 index bytes
    expect(parser.readTarget(buffer)!.length).toBe(16 - 10); // just the missing indices
    parser.push(frame.subarray(15, 21 + 100)); // the last indices and 100 data bytes (copied in)
    const view = parser.readTarget(buffer)!;
    expect(view.buffer).toBe(target.buffer);
    expect(view.byteOffset).toBe(target.byteOffset + 100);
    // The kernel reads straight into the view: simulate a read of 5000 bytes there.
    view.set(frame.subarray(121, 121 + 5000));
    parser.push(view.subarray(0, 5000));
    const rest = parser.readTarget(buffer)!;
    expect(rest.byteOffset).toBe(target.byteOffset + 5100);
    rest.set(frame.subarray(5121));
    parser.push(rest.subarray(0, frame.length - 5121));
    expect(inPlace).toEqual([[5, 6, 7, 40, 4 * PAGE_SIZE - 100]]); // all but the 100 bytes that came with the indices
    expect(parser.idle).toBe(true);
    expect(Buffer.compare(Buffer.from(target), frame.subarray(21))).toBe(0);
    // After a PAGE_RUN the next read is just a header: another PAGE_RUN's data must not land in the buffer.
    expect(parser.readTarget(buffer)!.length).toBe(5);
  });

  it('PAGE_RUN without a target view (runTarget gives null) takes the usual path', () => {
    const seen: number[] = [];
    const parser = new FrameParser(
      { onPage: (page) => seen.push(page), runTarget: () => null, onRunInPlace: () => expect.unreachable(), onFrame: () => undefined },
      ALL,
    );
    const frame = pageRunFrame([1, 2]);
    parser.push(frame);
    expect(seen).toEqual([1, 2]);
    expect(parser.idle).toBe(true);
  });

  it('rejects a PAGE_RUN frame that is not whole pages', () => {
    const header = Buffer.alloc(FRAME_HEADER_BYTES);
    writeFrameHeader(header, 0, FrameType.PAGE_RUN, 2 * PAGE_RECORD_BYTES - 4);
    const parser = new FrameParser({ onPage: () => undefined, onFrame: () => undefined }, ALL);
    expect(() => parser.push(header)).toThrow(/PAGE_RUN frame of 8196 bytes is not a whole number of pages/);
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

  it('agrees on the highest version both ends speak, or on none', () => {
    expect(agreedVersion({ version: 1, maxVersion: 2 })).toBe(2);
    expect(agreedVersion({ version: 1 })).toBe(1); // a version-1 sender
    expect(agreedVersion({ version: 1, maxVersion: 9 })).toBe(2); // a newer sender that still speaks ours
    expect(agreedVersion({ version: 3, maxVersion: 4 })).toBeNull();
    expect(agreedVersion({ version: 2, maxVersion: 1 })).toBeNull();
    expect(agreedVersion({ version: 1.5 })).toBeNull();
  });

  it('HELLO_ACK carries the agreed version only to a sender that offered a range', () => {
    const payloadOf = (frame: Buffer) => collect(frame, frame.length).frames[0]!.payload;
    const toOld = payloadOf(encodeHelloAck({}, 1));
    expect(toOld.length).toBe(0); // what a version-1 sender's parser requires
    expect(decodeHelloAck(toOld)).toBe(1);
    expect(decodeHelloAck(payloadOf(encodeHelloAck({ maxVersion: 2 }, 2)))).toBe(2);
    expect(() => decodeHelloAck(Buffer.from([3, 0, 0, 0]))).toThrow(/protocol version 3/);
    expect(() => decodeHelloAck(Buffer.from([1, 0]))).toThrow(ProtocolError);
  });

  it('refuses to encode a payload over the type limit', () => {
    expect(() => encodeFrame(FrameType.COMPLETE, new Uint8Array(17))).toThrow(ProtocolError);
  });

  it.each([
    ['HELLO', FrameType.HELLO, HELLO_PAYLOAD_BYTES],
    ['ZERO', FrameType.ZERO, ZERO_PAYLOAD_BYTES],
  ])('a %s frame one byte over its bound is refused from its header', (_name, type, max) => {
    const header = Buffer.alloc(FRAME_HEADER_BYTES);
    writeFrameHeader(header, 0, type, max + 1);
    const parser = new FrameParser({ onPage: () => undefined, onFrame: () => undefined }, ALL);
    expect(() => parser.push(header)).toThrow(/exceeds/);
    expect(HELLO_PAYLOAD_BYTES).toBe(4096);
  });

  it('ERROR always encodes, whatever the error says (a long message is cut, a bad code becomes INTERNAL)', () => {
    const huge = '\ud800'.repeat(64 * 1024) + 'é'.repeat(64 * 1024);
    const frame = encodeError({ code: 'not a code', message: huge });
    expect(frame.length).toBeLessThanOrEqual(FRAME_HEADER_BYTES + ERROR_PAYLOAD_BYTES);
    const { frames } = collect(frame, frame.length);
    const e = decodeError(frames[0]!.payload);
    expect(e.code).toBe('INTERNAL');
    expect(e.message.length).toBeLessThan(1100);
    expect(decodeError(encodeError({ code: 'TOKEN_MISMATCH', message: 'no' }).subarray(FRAME_HEADER_BYTES))).toEqual({ code: 'TOKEN_MISMATCH', message: 'no' });
  });

  it('reads a garbage ERROR payload as a bounded error, never throwing', () => {
    expect(decodeError(Buffer.from('not json'))).toMatchObject({ code: 'PROTOCOL_ERROR' });
    expect(decodeError(Buffer.from('null'))).toEqual({ code: 'UNKNOWN', message: '' });
    expect(decodeError(Buffer.from(JSON.stringify({ code: 'x'.repeat(100), message: 'm'.repeat(5000) })))).toMatchObject({ code: 'UNKNOWN' });
    expect(decodeError(Buffer.from(JSON.stringify({ code: 'X', message: 'm'.repeat(5000) }))).message.length).toBeLessThan(1100);
  });
});
