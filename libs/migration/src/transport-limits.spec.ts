/**
 * A data listener before and after HELLO, fed what no sender of ours sends: too many connections,
 * silent ones, oversized or garbled HELLOs, and random frames (fast-check) with and without a valid
 * HELLO. Every one is closed with a coded error, and the listener (and this process) keeps working.
 */
import net from 'node:net';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { FramePool, initHashing, type VirtualMachine } from '@vmm/emulator';
import { PendingConnectionBudget } from './pending-budget.js';
import { MigrationReceiver } from './receiver.js';
import { MigrationSender } from './sender.js';
import { makeIncomingVm, makeSourceVm } from './testing/vm-fixture.js';
import { waitFor } from '../../../test/support/wait-for.js';
import { connectOutgoing, listenForIncoming, type IncomingListener } from './transport.js';
import { FrameParser, decodeError, encodeHello, writeFrameHeader } from './wire/codec.js';
import { FRAME_HEADER_BYTES, FrameType, HELLO_PAYLOAD_BYTES, type HelloPayload } from './wire/frame.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

async function listen(opts: Partial<Parameters<typeof listenForIncoming>[0]> = {}): Promise<IncomingListener> {
  const listener = await listenForIncoming({ token: 'the-token', migrationId: 'mig-l', ...opts });
  cleanups.push(() => listener.close());
  return listener;
}

/** A raw client: what it receives (ERROR frames decoded) and when it closed. */
async function client(port: number) {
  const socket = net.connect({ host: '127.0.0.1', port });
  cleanups.push(() => socket.destroy());
  socket.on('error', () => undefined);
  const errors: { code: string; message: string }[] = [];
  let closed = false;
  const parser = new FrameParser({ onPage: () => undefined, onFrame: (type, p) => type === FrameType.ERROR && errors.push(decodeError(p)) }, new Set([FrameType.ERROR, FrameType.HELLO_ACK]));
  socket.on('data', (c: Buffer) => {
    try {
      parser.push(c);
    } catch {
      // not ours to judge
    }
  });
  socket.on('close', () => (closed = true));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('close', () => resolve());
    socket.once('error', reject);
  });
  return { socket, errors, closed: () => closed };
}

const hello = (over: Partial<HelloPayload> = {}): HelloPayload => ({
  version: 1, maxVersion: 2, migrationId: 'mig-l', token: 'the-token', pageCount: 1024, memoryMib: 4, image: 'empty', vcpus: 2, ...over,
});

