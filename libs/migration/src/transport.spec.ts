import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { FramePool, GuestMemory, initHashing, type VirtualMachine } from '@vmm/emulator';
import { MigrationReceiver } from './receiver.js';
import { MigrationSender } from './sender.js';
import { connectOutgoing, listenForIncoming, parseAddress } from './transport.js';
import { FrameParser, decodeJson, encodeDigestFrame, encodeFrame, encodeHello, encodeRound, readU32, writeFrameHeader, writeU32 } from './wire/codec.js';
import { FrameType, type HelloPayload } from './wire/frame.js';
import { forEachZeroRange } from './encoding/zero-runs.js';
import { makeIncomingVm, makeSourceVm } from './testing/vm-fixture.js';
import { waitFor } from '../../../test/support/wait-for.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function track(vm: VirtualMachine): VirtualMachine {
  cleanups.push(() => vm.state !== 'stopped' && vm.stop());
  return vm;
}

/** Connects with a HELLO carrying `token`, returns the first frame the listener answers with. */
async function helloWith(port: number, token: string): Promise<{ type: number; payload: unknown }> {
  const socket = net.connect({ host: '127.0.0.1', port });
  cleanups.push(() => socket.destroy());
  await new Promise((r) => socket.once('connect', r));
  socket.write(encodeHello({ version: 1, migrationId: 'mig-t', token, pageCount: 256, memoryMib: 1, image: 'empty', vcpus: 2 }));
  return new Promise((resolve) => {
    const parser = new FrameParser(
      { onPage: () => undefined, onFrame: (type, payload) => resolve({ type, payload: decodeJson(payload, 'ERROR') }) },
      new Set([FrameType.ERROR, FrameType.HELLO_ACK]),
    );
    socket.on('data', (c: Buffer) => parser.push(c));
  });
}

/**
 * A receiver built from the wire format alone, as another implementation (or an older agent) would be:
 * HELLO must offer `version`; it acks with that version (empty for 1, which knows no PAGE_RUN), applies
 * pages to `target`, acks rounds and answers COMPLETE with its digest. `pauseEveryReadMs` stops reading
 * for that long after every read: a slow target.
 */
async function fakeReceiver(target: GuestMemory, opts: { version: 1 | 2; pauseEveryReadMs?: number }) {
  const server = net.createServer();
  cleanups.push(() => server.close());
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const hellos: HelloPayload[] = [];
  let pauses = 0;
  const types = [FrameType.HELLO, FrameType.PAGES, FrameType.ZERO, FrameType.XBZRLE, FrameType.ROUND, FrameType.DEVICE_STATE, FrameType.COMPLETE];
  server.on('connection', (socket: net.Socket) => {
    cleanups.push(() => socket.destroy());
    const parser = new FrameParser(
      {
        onPage: (page, src, off) => target.writePage(page, src, off),
        onFrame: (type, payload) => {
          if (type === FrameType.HELLO) {
            const hello = decodeJson<HelloPayload>(payload, 'HELLO');
            hellos.push(hello);
            if (opts.version === 1) {
              if (hello.version !== 1) return socket.destroy();
              socket.write(encodeFrame(FrameType.HELLO_ACK));
            } else {
              socket.write(encodeFrame(FrameType.HELLO_ACK, Buffer.from([2, 0, 0, 0])));
            }
          }
          if (type === FrameType.ZERO) forEachZeroRange(payload, (first, count) => { for (let p = first; p < first + count; p++) target.zeroPage(p); });
          if (type === FrameType.ROUND && readU32(payload, 0) > 0) socket.write(encodeRound(readU32(payload, 0), FrameType.ROUND_ACK));
          if (type === FrameType.COMPLETE) socket.write(encodeDigestFrame(FrameType.VERIFIED, target.digest()));
        },
      },
      new Set(opts.version === 1 ? types : [...types, FrameType.PAGE_RUN]),
    );
    socket.on('data', (c: Buffer) => {
      try {
        parser.push(c);
      } catch {
        socket.destroy(); // e.g. a PAGE_RUN to a version-1 receiver: the migration fails and the test with it
        return;
      }
      if (opts.pauseEveryReadMs) {
        pauses++;
        socket.pause();
        setTimeout(() => socket.resume(), opts.pauseEveryReadMs);
      }
    });
  });
  return { address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, hellos, pauses: () => pauses };
}

