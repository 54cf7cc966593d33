/**
 * UpdateMigration in the engine (MigrationSender.update): a new downtime limit and bandwidth from the
 * next round, force_complete switching over at the next decision whatever the prediction.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FramePool, initHashing, type VirtualMachine } from '@vmm/emulator';
import { InvalidPolicyError, MigrationStateError } from './errors.js';
import { applyPolicyUpdate, checkPolicyUpdate, resolvePolicy, type PartialMigrationPolicy, type PolicyUpdate } from './policy.js';
import type { MigrationProgress } from './progress.js';
import { MigrationReceiver } from './receiver.js';
import { MigrationSender } from './sender.js';
import { decideRound, type RoundFacts } from './switch-over.js';
import { duplexPair } from './testing/duplex-pair.js';
import { makeIncomingVm, makeSourceVm } from './testing/vm-fixture.js';

const MIB = 1024 * 1024;
const vms: VirtualMachine[] = [];
afterEach(() => {
  for (const vm of vms.splice(0)) if (vm.state !== 'stopped') vm.stop();
});

/** A busy VM (uniform writes over 16 MiB at 50,000 pages/s) that does not converge under a 1 ms limit. */
function busyPair() {
  const source = makeSourceVm(new FramePool(), 'vm-1', { memoryMib: 32, workingSetMib: 16, kind: 'uniform', dirtyRatePagesPerSec: 50_000 });
  const target = makeIncomingVm(new FramePool(), 'vm-1', 32);
  vms.push(source, target);
  source.start();
  return { source, target };
}

/** Runs a migration; `onRound` sees every PRECOPY progress message with the sender (to update it). */
async function migrate(policy: PartialMigrationPolicy, onRound: (p: MigrationProgress, sender: MigrationSender) => void) {
  await initHashing();
  const { source, target } = busyPair();
  const [a, b] = duplexPair();
  const progress: MigrationProgress[] = [];
  const sender: MigrationSender = new MigrationSender({
    vm: source,
    migrationId: 'mig-upd',
    token: 'secret-token',
    policy,
    onProgress: (p) => {
      progress.push(p);
      if (p.phase === 'PRECOPY') onRound(p, sender);
    },
  });
  const receiver = new MigrationReceiver({ vm: target, migrationId: 'mig-upd', token: 'secret-token' });
  const [out, inc] = await Promise.allSettled([sender.run(a), receiver.run(b)]);
  return { out, inc, progress, sender, source, target };
}

const facts = (over: Partial<RoundFacts> = {}): RoundFacts => ({
  dirtyPages: 10_000,
  pagesPerSec: 10_000,
  downtimeLimitMs: 1,
  digestWalkMs: 2,
  hashMsPerPage: 0.001,
  switchOverOverheadMs: 5,
  roundsDone: 3,
  maxRounds: 30,
  ...over,
});

describe('switch-over decision with force_complete', () => {
  it.each([
    ['continues without force', facts(), 'continue'],
    ['switches over when forced', facts({ forceComplete: true }), 'switch-over'],
    ['gives up at max_rounds without force', facts({ roundsDone: 30 }), 'give-up'],
    ['switches over at max_rounds when forced', facts({ roundsDone: 30, forceComplete: true }), 'switch-over'],
  ] as const)('%s', (_name, f, decision) => {
    const verdict = decideRound(f);
    expect(verdict.decision).toBe(decision);
    // Forced: the prediction is still reported in full (the copy, both digests, the overhead).
    if (f.forceComplete) expect(verdict.expectedStopAndCopyMs).toBeGreaterThan(1000);
  });
});

