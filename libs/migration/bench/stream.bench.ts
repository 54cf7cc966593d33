/**
 * bench:stream — the engine's data connection against a raw loopback TCP socket, between two processes.
 * Sender process: a paused 1 GiB VM whose every page is random. Receiver process: an incoming VM.
 * Measured at the receiver: first byte → last byte of round 0's pages (engine; pages are applied as they
 * arrive, so this is the receiver's pace), first → last byte
 * (raw socket moving the same number of bytes). Interleaved, median of --reps (15: the raw baseline alone swings 1.4–3.4 GB/s between repetitions here, and 5-rep medians of the ratio scattered 0.72–1.43).
 * One JSON line per case on stdout (docs/benchmarks.md), logs on stderr.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { FramePool, type VirtualMachine } from '@vmm/emulator';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { MigrationReceiver, MigrationSender, connectOutgoing, listenForIncoming, type DataPlaneTls, type OutgoingResult } from '@vmm/migration';
import { identityOf, makeClusterCerts } from '@vmm/tls';
import { makeIncomingVm, makeSourceVm } from '@vmm/migration/testing/vm-fixture';
import { Worker, arg, collectGarbage, emit, log, median, round3, serve } from './bench-util.js';

const SELF = fileURLToPath(import.meta.url);

/** The data connection's mutual TLS as the agents run it: `owner`'s certificate, `peer` the node expected. */
async function dataTls(dir: string | undefined, owner: string, peer: string): Promise<DataPlaneTls | undefined> {
  if (!dir) return undefined;
  const read = (f: string) => readFile(path.join(dir, f));
  return {
    ca: await read('ca.pem'),
    cert: await read(`${owner}.pem`),
    key: await read(`${owner}-key.pem`),
    checkPeer: (cert) => (identityOf(cert)?.role === 'node' && (identityOf(cert) as { nodeId: string }).nodeId === peer ? undefined : 'not the peer'),
  };
}
const PAGE_RECORD = 4100;
const BATCH_PAGES = 256;

function round0WireBytes(pages: number): number {
  return pages * PAGE_RECORD + Math.ceil(pages / BATCH_PAGES) * 5 + 9; // records, PAGES headers, ROUND frame
}

async function receiverRole(): Promise<void> {
  const pool = new FramePool();
  let pending: Promise<unknown> | null = null;
  serve(async (msg) => {
    if (msg.cmd === 'listen-engine' || msg.cmd === 'listen-raw') collectGarbage();
    if (msg.cmd === 'listen-engine') {
      const memoryMib = msg.memoryMib as number;
      const vm = makeIncomingVm(pool, 'bench-vm', memoryMib);
      const listener = await listenForIncoming({ token: 'tok', migrationId: String(msg.id), tls: await dataTls(msg.certsDir as string | undefined, 'node-2', 'node-1') });
      const expected = round0WireBytes(memoryMib * 256);
      pending = (async () => {
        const { connection, hello } = await listener.accept;
        let seen = 0;
        let first = 0n;
        let last = 0n;
        let cpu0 = process.cpuUsage();
        let cpuMs = 0;
        const observe = (chunk: Buffer) => {
          if (seen === 0) {
            first = process.hrtime.bigint();
            cpu0 = process.cpuUsage();
          }
          seen += chunk.length;
          if (last === 0n && seen >= expected) {
            last = process.hrtime.bigint();
            const c = process.cpuUsage(cpu0);
            cpuMs = (c.user + c.system) / 1000;
          }
        };
        // Ahead of the receiver's own listener: the clock stops when the last page bytes arrive, before
        // the receiver digests round 0 (which the engine does while the source would still be running).
        connection.prependListener('data', observe);
        const result = await new MigrationReceiver({ vm, migrationId: String(msg.id), token: 'tok' }).run(connection, hello);
        connection.off('data', observe);
        result.abort();
        return { seconds: Number(last - first) / 1e9, bytes: expected, cpuMs, digestOk: result.sourceDigest === result.targetDigest };
      })();
      return { port: listener.port };
    }
    if (msg.cmd === 'listen-raw') {
      const bytes = msg.bytes as number;
      const server = net.createServer();
      server.listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      pending = new Promise((resolve) => {
        server.once('connection', (socket) => {
          let seen = 0;
          let first = 0n;
          let cpu0 = process.cpuUsage();
          socket.on('data', (c: Buffer) => {
            if (seen === 0) {
              first = process.hrtime.bigint();
              cpu0 = process.cpuUsage();
            }
            seen += c.length;
            if (seen >= bytes) {
              const seconds = Number(process.hrtime.bigint() - first) / 1e9;
              const cpu = process.cpuUsage(cpu0);
              socket.end();
              server.close();
              resolve({ seconds, bytes, cpuMs: (cpu.user + cpu.system) / 1000 });
            }
          });
        });
      });
      return { port: (server.address() as net.AddressInfo).port };
    }
    if (msg.cmd === 'result') return pending;
    throw new Error(`unknown command ${String(msg.cmd)}`);
  });
}

