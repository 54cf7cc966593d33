/**
 * The data plane survives its input: a real receiving process (libs/migration's testing
 * receiver-process, the engine's own listener and receiver) is fed random, truncated and garbled frames
 * over TCP, before any HELLO and after a valid one. The process must live on, every bad connection must
 * end with a coded error, nothing may stay allocated, and a real migration must still go through.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FramePool, initHashing } from '@vmm/emulator';
import { MigrationSender, connectOutgoing } from '@vmm/migration';
import { makeSourceVm } from '@vmm/migration/testing/vm-fixture';
import { encodeHello, writeFrameHeader } from '@vmm/migration/wire/codec';
import { FRAME_HEADER_BYTES, FrameType, type HelloPayload } from '@vmm/migration/wire/frame';
import { REPO_ROOT } from '@vmm/local-cluster/cluster';
import { waitFor } from './support/wait-for.js';

const SCRIPT = path.join(REPO_ROOT, 'libs/migration/dist/testing/receiver-process.js');
const MEMORY_MIB = 4;

interface Event {
  event: string;
  migrationId?: string;
  port?: number;
  digest?: string;
  code?: string;
  framesInUse?: number;
  pendingConnections?: number;
}

let child: ChildProcess;
let exited: number | string | null = null;
const events: Event[] = [];
let stderr = '';

function send(cmd: Record<string, unknown>): void {
  child.stdin!.write(`${JSON.stringify(cmd)}\n`);
}

/** The first event that matches (ids are unique per listener, so earlier events never match by mistake). */
async function next(match: (e: Event) => boolean, what: string): Promise<Event> {
  return waitFor(() => events.find(match), 20_000, `${what} (receiver exited: ${exited}; stderr: ${stderr.slice(-500)})`);
}

let seq = 0;
async function listen(): Promise<{ migrationId: string; port: number }> {
  const migrationId = `mig-${++seq}`;
  send({ cmd: 'listen', migrationId, token: `token-${seq}`, memoryMib: MEMORY_MIB });
  const e = await next((x) => x.event === 'listening' && x.migrationId === migrationId, `listener ${migrationId}`);
  return { migrationId, port: e.port! };
}

async function stats(): Promise<Event> {
  const before = events.length;
  send({ cmd: 'stats' });
  return waitFor(() => events.slice(before).find((e) => e.event === 'stats'), 10_000, 'stats');
}

const helloFor = (migrationId: string): HelloPayload => ({
  version: 1, maxVersion: 2, migrationId, token: `token-${migrationId.slice(4)}`, pageCount: MEMORY_MIB * 256, memoryMib: MEMORY_MIB, image: 'empty', vcpus: 2, residentPages: 256,
});

/** Writes `chunks`, ends, and waits until the receiver closed the connection (or gives up and closes it). */
async function feed(port: number, chunks: Buffer[]): Promise<void> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => undefined);
  let closed = false;
  socket.on('close', () => (closed = true));
  socket.resume();
  await new Promise<void>((resolve) => {
    socket.once('connect', resolve);
    socket.once('close', resolve);
  });
  for (const c of chunks) if (!socket.destroyed) socket.write(c);
  socket.end();
  await waitFor(() => closed, 5000, 'the receiver to close the connection').catch(() => undefined);
  socket.destroy();
}

