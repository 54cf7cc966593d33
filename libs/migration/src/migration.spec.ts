import { afterEach, describe, expect, it } from 'vitest';
import { FramePool, initHashing, type VirtualMachine, type WorkloadKind } from '@vmm/emulator';
import { ConvergenceError, MigrationCancelledError, TokenMismatchError } from './errors.js';
import type { MigrationProgress } from './progress.js';
import { MigrationReceiver } from './receiver.js';
import { MigrationSender } from './sender.js';
import type { PartialMigrationPolicy } from './policy.js';
import { duplexPair } from './testing/duplex-pair.js';
import { makeIncomingVm, makeSourceVm } from './testing/vm-fixture.js';
import { encodeFrame, writeFrameHeader } from './wire/codec.js';
import { FrameType } from './wire/frame.js';
import { waitFor } from '../../../test/support/wait-for.js';

const vms: VirtualMachine[] = [];
afterEach(() => {
  for (const vm of vms.splice(0)) if (vm.state !== 'stopped') vm.stop();
});

function setup(kind: WorkloadKind, rate: number, memoryMib = 32, workingSetMib = 8) {
  const pool = new FramePool();
  const source = makeSourceVm(pool, 'vm-1', { memoryMib, workingSetMib, kind, dirtyRatePagesPerSec: rate });
  const target = makeIncomingVm(new FramePool(), 'vm-1', memoryMib);
  vms.push(source, target);
  source.start();
  return { source, target };
}

async function migrate(
  source: VirtualMachine,
  target: VirtualMachine,
  policy: PartialMigrationPolicy = {},
  extra: { senderSignal?: AbortSignal; receiverSignal?: AbortSignal; token?: string; delayMs?: number } = {},
) {
  const [a, b] = duplexPair({ delayMs: extra.delayMs });
  const progress: MigrationProgress[] = [];
  const sender = new MigrationSender({
    vm: source, migrationId: 'mig-1', token: extra.token ?? 'secret', policy, signal: extra.senderSignal, onProgress: (p) => progress.push(p),
  });
  const receiver = new MigrationReceiver({ vm: target, migrationId: 'mig-1', token: 'secret', signal: extra.receiverSignal });
  const [out, inc] = await Promise.allSettled([sender.run(a), receiver.run(b)]);
  return { out, inc, progress, sender };
}

