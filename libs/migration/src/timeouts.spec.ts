/**
 * The engine's bounds on waits: an idle data connection (CONNECTION_IDLE on both ends) and the source's
 * pause before the target verified (SWITCHOVER_TIMEOUT, source resumed). Short bounds stand in for the
 * defaults; nothing here times how fast anything is.
 */
import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { FramePool, initHashing, type VirtualMachine } from '@vmm/emulator';
import { ConnectionIdleError } from './errors.js';
import type { MigrationProgress } from './progress.js';
import { MigrationReceiver } from './receiver.js';
import { MigrationSender } from './sender.js';
import { duplexPair, linkPair } from './testing/duplex-pair.js';
import { makeIncomingVm, makeSourceVm } from './testing/vm-fixture.js';
import { waitFor } from '../../../test/support/wait-for.js';
import { FrameParser, encodeFrame, encodeRound, readU32 } from './wire/codec.js';
import { FrameType } from './wire/frame.js';

const vms: VirtualMachine[] = [];
afterEach(() => {
  for (const vm of vms.splice(0)) if (vm.state !== 'stopped') vm.stop();
});

function setup(memoryMib = 32, workingSetMib = 16, dirtyRatePagesPerSec = 5000) {
  const source = makeSourceVm(new FramePool(), 'vm-1', { memoryMib, workingSetMib, kind: dirtyRatePagesPerSec > 0 ? 'uniform' : 'idle', dirtyRatePagesPerSec });
  const target = makeIncomingVm(new FramePool(), 'vm-1', memoryMib);
  vms.push(source, target);
  source.start();
  return { source, target };
}

/**
 * A receiver built from the wire format that acknowledges HELLO and every round but never answers
 * COMPLETE: the source stays paused waiting for a VERIFIED that does not come.
 */
function neverVerifies(end: Duplex): { completes: () => number } {
  let completes = 0;
  const parser = new FrameParser(
    {
      onPage: () => undefined,
      onFrame: (type, payload) => {
        if (type === FrameType.HELLO) end.write(encodeFrame(FrameType.HELLO_ACK));
        if (type === FrameType.ROUND && readU32(payload, 0) > 0) end.write(encodeRound(readU32(payload, 0), FrameType.ROUND_ACK));
        if (type === FrameType.COMPLETE) completes++;
      },
    },
    new Set([FrameType.HELLO, FrameType.PAGES, FrameType.ZERO, FrameType.XBZRLE, FrameType.ROUND, FrameType.DEVICE_STATE, FrameType.COMPLETE, FrameType.ERROR]),
  );
  end.on('data', (c: Buffer) => parser.push(c));
  end.on('error', () => undefined);
  return { completes: () => completes };
}