describe('tcp transport', () => {
  it('migrates a running VM over a real loopback socket', async () => {
    await initHashing();
    const source = track(makeSourceVm(new FramePool(), 'vm-net', { memoryMib: 32, workingSetMib: 8, kind: 'uniform', dirtyRatePagesPerSec: 20_000 }));
    const target = track(makeIncomingVm(new FramePool(), 'vm-net', 32));
    source.start();
    const listener = await listenForIncoming({ token: 'tok-1', migrationId: 'mig-net' });
    cleanups.push(() => listener.close());
    expect(listener.address).toBe(`127.0.0.1:${listener.port}`);
    const incoming = listener.accept.then(({ connection, hello }) =>
      new MigrationReceiver({ vm: target, migrationId: 'mig-net', token: 'tok-1' }).run(connection, hello),
    );
    const socket = await connectOutgoing(listener.address);
    const out = await new MigrationSender({ vm: source, migrationId: 'mig-net', token: 'tok-1' }).run(socket);
    const inc = await incoming;
    expect(out.targetDigest).toBe(out.sourceDigest);
    expect(inc.targetDigest).toBe(out.sourceDigest);
    out.commit();
    inc.commit();
    expect(target.state).toBe('running');
    expect(source.state).toBe('stopped');
  });

  it('speaks protocol version 1 to a receiver that predates PAGE_RUN (a rolling upgrade, target not yet upgraded)', async () => {
    await initHashing();
    const source = track(makeSourceVm(new FramePool(), 'vm-old', { memoryMib: 16, workingSetMib: 8, kind: 'idle', dirtyRatePagesPerSec: 0 }));
    const target = new GuestMemory(new FramePool(), 16 * 256);
    cleanups.push(() => target.release());
    const fake = await fakeReceiver(target, { version: 1 });
    const out = await new MigrationSender({ vm: source, migrationId: 'mig-old', token: 't' }).run(await connectOutgoing(fake.address));
    expect(fake.hellos[0]).toMatchObject({ version: 1, maxVersion: 2 });
    expect(out.targetDigest).toBe(out.sourceDigest);
    expect(out.stats.pagesRaw).toBe(8 * 256);
    expect(out.stats.pagesWithoutCopy).toBe(0);
    out.abort();
  });

  it('a slow receiver slows the sender: what is queued (pinned guest frames included) stays bounded', async () => {
    await initHashing();
    const source = track(makeSourceVm(new FramePool(), 'vm-slow', { memoryMib: 32, workingSetMib: 24, kind: 'idle', dirtyRatePagesPerSec: 0 }));
    const target = new GuestMemory(new FramePool(), 32 * 256);
    cleanups.push(() => target.release());
    const fake = await fakeReceiver(target, { version: 2, pauseEveryReadMs: 2 });
    const out = await new MigrationSender({ vm: source, migrationId: 'mig-slow', token: 't' }).run(await connectOutgoing(fake.address));
    expect(out.targetDigest).toBe(out.sourceDigest);
    expect(out.stats.pagesWithoutCopy).toBe(24 * 256);
    // A few batches queued at most (the drain rule), never the 24 MiB of the VM.
    expect(out.stats.maxBufferedBytes).toBeLessThanOrEqual(7 * 1024 * 1024);
    expect(fake.pauses()).toBeGreaterThan(10); // it really was slow
    out.abort();
  });

  it('sends pages without a copy (PAGE_RUN) to a receiver of this version', async () => {
    await initHashing();
    const source = track(makeSourceVm(new FramePool(), 'vm-new', { memoryMib: 16, workingSetMib: 8, kind: 'idle', dirtyRatePagesPerSec: 0 }));
    const target = track(makeIncomingVm(new FramePool(), 'vm-new', 16));
    const listener = await listenForIncoming({ token: 't', migrationId: 'mig-new' });
    cleanups.push(() => listener.close());
    const incoming = listener.accept.then(({ connection, hello }) => new MigrationReceiver({ vm: target, migrationId: 'mig-new', token: 't' }).run(connection, hello));
    const out = await new MigrationSender({ vm: source, migrationId: 'mig-new', token: 't' }).run(await connectOutgoing(listener.address));
    const inc = await incoming;
    expect(inc.targetDigest).toBe(out.sourceDigest);
    expect(out.stats.pagesWithoutCopy).toBe(8 * 256); // the working set was written in page order
    // and the target's kernel read it straight into its frames (all but what came with the first run's header)
    expect(inc.stats.bytesInPlace).toBeGreaterThan(0.9 * 8 * 1024 * 1024);
    expect(source.memory.pool.framesInUse).toBe(8 * 256); // every pin dropped
    out.abort();
    inc.abort();
  });

  it('a receiver aborted in the middle of an in-place PAGE_RUN keeps its frames pinned until the socket closed', async () => {
    await initHashing();
    const pool = new FramePool();
    const target = track(makeIncomingVm(pool, 'vm-pin', 4));
    const listener = await listenForIncoming({ token: 't', migrationId: 'mig-pin' });
    cleanups.push(() => listener.close());
    const abort = new AbortController();
    const incoming = listener.accept.then(({ connection, hello }) =>
      new MigrationReceiver({ vm: target, migrationId: 'mig-pin', token: 't', signal: abort.signal }).run(connection, hello),
    );
    incoming.catch(() => undefined);
    // A sender by hand: HELLO, then half of a 64-page PAGE_RUN.
    const socket = net.connect({ host: '127.0.0.1', port: listener.port });
    cleanups.push(() => socket.destroy());
    await new Promise((r) => socket.once('connect', r));
    socket.write(encodeHello({ version: 1, maxVersion: 2, migrationId: 'mig-pin', token: 't', pageCount: 4 * 256, memoryMib: 4, image: 'empty', vcpus: 2, residentPages: 64 }));
    await new Promise((r) => socket.once('data', r)); // HELLO_ACK
    const pages = 64;
    const frame = Buffer.alloc(5 + pages * 4100, 1);
    writeFrameHeader(frame, 0, FrameType.PAGE_RUN, pages * 4100);
    for (let i = 0; i < pages; i++) writeU32(frame, 5 + 4 * i, i);
    socket.write(Buffer.concat([encodeRound(0), frame.subarray(0, 5 + pages * 4 + 32 * 4096)]));
    await waitFor(() => pool.framesInUse >= pages, 5000); // the run's frames are mapped and the reads land in them
    abort.abort();
    await expect(incoming).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(target.state).toBe('stopped');
    expect(pool.framesInUse).toBe(pages); // the VM let go of them, the armed read has not
    socket.destroy();
    await waitFor(() => pool.framesInUse === 0, 5000); // the receiver's socket closed: unpinned and freed
  });

  it('answers a wrong token with an ERROR, keeps listening, and accepts the right one', async () => {
    const listener = await listenForIncoming({ token: 'right', migrationId: 'mig-t' });
    cleanups.push(() => listener.close());
    const bad = await helloWith(listener.port, 'wrong');
    expect(bad).toEqual({ type: FrameType.ERROR, payload: expect.objectContaining({ code: 'TOKEN_MISMATCH' }) });
    const good = helloWith(listener.port, 'right');
    const accepted = await listener.accept;
    expect(accepted.hello.migrationId).toBe('mig-t');
    accepted.connection.destroy();
    void good;
  });

  it('rejects accept on timeout and on close', async () => {
    const l1 = await listenForIncoming({ token: 'x', migrationId: 'm', acceptTimeoutMs: 50 });
    await expect(l1.accept).rejects.toMatchObject({ code: 'CONNECTION_LOST' });
    const l2 = await listenForIncoming({ token: 'x', migrationId: 'm' });
    l2.close();
    await expect(l2.accept).rejects.toMatchObject({ code: 'CONNECTION_LOST' });
  });

  it('fails to connect to a closed port with a coded error', async () => {
    const l = await listenForIncoming({ token: 'x', migrationId: 'm' });
    const port = l.port;
    l.close();
    await expect(connectOutgoing(`127.0.0.1:${port}`)).rejects.toMatchObject({ code: 'CONNECTION_LOST' });
  });

  it.each(['nope', '127.0.0.1', '127.0.0.1:0', ':80', '127.0.0.1:99999'])('rejects the address %s', (a) => {
    expect(() => parseAddress(a)).toThrow(/bad data address/);
  });

  it('parses host:port and [v6]:port', () => {
    expect(parseAddress('10.0.0.1:7000')).toEqual({ host: '10.0.0.1', port: 7000 });
    expect(parseAddress('[::1]:7000')).toEqual({ host: '::1', port: 7000 });
  });
});
