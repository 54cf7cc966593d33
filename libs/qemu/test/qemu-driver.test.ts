/**
 * The QEMU driver against real qemu-system-x86_64 processes under TCG, migrating over loopback.
 * Slow (each boot takes seconds of TCG): few, focused tests that share two drivers ("node A" and
 * "node B", each its own state directory) and one guest that moves between them. Skipped, with the
 * reason, only when QEMU or the guest image is missing (scripts/ensure-qemu.sh, build-guest-image.sh).
 */
import { mkdtemp, readFile, rm, mkdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FramePool, GuestMemory, hashString32, imageTemplate, initHashing, loadImage, pageHash, PAGE_SIZE, VcpuWorkload } from '@vmm/emulator';
import type { MigrationProgress } from '@vmm/migration';
import { QemuDriver, qemuUnavailableReason, type GuestSpec } from '../src/index.js';
import { isProcessAlive } from '../src/guest/proc-info.js';
import { waitFor } from '../../../test/support/wait-for.js';

const reason = qemuUnavailableReason();
const BOOT_MS = 180_000;
const VM = 'vm-qemu-1';
const RATE = 2000;
const spec: GuestSpec = {
  vmId: VM,
  memoryMib: 256,
  vcpus: 1,
  image: 'debian-12',
  workload: { kind: 'uniform', dirtyRatePagesPerSec: RATE, workingSetPages: 32 * 256, seed: 1 },
};