function rawHello(payload: Uint8Array): Buffer {
  const frame = Buffer.alloc(FRAME_HEADER_BYTES + payload.length);
  writeFrameHeader(frame, 0, FrameType.HELLO, payload.length);
  frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

describe('connections before HELLO', () => {
  it('holds at most maxPendingConnections; more are closed at once; the slots free up after the HELLO deadline', async () => {
    const listener = await listen({ maxPendingConnections: 4, helloTimeoutMs: 300 });
    const silent = await Promise.all([1, 2, 3, 4].map(() => client(listener.port)));
    // Connected on the client's side is not yet taken on the listener's: wait until all four hold a slot.
    await waitFor(() => listener.pendingConnections === 4, 5000);
    expect(silent.every((c) => !c.closed())).toBe(true);
    const fifth = await client(listener.port);
    await waitFor(() => fifth.closed(), 5000);
    expect(fifth.errors).toEqual([]); // closed at once, no work spent on it
    // The silent ones miss their HELLO deadline: an ERROR each, then closed.
    await waitFor(() => silent.every((c) => c.closed()), 5000);
    expect(silent.every((c) => c.errors[0]?.code === 'PROTOCOL_ERROR' && /no HELLO within 300 ms/.test(c.errors[0].message))).toBe(true);
    // A client sees its socket close before the listener's side has: the slots free up after that.
    await waitFor(() => listener.pendingConnections === 0, 5000);
    const good = await client(listener.port);
    good.socket.write(encodeHello(hello()));
    const accepted = await listener.accept;
    expect(accepted.hello.migrationId).toBe('mig-l');
    accepted.connection.destroy();
  });

  it('shares a budget across the listeners of a process', async () => {
    const budget = new PendingConnectionBudget(2);
    const a = await listen({ pendingBudget: budget, helloTimeoutMs: 10_000 });
    const b = await listen({ pendingBudget: budget, migrationId: 'mig-b', helloTimeoutMs: 10_000 });
    const held = [await client(a.port), await client(a.port)];
    await waitFor(() => budget.inUse === 2, 5000);
    const refused = await client(b.port);
    await waitFor(() => refused.closed(), 5000);
    for (const c of held) c.socket.destroy();
    await waitFor(() => budget.inUse === 0, 5000);
    expect(held.every((c) => !c.errors.length)).toBe(true);
  });

  it.each<[string, () => Buffer, string, RegExp]>([
    ['a HELLO over 4 KiB', () => rawHello(Buffer.alloc(HELLO_PAYLOAD_BYTES + 1, 0x20)), 'PROTOCOL_ERROR', /exceeds 4096/],
    ['a 4 KiB migration id of invalid UTF-8', () => rawHello(Buffer.concat([Buffer.from('{"migrationId":"'), Buffer.alloc(4000, 0xff), Buffer.from('"}')])), 'PROTOCOL_ERROR', /UTF-8/],
    ['a migration id of 3800 characters', () => encodeHello(hello({ migrationId: 'm'.repeat(3800) })), 'PROTOCOL_ERROR', /migrationId/],
    ['the wrong token', () => encodeHello(hello({ token: 'guess' })), 'TOKEN_MISMATCH', /token/],
    ['another migration', () => encodeHello(hello({ migrationId: 'mig-other' })), 'PROTOCOL_ERROR', /mig-other/],
    ['a frame that is not HELLO', () => Buffer.from([4, 0, 0, 0, FrameType.ROUND, 0, 0, 0, 0]), 'PROTOCOL_ERROR', /unexpected frame type ROUND/],
  ])('answers %s with a bounded ERROR and keeps listening', async (_what, frame, code, message) => {
    const listener = await listen();
    const bad = await client(listener.port);
    bad.socket.write(frame());
    await waitFor(() => bad.errors.length > 0, 5000);
    expect(bad.errors[0]!.code).toBe(code);
    expect(bad.errors[0]!.message).toMatch(message);
    expect(bad.errors[0]!.message.length).toBeLessThan(1100);
    const good = await client(listener.port);
    good.socket.write(encodeHello(hello()));
    (await listener.accept).connection.destroy();
  });
});

/** Any frame the wire can carry: a header of any type and length, and a payload of any bytes (maybe short). */
const anyFrame = fc
  .record({
    type: fc.oneof(fc.constantFrom(...Object.values(FrameType)), fc.integer({ min: 0, max: 255 })),
    length: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.constantFrom(4, 8, 16, 4100, 4101, 4096, 65536, 65537, 0xffffffff), fc.integer({ min: 0, max: 2 ** 32 - 1 })),
    payload: fc.uint8Array({ maxLength: 1500 }),
  })
  .map(({ type, length, payload }) => {
    const header = Buffer.alloc(FRAME_HEADER_BYTES);
    writeFrameHeader(header, 0, type, length);
    return Buffer.concat([header, payload]);
  });
/** Frames of the types a receiver applies, with payloads shaped like theirs (u32 pairs, records) but random. */
const shapedFrame = fc
  .record({
    type: fc.constantFrom(FrameType.ZERO, FrameType.XBZRLE, FrameType.PAGES, FrameType.PAGE_RUN, FrameType.ROUND, FrameType.DEVICE_STATE, FrameType.COMPLETE),
    words: fc.array(fc.oneof(fc.integer({ min: 0, max: 2048 }), fc.constantFrom(0, 1, 1023, 1024, 0xffffffff), fc.nat()), { maxLength: 64 }),
    pages: fc.integer({ min: 0, max: 3 }),
  })
  .map(({ type, words, pages }) => {
    const paged = type === FrameType.PAGES || type === FrameType.PAGE_RUN;
    const body = Buffer.alloc(paged ? pages * 4100 : words.length * 4);
    if (paged) for (let i = 0; i < pages; i++) body.writeUInt32LE((words[i] ?? i) >>> 0, type === FrameType.PAGES ? i * 4100 : i * 4);
    else words.forEach((w, i) => body.writeUInt32LE(w >>> 0, i * 4));
    const header = Buffer.alloc(FRAME_HEADER_BYTES);
    writeFrameHeader(header, 0, type, body.length);
    return Buffer.concat([header, body]);
  });