describe('checkPolicyUpdate', () => {
  it.each([
    [{ downtimeLimitMs: 0 }, 'downtime_limit_ms'],
    [{ downtimeLimitMs: 60_001 }, 'downtime_limit_ms'],
    [{ downtimeLimitMs: 1.5 }, 'downtime_limit_ms'],
    [{ maxBandwidthMibPerSec: -1 }, 'max_bandwidth_mib_per_sec'],
    [{ maxBandwidthMibPerSec: 0.5 }, 'max_bandwidth_mib_per_sec'],
    [{ maxBandwidthMibPerSec: Number.NaN }, 'max_bandwidth_mib_per_sec'],
  ] as [PolicyUpdate, string][])('refuses %o naming %s', (update, field) => {
    expect(() => checkPolicyUpdate(update)).toThrow(InvalidPolicyError);
    try {
      checkPolicyUpdate(update);
    } catch (error) {
      expect((error as InvalidPolicyError).protoField).toBe(field);
    }
  });

  it('keeps unset fields and takes 0 as unlimited bandwidth', () => {
    const policy = resolvePolicy({ downtimeLimitMs: 5, maxBandwidthMibPerSec: 64 }, 32 * MIB);
    expect(applyPolicyUpdate(policy, checkPolicyUpdate({ maxBandwidthMibPerSec: 0 }))).toMatchObject({ downtimeLimitMs: 5, maxBandwidthMibPerSec: 0 });
    expect(applyPolicyUpdate(policy, checkPolicyUpdate({ downtimeLimitMs: null, forceComplete: true }))).toEqual(policy);
  });
});

describe('MigrationSender.update', () => {
  it('force_complete completes a migration that would not converge under its limit', async () => {
    let forcedAt = -1;
    const { out, inc, progress, source, target } = await migrate({ downtimeLimitMs: 1, maxRounds: 10_000, maxBandwidthMibPerSec: 64 }, (p, sender) => {
      if (p.round === 2 && forcedAt < 0) {
        forcedAt = p.round;
        sender.update({ forceComplete: true });
      }
    });
    if (out.status === 'rejected') throw out.reason;
    if (inc.status === 'rejected') throw inc.reason;
    expect(out.value.sourceDigest).toBe(out.value.targetDigest);
    expect(target.memory.digest()).toBe(source.memory.digest());
    // The round after the update switched over: nothing past round 3 was sent under pre-copy.
    const rounds = progress.filter((p) => p.phase === 'PRECOPY').map((p) => p.round);
    expect(Math.max(...rounds)).toBe(forcedAt + 1);
    // The prediction never fitted 1 ms: only the force switched over.
    expect(progress.filter((p) => p.phase === 'PRECOPY').every((p) => p.expectedDowntimeMs > 1)).toBe(true);
  });

  it('a raised downtime limit lets a migration that would not converge converge', async () => {
    const { out, progress } = await migrate({ downtimeLimitMs: 1, maxRounds: 10_000, maxBandwidthMibPerSec: 64 }, (p, sender) => {
      if (p.round === 2) sender.update({ downtimeLimitMs: 60_000 });
    });
    if (out.status === 'rejected') throw out.reason;
    expect(out.value.sourceDigest).toBe(out.value.targetDigest);
    expect(out.value.policy.downtimeLimitMs).toBe(60_000);
    const rounds = progress.filter((p) => p.phase === 'PRECOPY').map((p) => p.round);
    expect(Math.max(...rounds)).toBe(3);
  });

  it('a new bandwidth limit shows in the throughput from the next rounds', async () => {
    const seen: MigrationProgress[] = [];
    const { out } = await migrate({ downtimeLimitMs: 1, maxRounds: 10_000, maxBandwidthMibPerSec: 64 }, (p, sender) => {
      seen.push(p);
      if (p.round === 1) sender.update({ maxBandwidthMibPerSec: 16 });
      if (p.round === 2) sender.update({ forceComplete: true });
    });
    if (out.status === 'rejected') throw out.reason;
    const before = seen.find((p) => p.round === 1)!.throughputBytesPerSec;
    const after = seen.find((p) => p.round === 2)!.throughputBytesPerSec;
    expect(before).toBeGreaterThan(24 * MIB);
    expect(after).toBeLessThanOrEqual(16 * MIB * 1.05);
    expect(out.value.policy.maxBandwidthMibPerSec).toBe(16);
  });

  it('refuses a bad value and changes nothing; refuses after the switch-over', async () => {
    let refused: unknown;
    const { out, sender } = await migrate({ downtimeLimitMs: 1, maxRounds: 10_000, maxBandwidthMibPerSec: 64 }, (p, s) => {
      if (p.round !== 1) return;
      try {
        s.update({ downtimeLimitMs: 0, forceComplete: true });
      } catch (error) {
        refused = error;
        s.update({ forceComplete: true });
      }
    });
    if (out.status === 'rejected') throw out.reason;
    expect(refused).toBeInstanceOf(InvalidPolicyError);
    expect(out.value.policy.downtimeLimitMs).toBe(1);
    expect(() => sender.update({ forceComplete: true })).toThrow(MigrationStateError);
  });
});
