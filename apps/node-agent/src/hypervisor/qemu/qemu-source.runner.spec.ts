import { EventEmitter } from 'node:events';
import type { MigrationProgress } from '@vmm/migration';
import type { QemuDriver } from '@vmm/qemu';
import { describe, expect, it } from 'vitest';
import { waitFor } from '../../../../../test/support/wait-for.js';
import type { OutgoingState } from '../../migration/source.runner.js';
import { silentLogger } from '../../testing/fixtures.js';
import { QemuSourceRunner } from './qemu-source.runner.js';
import { QemuVm } from './qemu-vm.js';
import { listenVerifyChannel } from './verify-channel.js';

// The source end of a QEMU migration around its hold at pre-switchover, with a fake QEMU migration
// (the driver's OutgoingMigration) and the real verify channel to a target end played here.

const TOKEN = 'token-0123456789';

/** QEMU's side as the runner sees it: held at the gate until continueSwitchover(). */
class FakeOutgoing extends EventEmitter {
  state = 'precopy';
  readonly calls: string[] = [];
  private openGate: (p: MigrationProgress) => void = () => undefined;
  private readonly gate = new Promise<MigrationProgress>((resolve) => (this.openGate = resolve));

  reachGate(): void {
    this.state = 'switchover-ready';
    this.openGate({ migrationId: 'm', phase: 'STOP_AND_COPY', round: 3, pagesTotal: 256, pagesSent: 300, bytesSent: 1_228_800, dirtyPagesRemaining: 4, dirtyRatePagesPerSec: 10, throughputBytesPerSec: 1e8, expectedDowntimeMs: 2, throttlePercent: 0, pausedAtMs: Date.now() });
  }
  switchoverReady(): Promise<MigrationProgress> {
    return this.gate;
  }
  async continueSwitchover() {
    this.calls.push('continue');
    this.state = 'completed';
    return { totalTimeMs: 10, downtimeMs: 5, gateHeldMs: 1, progress: await this.gate };
  }
  async cancel(): Promise<void> {
    this.calls.push('cancel');
    if (this.state === 'failed') return;
    this.state = 'cancelled';
    this.markSettled('cancelled');
  }
  async update(): Promise<void> {}
  private markSettled: (state: string) => void = () => undefined;
  private readonly done = new Promise<string>((resolve) => (this.markSettled = resolve));
  settled(): Promise<string> {
    return this.done;
  }
  /** QEMU's migration failed (its target went away). */
  fail(): void {
    this.markSettled('failed');
  }
}

async function setup(holdMs: number, gateSwitchover = true) {
  const out = new FakeOutgoing();
  const resumed: string[] = [];
  const driver = {
    startOutgoing: async () => out,
    digest: async () => ({ digest: 'same', pages: 256, dumpMs: 1, hashMs: 1 }),
    resume: async (id: string) => void resumed.push(id),
    pause: async () => undefined,
  } as unknown as QemuDriver;
  const vm = new QemuVm('vm-1', driver, 1, 'running');
  const listener = await listenVerifyChannel('127.0.0.1', 'm', TOKEN, 5_000);
  // The target end: gives QEMU's port, answers the digest.
  void listener.accepted.then(async (channel) => {
    channel.send({ type: 'welcome', qemuPort: 1 });
    const asked = await channel.next(10_000).catch(() => undefined);
    if (asked?.type === 'digest') channel.send({ type: 'digest', digest: 'same', dumpMs: 1, hashMs: 1 });
  });
  const progress: MigrationProgress[] = [];
  const states: OutgoingState[] = [];
  const runner = new QemuSourceRunner(driver, vm, {
    migrationId: 'm',
    entry: undefined as never,
    targetDataAddress: `127.0.0.1:${listener.port}`,
    token: TOKEN,
    policy: {},
    log: silentLogger,
    gateSwitchover,
    switchoverHoldMs: holdMs,
    onProgress: (p) => progress.push(p),
    onState: (s) => states.push(s),
  });
  const run = runner.run();
  await waitFor(() => out.listenerCount('progress') > 0, 5_000, 'the QEMU migration to start');
  const held = async () => {
    out.reachGate();
    await waitFor(() => progress.some((p) => p.phase === 'STOP_AND_COPY'), 5_000, 'STOP_AND_COPY');
  };
  return { out, vm, runner, run, progress, states, resumed, held, close: () => listener.close() };
}

