import { mkdtemp, rm, writeFile, appendFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { getImage, hashString32, UnknownImageError } from '@vmm/emulator';
import { describe, expect, it } from 'vitest';
import { GuestStartError, InvalidGuestSpecError } from '../errors.js';
import { checkStateDir, guestPaths, pathsIn } from './guest-paths.js';
import { guestStateOf } from './guest-state.js';
import { resolveGuestSpec, type GuestSpec } from './guest-spec.js';
import { buildKernelCmdline } from './kernel-cmdline.js';
import { buildQemuArgs } from './qemu-args.js';
import { startQemu } from './qemu-process.js';
import { SerialConsole } from './serial-console.js';

const spec = (over: Partial<GuestSpec> = {}): GuestSpec => ({
  vmId: 'vm-1',
  memoryMib: 256,
  vcpus: 1,
  image: 'debian-12',
  workload: { kind: 'uniform', dirtyRatePagesPerSec: 2000, workingSetPages: 8192, seed: 7 },
  ...over,
});

describe('guest spec', () => {
  it('resolves the image and a working set of 0 to the memory beside the guest kernel', () => {
    const r = resolveGuestSpec(spec({ workload: { kind: 'idle', dirtyRatePagesPerSec: 0, workingSetPages: 0, seed: 0 } }));
    expect(r.imageSpec).toEqual(getImage('debian-12'));
    expect(r.workingSetPages).toBe((256 - 64) * 256);
  });

  it.each([
    ['vmId', { vmId: 'a,b' }],
    ['vmId', { vmId: '' }],
    ['memoryMib', { memoryMib: 64 }],
    ['memoryMib', { memoryMib: 130, image: 'ubuntu-24.04' }],
    ['vcpus', { vcpus: 0 }],
    ['workload.workingSetPages', { workload: { kind: 'uniform', dirtyRatePagesPerSec: 1, workingSetPages: 250 * 256, seed: 1 } }],
  ] as const)('refuses a bad %s', (field, over) => {
    expect(() => resolveGuestSpec(spec(over as Partial<GuestSpec>))).toThrow(expect.objectContaining({ field }));
  });

  it('refuses an unknown image as the emulator does', () => {
    expect(() => resolveGuestSpec(spec({ image: 'Not An Image' }))).toThrow(UnknownImageError);
  });
});

describe('kernel command line and QEMU arguments', () => {
  it('passes the resolved image, the workload and the emulator salt to the guest program', () => {
    const line = buildKernelCmdline(resolveGuestSpec(spec({ workload: { kind: 'hotcold', dirtyRatePagesPerSec: 500, workingSetPages: 1024, seed: -1 } })));
    const img = getImage('debian-12')!;
    expect(line).toContain(`vmm.image=debian-12 vmm.image_seed=${img.seed} vmm.image_pages=${img.pages}`);
    expect(line).toContain('vmm.kind=hotcold vmm.rate=500 vmm.ws_pages=1024');
    expect(line).toContain(`vmm.seed=18446744073709551615 vmm.salt=${hashString32('vm-1')}`); // -1 as the emulator's ToUint32/ToInt32 see it
    expect(line.length).toBeLessThan(2048); // x86 COMMAND_LINE_SIZE
  });

  it('names the guest, keeps defaults off, merges memory, and starts a target paused and deferred', () => {
    const paths = guestPaths('/var/lib/vmm', 'vm-1');
    const base = { vmId: 'vm-1', memoryMib: 256, vcpus: 2, accel: 'tcg' as const, kernel: 'k', initrd: 'i', cmdline: 'c', paths };
    const args = buildQemuArgs({ ...base, incoming: false });
    expect(args.slice(0, 4)).toEqual(['-name', 'guest=vm-1', '-machine', 'pc,accel=tcg,mem-merge=on']);
    expect(args).toEqual(expect.arrayContaining(['-nodefaults', '-nographic', '-no-reboot', `file:${paths.serialLog}`]));
    expect(args).not.toContain('-incoming');
    expect(buildQemuArgs({ ...base, incoming: true }).slice(-3)).toEqual(['-S', '-incoming', 'defer']);
  });

  it('keeps socket paths short whatever the vm id, and refuses a state directory too deep for them', () => {
    expect(path.basename(guestPaths('/s', 'x'.repeat(128)).dir)).toMatch(/^vm-[0-9a-f]{16}$/);
    expect(() => checkStateDir(`/${'d'.repeat(100)}`)).toThrow(InvalidGuestSpecError);
    expect(() => checkStateDir('/tmp/a,b')).toThrow(InvalidGuestSpecError);
    expect(checkStateDir('/tmp/vmm')).toBe('/tmp/vmm');
  });
});

describe('guest state', () => {
  it.each([
    ['running', true, 'running'],
    ['running', false, 'starting'],
    ['paused', true, 'paused'],
    ['postmigrate', true, 'paused'],
    ['finish-migrate', true, 'migrating'],
    ['inmigrate', false, 'incoming'],
    ['guest-panicked', true, 'crashed'],
    ['internal-error', true, 'crashed'],
  ] as const)('QEMU %s (ready %s) is %s', (status, ready, state) => {
    expect(guestStateOf(status, ready)).toBe(state);
  });
});

describe('SerialConsole', () => {
  it('reads ready, counters and errors incrementally, across partial lines and console noise', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'console-spec-'));
    try {
      const file = path.join(dir, 'serial.log');
      const c = new SerialConsole(file);
      expect((await c.poll()).ready).toBe(false); // no file yet
      await writeFile(file, '\x1bc\x1b[?7lSeaBIOS\r\nvmm: ready image=debian-12 pages=16384 fill_ms=395\r\nvmm: writes=10');
      let s = await c.poll();
      expect(s.ready).toBe(true);
      expect(s.readyInfo).toMatchObject({ image: 'debian-12', pages: '16384' });
      expect(s.writesTotal).toBeNull(); // the line is not complete yet
      await appendFile(file, '00 uptime_ms=3299\nvmm: writes=2000 uptime_ms=3499\n');
      s = await c.poll();
      expect(s).toMatchObject({ writesTotal: 2000, guestUptimeMs: 3499, reports: 2 });
      await appendFile(file, 'vmm: error vmm.kind is not idle\n');
      expect((await c.poll()).error).toBe('vmm.kind is not idle');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('startQemu', () => {
  it('fails with GuestStartError carrying stderr when the process exits before QMP answers, and when it cannot run', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'start-spec-'));
    try {
      const paths = pathsIn(dir);
      const err = await startQemu('/bin/sh', ['-c', 'echo no such machine >&2; exit 3'], 'vm-1', paths, 5_000).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(GuestStartError);
      expect(err).toMatchObject({ code: 'GUEST_START_FAILED' });
      expect((err as Error).message).toMatch(/code 3.*no such machine/);
      await expect(startQemu(path.join(dir, 'missing-binary'), [], 'vm-1', paths, 5_000)).rejects.toThrow(/cannot run/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