const frame = (type: number, length: number, payload: Uint8Array) => {
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  writeFrameHeader(header, 0, type, length);
  return Buffer.concat([header, payload]);
};
const garbledFrames = fc.array(
  fc.oneof(
    fc.record({
      type: fc.oneof(fc.constantFrom(...Object.values(FrameType)), fc.integer({ min: 0, max: 255 })),
      length: fc.oneof(fc.integer({ min: 0, max: 32 }), fc.constantFrom(4100, 4101, 65536, 65537, 2 ** 32 - 1), fc.nat()),
      payload: fc.uint8Array({ maxLength: 1024 }),
    }).map((f) => frame(f.type, f.length, f.payload)),
    fc.record({
      type: fc.constantFrom(FrameType.ZERO, FrameType.XBZRLE, FrameType.ROUND, FrameType.DEVICE_STATE, FrameType.COMPLETE, FrameType.PAGES, FrameType.PAGE_RUN),
      words: fc.array(fc.oneof(fc.constantFrom(0, 1, 1023, 1024, 0xffffffff), fc.nat()), { maxLength: 48 }),
    }).map(({ type, words }) => {
      const body = Buffer.alloc(words.length * 4);
      words.forEach((w, i) => body.writeUInt32LE(w >>> 0, i * 4));
      return frame(type, body.length, body);
    }),
    fc.uint8Array({ minLength: 1, maxLength: 256 }).map((b) => Buffer.from(b)),
  ),
  { minLength: 1, maxLength: 5 },
);

beforeAll(async () => {
  child = spawn(process.execPath, [SCRIPT], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  child.on('exit', (code, signal) => (exited = code ?? signal ?? 'exited'));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  createInterface({ input: child.stdout! }).on('line', (line) => events.push(JSON.parse(line) as Event));
  await next((e) => e.event === 'ready', 'the receiver process to start');
  await initHashing();
});

afterAll(async () => {
  if (child && exited === null) {
    child.kill('SIGTERM');
    await waitFor(() => exited !== null, 10_000, 'the receiver process to exit').catch(() => child.kill('SIGKILL'));
  }
});

describe('a receiving process fed garbage over TCP', () => {
  it('before HELLO: every connection is closed, the process lives, the listener still takes the right sender', async () => {
    const { migrationId, port } = await listen();
    // The HELLO that used to kill an agent: a 60 KiB migration id of invalid UTF-8 (its ERROR reply
    // could not be encoded, inside the socket handler).
    const id = Buffer.concat([Buffer.from('{"version":1,"token":"x","migrationId":"'), Buffer.alloc(60 * 1024, 0xff), Buffer.from('"}')]);
    await feed(port, [frame(FrameType.HELLO, id.length, id)]);
    expect(exited).toBeNull();
    await fc.assert(
      fc.asyncProperty(garbledFrames, async (chunks) => {
        await feed(port, chunks);
        expect(exited).toBeNull();
      }),
      { numRuns: 80 },
    );
    expect((await waitFor(async () => ((await stats()).pendingConnections === 0 ? true : undefined), 10_000, 'no connection left waiting for HELLO'))).toBe(true);

    // The same listener, the real sender.
    const source = makeSourceVm(new FramePool(), 'vm-real', { memoryMib: MEMORY_MIB, workingSetMib: 1, kind: 'uniform', dirtyRatePagesPerSec: 2000 });
    try {
      source.start();
      const hello = helloFor(migrationId);
      const out = await new MigrationSender({ vm: source, migrationId, token: hello.token }).run(await connectOutgoing(`127.0.0.1:${port}`));
      const verified = await next((e) => e.event === 'verified' && e.migrationId === migrationId, 'the receiver to verify');
      expect(verified.digest).toBe(out.sourceDigest);
      out.commit();
    } finally {
      if (source.state !== 'stopped') source.stop();
    }
  });

  it('after a valid HELLO: the migration fails with a coded error, the process lives and frees the VM', async () => {
    await fc.assert(
      fc.asyncProperty(garbledFrames, async (chunks) => {
        const { migrationId, port } = await listen();
        await feed(port, [encodeHello(helloFor(migrationId)), ...chunks]);
        const failed = await next((e) => e.migrationId === migrationId && (e.event === 'failed' || e.event === 'verified'), `the outcome of ${migrationId}`);
        expect(failed.event).toBe('failed');
        expect(failed.code).toMatch(/^[A-Z_]+$/);
        expect(failed.code).not.toBe('UNCODED');
        expect(exited).toBeNull();
      }),
      { numRuns: 40 },
    );
    await waitFor(async () => ((await stats()).framesInUse === 0 ? true : undefined), 10_000, 'every incoming VM freed');
    expect(exited).toBeNull();
  });
});