async function senderRole(): Promise<void> {
  let vm: VirtualMachine | null = null;
  const chunks = Array.from({ length: 8 }, () => randomBytes(BATCH_PAGES * PAGE_RECORD + 5));
  serve(async (msg) => {
    if (msg.cmd === 'prepare') {
      const memoryMib = msg.memoryMib as number;
      vm = makeSourceVm(new FramePool(), 'bench-vm', { memoryMib, workingSetMib: memoryMib, kind: 'idle', dirtyRatePagesPerSec: 0 });
      return {};
    }
    if (msg.cmd === 'send-engine' || msg.cmd === 'send-raw') collectGarbage();
    if (msg.cmd === 'send-engine') {
      const cpu0 = process.cpuUsage();
      const connection = await connectOutgoing(`127.0.0.1:${msg.port as number}`, { tls: await dataTls(msg.certsDir as string | undefined, 'node-1', 'node-2') });
      const result: OutgoingResult = await new MigrationSender({ vm: vm!, migrationId: String(msg.id), token: 'tok' }).run(connection);
      result.abort(); // keep the source for the next repetition
      const cpu = process.cpuUsage(cpu0);
      return { bytesSent: result.stats.bytesSent, maxBufferedBytes: result.stats.maxBufferedBytes, cpuMs: (cpu.user + cpu.system) / 1000 };
    }
    if (msg.cmd === 'send-raw') {
      const bytes = msg.bytes as number;
      const cpu0 = process.cpuUsage();
      const socket = net.connect({ host: '127.0.0.1', port: msg.port as number, noDelay: true });
      await new Promise((r) => socket.once('connect', r));
      let sent = 0;
      let i = 0;
      while (sent < bytes) {
        const c = chunks[i++ % chunks.length]!;
        const n = Math.min(c.length, bytes - sent);
        sent += n;
        if (!socket.write(n === c.length ? c : c.subarray(0, n))) await new Promise((r) => socket.once('drain', r));
      }
      await new Promise<void>((r) => socket.end(() => r()));
      const cpu = process.cpuUsage(cpu0);
      return { cpuMs: (cpu.user + cpu.system) / 1000 };
    }
    throw new Error(`unknown command ${String(msg.cmd)}`);
  });
}