describe('a QEMU source at pre-switchover', () => {
  it('holds its stopped guest until ContinueSwitchover, then completes with the digests (idempotent continue)', async () => {
    const t = await setup(5_000);
    try {
      expect(() => t.runner.continueSwitchover()).toThrow(/not holding/);
      await t.held();
      await waitFor(() => t.progress.some((p) => p.awaitingSwitchover), 5_000, 'the held STOP_AND_COPY');
      const stop = t.progress.find((p) => p.phase === 'STOP_AND_COPY')!;
      expect(stop).toMatchObject({ awaitingSwitchover: true, switchoverHoldMs: 5_000 });
      expect(t.vm.state).toBe('paused');
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(t.out.calls).toEqual([]);
      t.runner.continueSwitchover();
      t.runner.continueSwitchover();
      await t.run;
      expect(t.out.calls).toEqual(['continue']);
      expect(t.runner.state).toBe('ready');
      expect(t.runner.result).toMatchObject({ sourceDigest: 'same', targetDigest: 'same' });
    } finally {
      t.close();
    }
  });

  it('QEMU failing while held ends the hold at once: CONNECTION_LOST, the guest resumed', async () => {
    const t = await setup(60_000);
    try {
      await t.held();
      t.out.state = 'failed';
      t.out.fail();
      await t.run;
      expect(t.runner.state).toBe('rolled-back');
      expect(t.runner.error).toMatchObject({ code: 'CONNECTION_LOST' });
      expect(t.out.calls).not.toContain('continue');
      await waitFor(() => t.resumed.length === 1, 2_000, 'the guest resumed');
    } finally {
      t.close();
    }
  });

  it('without gate_switchover (a controller that predates ContinueSwitchover) it switches over on its own', async () => {
    const t = await setup(5_000, false);
    try {
      await t.held();
      await t.run;
      expect(t.progress.find((p) => p.phase === 'STOP_AND_COPY')?.awaitingSwitchover).toBeUndefined();
      expect(t.out.calls).toEqual(['continue']);
      expect(t.runner.state).toBe('ready');
    } finally {
      t.close();
    }
  });

  it('gives up after its hold without an answer: SWITCHOVER_TIMEOUT, QEMU cancelled, the guest resumed', async () => {
    const t = await setup(150);
    try {
      await t.held();
      await t.run;
      expect(t.runner.state).toBe('rolled-back');
      expect(t.runner.error).toMatchObject({ code: 'SWITCHOVER_TIMEOUT' });
      expect(t.out.calls).toEqual(['cancel']);
      await waitFor(() => t.resumed.length === 1, 2_000, 'the guest resumed');
      expect(t.vm.state).toBe('running');
      expect(() => t.runner.continueSwitchover()).toThrow(/rolled-back/);
    } finally {
      t.close();
    }
  });

  it('an abort while held rolls back at once: CANCELLED, QEMU cancelled, the guest resumed', async () => {
    const t = await setup(60_000);
    try {
      await t.held();
      t.runner.abort('the StartOutgoing call was cancelled');
      await t.run;
      expect(t.runner.state).toBe('rolled-back');
      expect(t.runner.error).toMatchObject({ code: 'CANCELLED' });
      expect(t.out.calls).toContain('cancel');
      expect(t.out.calls).not.toContain('continue');
      await waitFor(() => t.resumed.length === 1, 2_000, 'the guest resumed');
    } finally {
      t.close();
    }
  });
});