describe('idle data connection', () => {
  it('a link that goes dead mid-precopy ends the migration on both ends with CONNECTION_IDLE; the source runs on', async () => {
    await initHashing();
    const { source, target } = setup();
    const link = linkPair();
    const sender = new MigrationSender({ vm: source, migrationId: 'mig-1', token: 't', policy: { maxBandwidthMibPerSec: 8 }, idleTimeoutMs: 300 });
    const receiver = new MigrationReceiver({ vm: target, migrationId: 'mig-1', token: 't', idleTimeoutMs: 300 });
    const run = Promise.allSettled([sender.run(link.a), receiver.run(link.b)]);
    await waitFor(() => target.memory.residentPages > 256, 10_000); // truly mid-precopy
    link.cut(); // no bytes either way from now on, and neither end hears of it
    const [out, inc] = await run;
    expect(out.status === 'rejected' && out.reason).toBeInstanceOf(ConnectionIdleError);
    expect(inc.status === 'rejected' && inc.reason).toBeInstanceOf(ConnectionIdleError);
    expect((out as PromiseRejectedResult).reason).toMatchObject({ code: 'CONNECTION_IDLE', idleTimeoutMs: 300 });
    expect(source.state).toBe('running');
    expect(target.state).toBe('stopped');
  });

  it('the end that notices tells the other, which fails with CONNECTION_IDLE too', async () => {
    await initHashing();
    const { source, target } = setup();
    const link = linkPair();
    // Only the receiver watches closely; the sender's own bound is far away.
    const sender = new MigrationSender({ vm: source, migrationId: 'mig-1', token: 't', policy: { maxBandwidthMibPerSec: 8 }, idleTimeoutMs: 60_000 });
    const receiver = new MigrationReceiver({ vm: target, migrationId: 'mig-1', token: 't', idleTimeoutMs: 300 });
    const run = Promise.allSettled([sender.run(link.a), receiver.run(link.b)]);
    await waitFor(() => target.memory.residentPages > 256, 10_000);
    link.cut('a→b'); // the pages stop arriving; the receiver's ERROR still gets through
    const [out, inc] = await run;
    expect((inc as PromiseRejectedResult).reason).toMatchObject({ code: 'CONNECTION_IDLE', idleTimeoutMs: 300 });
    expect((out as PromiseRejectedResult).reason).toMatchObject({ code: 'CONNECTION_IDLE', idleTimeoutMs: null });
    expect(source.state).toBe('running');
  });

  it('a slow but live link is not idle (at the lowest bandwidth a policy takes, 1 MiB/s)', async () => {
    await initHashing();
    const { source, target } = setup(8, 3, 0);
    const [a, b] = duplexPair({ delayMs: 1 });
    const sender = new MigrationSender({ vm: source, migrationId: 'mig-1', token: 't', policy: { maxBandwidthMibPerSec: 1 }, idleTimeoutMs: 3000 });
    const receiver = new MigrationReceiver({ vm: target, migrationId: 'mig-1', token: 't', idleTimeoutMs: 3000 });
    const [out, inc] = await Promise.all([sender.run(a), receiver.run(b)]);
    expect(inc.targetDigest).toBe(out.sourceDigest);
    out.abort();
    inc.abort();
  });

  it('refuses idle and switch-over bounds out of range', () => {
    const { source } = setup(4, 1);
    expect(() => new MigrationSender({ vm: source, migrationId: 'm', token: 't', idleTimeoutMs: -1 })).toThrow(/idleTimeoutMs/);
    expect(() => new MigrationSender({ vm: source, migrationId: 'm', token: 't', switchOverTimeoutMs: 0 })).toThrow(/switchOverTimeoutMs/);
    expect(() => new MigrationSender({ vm: source, migrationId: 'm', token: 't', switchOverTimeoutMs: 2 ** 31 })).toThrow(/switchOverTimeoutMs/);
    expect(() => new MigrationReceiver({ vm: source, migrationId: 'm', token: 't', idleTimeoutMs: 1.5 })).toThrow(/idleTimeoutMs/);
  });
});

describe('bound on the pause before VERIFIED', () => {
  it('rolls back when the target never verifies: SWITCHOVER_TIMEOUT, the source resumes', async () => {
    await initHashing();
    const { source } = setup(8, 2);
    const [a, b] = duplexPair();
    const fake = neverVerifies(b);
    const progress: MigrationProgress[] = [];
    const sender = new MigrationSender({ vm: source, migrationId: 'mig-1', token: 't', switchOverTimeoutMs: 200, onProgress: (p) => progress.push(p) });
    await expect(sender.run(a)).rejects.toMatchObject({ code: 'SWITCHOVER_TIMEOUT', switchOverTimeoutMs: 200 });
    expect(fake.completes()).toBe(1); // it was paused and waiting for VERIFIED
    expect(progress.some((p) => p.phase === 'STOP_AND_COPY' && p.pausedAtMs !== undefined)).toBe(true);
    expect(source.state).toBe('running');
    expect(sender.currentPhase).toBe('FAILED');
    const writes = source.writesTotal;
    await waitFor(() => source.writesTotal > writes, 5000); // really running again
  });

  it('once the target verified, the source stays paused past the bound: the verdict is the controller\'s', async () => {
    await initHashing();
    const { source, target } = setup(8, 2);
    const [a, b] = duplexPair();
    // A bound the verification of 8 pages meets even on a loaded machine (20 ms did not, under CI load).
    const BOUND_MS = 2_000;
    const sender = new MigrationSender({ vm: source, migrationId: 'mig-1', token: 't', switchOverTimeoutMs: BOUND_MS });
    const receiver = new MigrationReceiver({ vm: target, migrationId: 'mig-1', token: 't' });
    const [out, inc] = await Promise.all([sender.run(a), receiver.run(b)]);
    await new Promise((r) => setTimeout(r, BOUND_MS + 500)); // past the bound: nothing may resume it
    expect(source.state).toBe('paused');
    out.commit();
    inc.commit();
    expect(source.state).toBe('stopped');
  });
});