async function main(): Promise<void> {
  let certsDir: string | undefined;
  const memoryMib = Number(arg('mib') ?? (arg('quick') !== undefined ? 256 : 1024));
  const reps = Number(arg('reps') ?? 15);
  const receiver = new Worker(SELF, 'receiver');
  const sender = new Worker(SELF, 'sender');
  try {
    log(`stream bench: ${memoryMib} MiB of random pages, ${reps} interleaved repetitions (engine, engine over mutual TLS, raw TCP)`);
    await sender.request({ cmd: 'prepare', memoryMib });
    certsDir = await mkdtemp(path.join(os.tmpdir(), 'vmm-bench-certs-'));
    await makeClusterCerts({ out: certsDir, nodes: ['node-1', 'node-2'] });
    const engineTls: number[] = [];
    const engine: number[] = [];
    const raw: number[] = [];
    let bytes = 0;
    let digestOk = true;
    for (let rep = 0; rep < reps; rep++) {
      const id = `bench-${rep}`;
      const { port } = await receiver.request<{ port: number }>({ cmd: 'listen-engine', memoryMib, id });
      const [res, sent] = await Promise.all([
        receiver.request<{ seconds: number; bytes: number; cpuMs: number; digestOk: boolean }>({ cmd: 'result' }),
        sender.request<{ bytesSent: number; maxBufferedBytes: number; cpuMs: number }>({ cmd: 'send-engine', port, id }),
      ]);
      bytes = res.bytes;
      digestOk &&= res.digestOk;
      engine.push(res.seconds);
      // CPU ms of each end (the receiver's over the timed stretch, the sender's over its whole run, digests
      // included): on a shared machine they show where the cost is when wall-clock rates are noisy.
      log(`rep ${rep} engine: ${round3(res.bytes / res.seconds / 1e9)} GB/s, max buffered ${sent.maxBufferedBytes} B, receiver cpu ${Math.round(res.cpuMs)} ms, sender cpu ${Math.round(sent.cpuMs)} ms`);
      const tlsPort = (await receiver.request<{ port: number }>({ cmd: 'listen-engine', memoryMib, id: `${id}-tls`, certsDir })).port;
      const [tlsRes] = await Promise.all([
        receiver.request<{ seconds: number; bytes: number; cpuMs: number; digestOk: boolean }>({ cmd: 'result' }),
        sender.request({ cmd: 'send-engine', port: tlsPort, id: `${id}-tls`, certsDir }),
      ]);
      digestOk &&= tlsRes.digestOk;
      engineTls.push(tlsRes.seconds);
      log(`rep ${rep} engine over TLS: ${round3(tlsRes.bytes / tlsRes.seconds / 1e9)} GB/s, receiver cpu ${Math.round(tlsRes.cpuMs)} ms`);
      const rawPort = (await receiver.request<{ port: number }>({ cmd: 'listen-raw', bytes })).port;
      const [rawRes, rawSent] = await Promise.all([
        receiver.request<{ seconds: number; cpuMs: number }>({ cmd: 'result' }),
        sender.request<{ cpuMs: number }>({ cmd: 'send-raw', port: rawPort, bytes }),
      ]);
      raw.push(rawRes.seconds);
      log(`rep ${rep} raw tcp: ${round3(bytes / rawRes.seconds / 1e9)} GB/s, receiver cpu ${Math.round(rawRes.cpuMs)} ms, sender cpu ${Math.round(rawSent.cpuMs)} ms`);
    }
    const seconds = median(engine);
    const rawSeconds = median(raw);
    const gbps = bytes / seconds / 1e9;
    const rawGbps = bytes / rawSeconds / 1e9;
    const rates = engine.map((s) => bytes / s / 1e9);
    emit({
      bench: 'stream',
      case: `${memoryMib}mib-random`,
      bytes,
      seconds: round3(seconds),
      gbps: round3(gbps),
      raw_tcp_gbps: round3(rawGbps),
      ratio: round3(gbps / rawGbps),
      reps,
      min: round3(Math.min(...rates)),
      max: round3(Math.max(...rates)),
      digest_ok: digestOk,
    });
    // The same bytes over the agents' mutual TLS (what a cluster runs unless --insecure).
    const tlsSeconds = median(engineTls);
    const tlsRates = engineTls.map((s) => bytes / s / 1e9);
    emit({
      bench: 'stream',
      case: `${memoryMib}mib-random-tls`,
      bytes,
      seconds: round3(tlsSeconds),
      gbps: round3(bytes / tlsSeconds / 1e9),
      raw_tcp_gbps: round3(rawGbps),
      ratio: round3(bytes / tlsSeconds / 1e9 / rawGbps),
      tls_over_plain: round3(seconds / tlsSeconds),
      reps,
      min: round3(Math.min(...tlsRates)),
      max: round3(Math.max(...tlsRates)),
      digest_ok: digestOk,
    });
  } finally {
    receiver.stop();
    sender.stop();
    if (certsDir) await rm(certsDir, { recursive: true, force: true });
  }
}

const role = arg('role');
if (role === 'receiver') void receiverRole();
else if (role === 'sender') void senderRole();
else
  main().catch((err) => {
    log(err instanceof Error ? err.stack : String(err));
    process.exitCode = 1;
  });