const garbage = fc.array(fc.oneof(anyFrame, shapedFrame, fc.uint8Array({ minLength: 1, maxLength: 512 }).map((b) => Buffer.from(b))), { minLength: 1, maxLength: 6 });

describe('random frames', () => {
  it('before HELLO: each connection is closed, the listener accepts the right sender afterwards', async () => {
    const listener = await listen({ maxPendingConnections: 64, helloTimeoutMs: 2000 });
    await fc.assert(
      fc.asyncProperty(garbage, fc.boolean(), async (frames, endIt) => {
        const c = await client(listener.port);
        for (const f of frames) c.socket.write(f);
        if (endIt) c.socket.end();
        // Either the listener refused it (ERROR, close), or it waits for more bytes: then we hang up.
        await waitFor(() => c.closed() || c.errors.length > 0, 3000).catch(() => c.socket.destroy());
        c.socket.destroy();
      }),
      { numRuns: 60 },
    );
    const good = await client(listener.port);
    good.socket.write(encodeHello(hello()));
    (await listener.accept).connection.destroy();
  });

  it('after a valid HELLO: the receiver fails with a coded error, discards the VM, frees every frame', async () => {
    await initHashing();
    await fc.assert(
      fc.asyncProperty(garbage, async (frames) => {
        const pool = new FramePool();
        const vm = makeIncomingVm(pool, 'vm-f', 4);
        const listener = await listen();
        const run = listener.accept.then(({ connection, hello: h }) => new MigrationReceiver({ vm, migrationId: 'mig-l', token: 'the-token', timeoutMs: 10_000 }).run(connection, h));
        const c = await client(listener.port);
        c.socket.write(encodeHello(hello({ residentPages: 256 })));
        for (const f of frames) c.socket.write(f);
        c.socket.end();
        const outcome = await run.then(
          () => 'verified',
          (e: { code?: unknown }) => e.code,
        );
        expect(typeof outcome === 'string' && /^[A-Z_]+$/.test(outcome) && outcome !== 'verified').toBe(true);
        expect(vm.state).toBe('stopped');
        c.socket.destroy();
        await waitFor(() => pool.framesInUse === 0, 3000); // pins dropped once the socket closed
        listener.close();
      }),
      { numRuns: 40 },
    );
  });

  it('a real migration still goes through a listener that saw garbage first', async () => {
    await initHashing();
    const listener = await listen({ token: 't', migrationId: 'mig-r' });
    for (const bytes of [Buffer.alloc(64, 0xff), rawHello(Buffer.alloc(100, 0xfe))]) {
      const c = await client(listener.port);
      c.socket.write(bytes);
      await waitFor(() => c.errors.length > 0, 3000);
    }
    const source = makeSourceVm(new FramePool(), 'vm-r', { memoryMib: 8, workingSetMib: 2, kind: 'idle', dirtyRatePagesPerSec: 0 });
    const target = makeIncomingVm(new FramePool(), 'vm-r', 8);
    const vms: VirtualMachine[] = [source, target];
    cleanups.push(() => vms.forEach((vm) => vm.state !== 'stopped' && vm.stop()));
    const incoming = listener.accept.then(({ connection, hello: h }) => new MigrationReceiver({ vm: target, migrationId: 'mig-r', token: 't' }).run(connection, h));
    const out = await new MigrationSender({ vm: source, migrationId: 'mig-r', token: 't' }).run(await connectOutgoing(listener.address));
    expect((await incoming).targetDigest).toBe(out.sourceDigest);
  });
});