describe.skipIf(reason !== null)(`QEMU driver, real QEMU under TCG${reason ? ` (skipped: ${reason})` : ''}`, () => {
  let root: string;
  let a: QemuDriver;
  let b: QemuDriver;
  const pids = new Set<number>();
  const drivers: QemuDriver[] = [];

  /** The guest's write counter, as its console last reported it. */
  const writes = async (d: QemuDriver) => (await d.stats(VM)).writesTotal ?? -1;
  const track = async (d: QemuDriver) => pids.add((await d.status(VM)).pid);
  /** Waits until the guest reports more writes than `than`: its vCPU runs. */
  const writesPast = (d: QemuDriver, than: number) =>
    waitFor(async () => {
      const w = await writes(d);
      return w > than ? w : undefined;
    }, 60_000, `the guest's counter past ${than}`);

  beforeAll(async () => {
    await initHashing();
    root = await mkdtemp(path.join(os.tmpdir(), 'vmm-qemu-'));
    a = await QemuDriver.open({ stateDir: path.join(root, 'a'), bootTimeoutMs: BOOT_MS }); // accel: auto, probed
    b = await QemuDriver.open({ stateDir: path.join(root, 'b'), accel: a.accel, bootTimeoutMs: BOOT_MS });
    drivers.push(a, b);
  }, 240_000);

  afterAll(async () => {
    for (const d of drivers) await d.destroyAll().catch(() => {});
    for (const pid of pids) if (isProcessAlive(pid)) process.kill(pid, 'SIGKILL');
    if (root) await rm(root, { recursive: true, force: true });
  }, 60_000);

  it('boots a 256 MiB guest whose memory holds the emulator image byte for byte, and a busy workload', async () => {
    await a.create(spec);
    await track(a);
    expect((await a.status(VM)).state).toBe('running');
    const first = await writesPast(a, 0);
    await writesPast(a, first);
    const stats = await a.stats(VM);
    expect(stats.residentBytes).toBeGreaterThan(64 * 1024 * 1024); // image + working set are really there

    // Stop the guest and compare its RAM with the emulator's template, page by page (by hash): every
    // template page the workload cannot have written yet must be in guest memory, unchanged.
    await a.pause(VM);
    const printed = await writes(a);
    const dump = path.join('/dev/shm', `vmm-qemu-test-${process.pid}.ram`);
    try {
      await a.dumpRam(VM, dump);
      const ram = await readFile(dump);
      const inGuest = new Set<bigint>();
      for (let at = 0; at < ram.length; at += PAGE_SIZE) inGuest.add(pageHash(ram.subarray(at, at + PAGE_SIZE)));
      // The emulator's workload with the guest's seed and salt: the pages the first writes hit (the
      // console lags the real counter by up to one report, 200 ms: bound it by 2 s of writes).
      const t = imageTemplate(spec.image);
      const mem = new GuestMemory(new FramePool(), t.spec.pages);
      const load = new VcpuWorkload(mem, spec.workload, hashString32(VM));
      const dirty = mem.createDirtyLog();
      load.step(printed + 2 * RATE);
      const touched = dirty.sync();
      let checked = 0;
      let missing = 0;
      for (let page = 0; page < t.spec.pages; page++) {
        const slot = t.slotOf[page];
        if (slot === -1 || (touched[page >>> 5] & (1 << (page & 31))) !== 0) continue;
        checked++;
        if (!inGuest.has(pageHash(t.data.subarray(slot * PAGE_SIZE, (slot + 1) * PAGE_SIZE)))) missing++;
      }
      expect(checked).toBeGreaterThan(8000); // most of debian-12's 13k non-zero pages
      expect(missing).toBe(0);
      // …and the pages the workload did write hold what the emulator's workload writes there.
      loadImage(mem, spec.image);
      const emulated = new GuestMemory(new FramePool(), t.spec.pages);
      loadImage(emulated, spec.image);
      new VcpuWorkload(emulated, spec.workload, hashString32(VM)).step(Math.max(0, printed - 1));
      const probe = new Uint8Array(PAGE_SIZE);
      let writtenFound = 0;
      for (let page = 0, seen = 0; page < t.spec.pages && seen < 200; page++) {
        if ((touched[page >>> 5] & (1 << (page & 31))) === 0) continue;
        seen++;
        emulated.readPage(page, probe);
        // A page last written after the first `printed - 1` writes differs; most pages were not.
        if (inGuest.has(pageHash(probe))) writtenFound++;
      }
      expect(writtenFound).toBeGreaterThan(100);
    } finally {
      await rm(dump, { force: true });
    }
  });

  it('pause stops the write counter and resume continues it', async () => {
    // Paused by the test before: the counter must stay where it is while QEMU is stopped.
    expect((await a.status(VM)).state).toBe('paused');
    const paused = await writes(a);
    await delay(1_000); // several report periods (200 ms) in which a running guest would print
    expect(await writes(a)).toBe(paused);
    await a.resume(VM);
    expect((await a.status(VM)).state).toBe('running');
    await writesPast(a, paused);
  });

  it('measures the dirty rate by page sampling (pages/s) and resident memory', async () => {
    const rate = await a.measureDirtyRate(VM, 1);
    expect(rate).toBeGreaterThan(0);
    expect(rate).toBeLessThan(RATE * 4);
    expect((await a.stats(VM)).dirtyRatePagesPerSec).toBe(rate);
  });

  it('migrates A → B over loopback (2 multifd channels): gate at pre-switchover, digests agree, target continues the counter', async () => {
    const policy = { downtimeLimitMs: 300, multifdChannels: 2 };
    const target = await b.prepareIncoming(spec, { host: '127.0.0.1', policy });
    await track(b);
    expect(target.port).toBeGreaterThan(0);
    expect((await b.status(VM)).state).toBe('incoming');
    const progress: MigrationProgress[] = [];
    const out = await a.startOutgoing(VM, { migrationId: 'mig-1', host: target.host, port: target.port, policy });
    // The policy reached QEMU at both ends: multifd on, two channels, the gate on.
    for (const end of [a, b]) {
      const { capabilities, parameters } = await end.migrationSettings(VM);
      expect(capabilities).toMatchObject({ multifd: true, 'pause-before-switchover': true, xbzrle: false });
      expect(parameters['multifd-channels']).toBe(2);
    }
    out.on('progress', (p: MigrationProgress) => progress.push(p));
    const atGate = await out.switchoverReady();
    expect(out.state).toBe('switchover-ready');
    expect(atGate.phase).toBe('STOP_AND_COPY');
    expect(atGate.round).toBeGreaterThanOrEqual(1);
    expect((await a.status(VM)).state).toBe('migrating'); // the source is stopped, waiting for the gate
    const atGateWrites = await writes(a);
    await delay(500); // the gate holds: nothing moves on either end until continueSwitchover
    expect(out.state).toBe('switchover-ready');
    expect(target.state).toBe('listening');
    const done = await out.continueSwitchover();
    expect(done.gateHeldMs).toBeGreaterThanOrEqual(500);
    await target.received(30_000);
    expect((await b.status(VM)).state).toBe('paused');
    const [sd, td] = await Promise.all([a.digest(VM), b.digest(VM)]);
    expect(sd.pages).toBe(256 * 256);
    expect(td.digest).toBe(sd.digest);
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.at(-1)!.bytesSent).toBeGreaterThan(32 * 1024 * 1024);
    await b.commitIncoming(VM);
    await a.delete(VM);
    expect((await b.status(VM)).state).toBe('running');
    expect(a.list()).toEqual([]);
    await writesPast(b, atGateWrites); // the workload continues where the source stopped
  });

  /** A slow migration B → A (8 MiB/s: the guest's ~90 MiB take seconds), started and in pre-copy. */
  async function slowMigrationBtoA(migrationId: string) {
    const target = await a.prepareIncoming(spec);
    await track(a);
    const out = await b.startOutgoing(VM, { migrationId, host: target.host, port: target.port, policy: { maxBandwidthMibPerSec: 8 } });
    await waitFor(async () => (out.state === 'precopy' && out.progress.bytesSent > 1024 * 1024 ? true : undefined), 30_000, 'pre-copy under way');
    return { target, out };
  }

  it('cancel mid-way: the source keeps running, the target copy is discarded', async () => {
    const { out } = await slowMigrationBtoA('mig-cancel');
    const targetPid = (await a.status(VM)).pid;
    await out.cancel();
    expect(out.state).toBe('cancelled');
    expect((await b.status(VM)).state).toBe('running');
    await writesPast(b, await writes(b));
    await a.abortIncoming(VM);
    expect(a.list()).toEqual([]);
    expect(await waitFor(async () => (isProcessAlive(targetPid) ? undefined : true), 10_000, 'the target QEMU gone')).toBe(true);
  });

  it('SIGKILL of the target QEMU mid-migration: the migration fails, the source keeps running', async () => {
    const { out } = await slowMigrationBtoA('mig-kill');
    const targetPid = (await a.status(VM)).pid;
    process.kill(targetPid, 'SIGKILL');
    expect(await out.settled()).toBe('failed');
    await expect(out.switchoverReady()).rejects.toMatchObject({ code: 'MIGRATION_FAILED' });
    expect((await b.status(VM)).state).toBe('running');
    await writesPast(b, await writes(b));
    expect((await a.status(VM)).state).toBe('gone');
    await a.abortIncoming(VM);
    expect(a.list()).toEqual([]);
  });

  /** B → A to QEMU's `completed`, the digests taken: the point where the controller decides. */
  async function migrateBtoAToCompleted(migrationId: string) {
    const target = await a.prepareIncoming(spec);
    await track(a);
    const out = await b.startOutgoing(VM, { migrationId, host: target.host, port: target.port });
    await out.switchoverReady();
    await out.continueSwitchover();
    await target.received(30_000);
    return { target, out, sourceWrites: await writes(b) };
  }

  it('rollback after a completed migration that is not committed: the source resumes and runs on', async () => {
    const { out } = await migrateBtoAToCompleted('mig-rollback');
    expect(out.state).toBe('completed');
    expect((await b.status(VM)).state).toBe('paused'); // QEMU postmigrate: the source waits for the decision
    await a.abortIncoming(VM);
    await b.resume(VM);
    expect((await b.status(VM)).state).toBe('running');
    await writesPast(b, await writes(b));
    expect(a.list()).toEqual([]);
  });

  it('an agent restart at the commit point: the new driver finds the received target and commits it', async () => {
    const { sourceWrites } = await migrateBtoAToCompleted('mig-restart');
    const sourceDigest = (await b.digest(VM)).digest;
    a.detach(); // the target's agent dies after the data arrived, before the controller's commit
    const a2 = await QemuDriver.open({ stateDir: a.stateDir, accel: a.accel, bootTimeoutMs: BOOT_MS });
    drivers.push(a2);
    expect(a2.list()).toEqual([VM]);
    expect((await a2.status(VM)).state).toBe('paused');
    expect((await a2.digest(VM)).digest).toBe(sourceDigest);
    await a2.commitIncoming(VM);
    await b.delete(VM);
    expect((await a2.status(VM)).state).toBe('running');
    await writesPast(a2, sourceWrites);
    a = a2; // the guest lives on node A now
  });

  it('a new driver on the same state directory finds its guest again after an agent restart', async () => {
    // The guest is on node A (the previous test); restart that node's driver again, now with a
    // committed, running guest (its record says committed) and a stale directory beside it.
    const b = a;
    const before = await b.status(VM);
    // A directory whose QEMU is long gone (a pid that is not a QEMU of that VM): cleaned up, not adopted.
    const stale = path.join(b.stateDir, 'vm-0123456789abcdef');
    await mkdir(stale, { recursive: true });
    await writeFile(path.join(stale, 'guest.json'), JSON.stringify({ version: 1, spec: { ...spec, vmId: 'ghost' }, origin: 'guest', accel: 'tcg', createdAtMs: 0 }));
    await writeFile(path.join(stale, 'qemu.pid'), String(process.pid));
    b.detach(); // the agent dies: its QMP connections close, QEMU runs on
    expect(isProcessAlive(before.pid)).toBe(true);
    const b2 = await QemuDriver.open({ stateDir: b.stateDir, accel: b.accel, bootTimeoutMs: BOOT_MS });
    drivers.push(b2);
    expect(b2.list()).toEqual([VM]);
    expect(existsSync(stale)).toBe(false);
    const again = await b2.status(VM);
    expect(again).toMatchObject({ state: 'running', pid: before.pid });
    await expect(b2.commitIncoming(VM)).rejects.toMatchObject({ code: 'NOT_FOUND' }); // committed before: no incoming left
    await b2.pause(VM);
    const paused = await writes(b2);
    await b2.resume(VM);
    await writesPast(b2, paused);
    await b2.delete(VM);
    expect(await waitFor(async () => (isProcessAlive(before.pid) ? undefined : true), 10_000, 'QEMU gone after delete')).toBe(true);
  });
});