describe('in-process migration', () => {
  it.each([
    ['idle', 0],
    ['uniform', 20_000],
    ['hotcold', 50_000],
  ] as [WorkloadKind, number][])('migrates a running VM (%s, %d pages/s) with equal digests', async (kind, rate) => {
    await initHashing();
    const { source, target } = setup(kind, rate);
    const { out, inc, progress } = await migrate(source, target);
    if (out.status === 'rejected') throw out.reason;
    if (inc.status === 'rejected') throw inc.reason;
    const o = out.value;
    expect(o.sourceDigest).toBe(o.targetDigest);
    expect(inc.value.targetDigest).toBe(o.sourceDigest);
    // The engine leaves both VMs paused: commit decides.
    expect(source.state).toBe('paused');
    expect(target.state).toBe('paused');
    expect(target.memory.digest()).toBe(source.memory.digest());
    expect(o.stats.rounds).toBeGreaterThanOrEqual(2);
    expect(o.pausedAtMs).toBeGreaterThan(0);
    expect(progress[0]).toMatchObject({ phase: 'PRECOPY', round: 0, pagesTotal: 32 * 256 });
    // Zero pages went as ranges: round 0 sent far fewer bytes than the VM size.
    expect(o.stats.bytesSent).toBeLessThan(32 * 1024 * 1024);
    expect(o.stats.pagesZero).toBeGreaterThanOrEqual(24 * 256);

    // The workload continues on the target exactly where it paused on the source.
    expect(target.writesTotal).toBe(source.writesTotal);
    expect(Buffer.compare(target.saveDeviceState(), source.saveDeviceState())).toBe(0);
    source.workload.step(5000);
    target.workload.step(5000);
    expect(target.memory.digest()).toBe(source.memory.digest());

    // The pause is reported when it happens (before the target verified), with its time.
    const pauses = progress.filter((p) => p.phase === 'STOP_AND_COPY');
    expect(pauses.length).toBe(2); // at the pause, then once ready
    expect(pauses[0]!.pausedAtMs).toBe(o.pausedAtMs);
    expect(pauses[0]!.round).toBe(o.stats.rounds - 1);
    expect(progress.indexOf(pauses[0]!)).toBe(progress.length - 2);
    expect(o.stats.expectedStopAndCopyMs).toBeGreaterThan(0);

    o.commit();
    const { resumedAtMs } = inc.value.commit();
    expect(resumedAtMs).toBeGreaterThanOrEqual(o.pausedAtMs);
    expect(source.state).toBe('stopped');
    expect(target.state).toBe('running');
  });

  it('migrates with XBZRLE and sends deltas', async () => {
    await initHashing();
    const { source, target } = setup('uniform', 50_000, 32, 4);
    const { out, inc, sender } = await migrate(source, target, { xbzrle: true, downtimeLimitMs: 50, maxBandwidthMibPerSec: 64 });
    if (out.status === 'rejected') throw out.reason;
    expect(inc.status).toBe('fulfilled');
    expect(out.value.sourceDigest).toBe(out.value.targetDigest);
    expect(out.value.stats.pagesXbzrle).toBeGreaterThan(0);
    // Settled, the sender keeps neither the stream nor its XBZRLE cache (#9: the agent keeps a settled
    // runner, and so its sender, for 10 minutes).
    expect((sender as unknown as { stream?: unknown }).stream).toBeUndefined();
  });

  it('rejects a wrong token before anything else and leaves the source running', async () => {
    await initHashing();
    const { source, target } = setup('uniform', 5000);
    const before = source.memory.residentPages;
    const { out, inc } = await migrate(source, target, {}, { token: 'wrong' });
    expect(inc.status === 'rejected' && inc.reason).toBeInstanceOf(TokenMismatchError);
    expect(out.status === 'rejected' && (out.reason as { code: string }).code).toBe('PEER_ERROR');
    expect(source.state).toBe('running');
    expect(source.memory.residentPages).toBe(before);
    expect(target.state).toBe('stopped'); // discarded
  });

  it('cancel mid-precopy: source keeps running, receiver discards', async () => {
    await initHashing();
    const { source, target } = setup('uniform', 150_000, 32, 16);
    const ctl = new AbortController();
    const writesBefore = source.writesTotal;
    const run = migrate(source, target, { maxBandwidthMibPerSec: 16, downtimeLimitMs: 1 }, { senderSignal: ctl.signal });
    // Cancel once pages arrive at the target, i.e. truly mid-precopy.
    await waitFor(() => target.memory.residentPages > 256, 10_000);
    ctl.abort('operator said stop');
    const { out, inc, sender } = await run;
    expect(out.status === 'rejected' && out.reason).toBeInstanceOf(MigrationCancelledError);
    expect(inc.status).toBe('rejected');
    expect(sender.currentPhase).toBe('CANCELLED');
    expect(source.state).toBe('running');
    expect(source.throttlePercent).toBe(0);
    expect(target.state).toBe('stopped');
    // Still running: the workload keeps writing after the cancel.
    const after = source.writesTotal;
    await new Promise((r) => setTimeout(r, 30));
    expect(source.writesTotal).toBeGreaterThan(after);
    expect(after).toBeGreaterThan(writesBefore);
  });

  it('cancel leaves an idle source untouched (same digest) and running', async () => {
    await initHashing();
    const { source, target } = setup('idle', 0, 32, 16);
    const digestBefore = source.memory.digest();
    const ctl = new AbortController();
    const run = migrate(source, target, { maxBandwidthMibPerSec: 8 }, { senderSignal: ctl.signal });
    await waitFor(() => target.memory.residentPages > 512, 10_000);
    ctl.abort();
    const { out } = await run;
    expect(out.status === 'rejected' && (out.reason as { code: string }).code).toBe('CANCELLED');
    expect(source.state).toBe('running');
    expect(source.memory.digest()).toBe(digestBefore);
  });

  it('cancel on the receiver side rolls the source back', async () => {
    await initHashing();
    const { source, target } = setup('uniform', 20_000, 32, 16);
    const ctl = new AbortController();
    const run = migrate(source, target, { maxBandwidthMibPerSec: 8 }, { receiverSignal: ctl.signal });
    await waitFor(() => target.memory.residentPages > 512, 10_000);
    ctl.abort('target node draining');
    const { out, inc } = await run;
    expect(inc.status === 'rejected' && inc.reason).toBeInstanceOf(MigrationCancelledError);
    expect(out.status === 'rejected' && out.reason).toMatchObject({ code: 'PEER_ERROR', peerCode: 'CANCELLED' });
    expect(source.state).toBe('running');
    expect(target.state).toBe('stopped');
  });

  it('abort after ready-to-commit resumes the source and discards the target', async () => {
    await initHashing();
    const { source, target } = setup('uniform', 5000);
    const { out, inc } = await migrate(source, target);
    if (out.status === 'rejected' || inc.status === 'rejected') throw new Error('migration failed');
    inc.value.abort();
    out.value.abort();
    expect(source.state).toBe('running');
    expect(target.state).toBe('stopped');
    expect(() => out.value.commit()).toThrow(/after abort/);
  });

  it('fails after max_rounds without auto-converge, rolls back', async () => {
    await initHashing();
    const { source, target } = setup('uniform', 50_000, 32, 16);
    const { out, inc, progress } = await migrate(source, target, { maxBandwidthMibPerSec: 32, maxRounds: 4, downtimeLimitMs: 20 });
    expect(out.status === 'rejected' && out.reason).toBeInstanceOf(ConvergenceError);
    expect((out as PromiseRejectedResult).reason.code).toBe('NOT_CONVERGED');
    expect((out as PromiseRejectedResult).reason.message).toMatch(/within max_rounds=4 .*downtime_limit_ms=20/);
    expect(progress.length).toBe(4);
    expect(inc.status).toBe('rejected');
    expect(source.state).toBe('running');
  });

  it('converges with auto-converge under the same bandwidth cap', async () => {
    await initHashing();
    const { source, target } = setup('uniform', 50_000, 32, 16);
    const { out, inc, progress } = await migrate(source, target, { maxBandwidthMibPerSec: 32, maxRounds: 30, downtimeLimitMs: 20, autoConverge: true });
    if (out.status === 'rejected') throw out.reason;
    expect(inc.status).toBe('fulfilled');
    expect(out.value.sourceDigest).toBe(out.value.targetDigest);
    expect(out.value.stats.throttlePercentMax).toBeGreaterThanOrEqual(20);
    expect(Math.max(...progress.map((p) => p.throttlePercent))).toBeGreaterThanOrEqual(20);
    // The target does not inherit the throttle.
    expect(target.throttlePercent).toBe(0);
  });

  it('bounds the bytes queued in the sender when the receiver is slow', async () => {
    await initHashing();
    const { source, target } = setup('idle', 0, 32, 24);
    const { out } = await migrate(source, target, {}, { delayMs: 2 });
    if (out.status === 'rejected') throw out.reason;
    expect(out.value.stats.bytesSent).toBeGreaterThan(24 * 1024 * 1024);
    // Ring of 6 batches of ~1 MiB at most, never the 24 MiB of the VM.
    expect(out.value.stats.maxBufferedBytes).toBeLessThanOrEqual(7 * 1024 * 1024);
  });

  it('counts the caller\'s switch-over overhead in the expected downtime', async () => {
    await initHashing();
    const { source, target } = setup('idle', 0);
    const [a, b] = duplexPair();
    const progress: MigrationProgress[] = [];
    const sender = new MigrationSender({ vm: source, migrationId: 'mig-1', token: 'secret', switchOverOverheadMs: 120, onProgress: (p) => progress.push(p) });
    const receiver = new MigrationReceiver({ vm: target, migrationId: 'mig-1', token: 'secret' });
    const [out] = await Promise.all([sender.run(a), receiver.run(b)]);
    expect(progress[0]!.expectedDowntimeMs).toBeGreaterThanOrEqual(120);
    expect(() => new MigrationSender({ vm: source, migrationId: 'm', token: 't', switchOverOverheadMs: -1 })).toThrow(/switchOverOverheadMs/);
    out.abort();
  });

  it('the receiver refuses a sender of a newer protocol version and discards the incoming VM', async () => {
    await initHashing();
    const target = makeIncomingVm(new FramePool(), 'vm-1', 4);
    vms.push(target);
    const [, b] = duplexPair();
    const hello = { version: 3, migrationId: 'mig-1', token: 'secret', pageCount: 4 * 256, memoryMib: 4, image: 'empty', vcpus: 2 };
    await expect(new MigrationReceiver({ vm: target, migrationId: 'mig-1', token: 'secret' }).run(b, hello)).rejects.toThrow(
      /sender speaks protocol versions 3\.\.3, this receiver 1\.\.2/,
    );
    expect(target.state).toBe('stopped');
  });

  it('a version-1 sender gets an empty HELLO_ACK, and a PAGE_RUN from it is a protocol error', async () => {
    await initHashing();
    const target = makeIncomingVm(new FramePool(), 'vm-1', 4);
    vms.push(target);
    const [a, b] = duplexPair();
    const acks: Buffer[] = [];
    a.on('data', (c: Buffer) => acks.push(c));
    const hello = { version: 1, migrationId: 'mig-1', token: 'secret', pageCount: 4 * 256, memoryMib: 4, image: 'empty', vcpus: 2 };
    const run = new MigrationReceiver({ vm: target, migrationId: 'mig-1', token: 'secret' }).run(b, hello);
    const pageRun = Buffer.alloc(5 + 4100);
    writeFrameHeader(pageRun, 0, FrameType.PAGE_RUN, 4100);
    a.write(pageRun);
    await expect(run).rejects.toThrow(/unexpected frame type PAGE_RUN/);
    expect(Buffer.concat(acks).subarray(0, 5)).toEqual(encodeFrame(FrameType.HELLO_ACK)); // header only: empty payload
    expect(target.state).toBe('stopped');
  });

  it('the receiver gives up on a silent sender after the completion timeout announced in HELLO', async () => {
    await initHashing();
    const target = makeIncomingVm(new FramePool(), 'vm-1', 4);
    vms.push(target);
    const [, b] = duplexPair();
    // A version-1 sender (no PAGE_RUN) is still accepted: the receiver waits for its pages.
    const hello = { version: 1, migrationId: 'mig-1', token: 'secret', pageCount: 4 * 256, memoryMib: 4, image: 'empty', vcpus: 2, completionTimeoutMs: 1 };
    const receiver = new MigrationReceiver({ vm: target, migrationId: 'mig-1', token: 'secret' });
    const started = Date.now();
    await expect(receiver.run(b, hello)).rejects.toMatchObject({ code: 'COMPLETION_TIMEOUT' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1);
    expect(target.state).toBe('stopped');
  });
});
