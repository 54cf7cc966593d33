import { FramePool, initHashing } from '@vmm/emulator';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger, vmSpec } from '../testing/fixtures.js';
import { VmManager } from '../vm/vm-manager.js';
import { asEmulated } from '../hypervisor/emulated-vm.js';
import { readHostKsm } from '@vmm/ksm';
import { waitFor } from '../../../../test/support/wait-for.js';
import { KsmService } from './ksm.service.js';

let vms: VmManager;
let ksm: KsmService;

beforeAll(() => initHashing());

function setup(run = 1): void {
  vms = new VmManager(new FramePool(), { maxVcpus: 8, maxMemoryMib: 1024 }, silentLogger);
  ksm = new KsmService(vms.pool, { run, pagesToScan: 100, sleepMillisecs: 20 }, silentLogger);
  vms.setHooks({ started: (e) => ksm.attach(e), stopping: (e) => ksm.detach(e) });
}

afterEach(() => {
  vms.stopAll();
  ksm.stop();
});

describe('KsmService', () => {
  it('merges the image pages two VMs share and frees the frames', () => {
    setup();
    vms.create(vmSpec({ vmId: 'a', image: 'alpine-3.20' }));
    vms.create(vmSpec({ vmId: 'b', image: 'alpine-3.20' }));
    expect(ksm.scanner.regionIds().sort()).toEqual(['a', 'b']);
    const before = vms.pool.framesInUse;
    ksm.scanner.scanFull(3);
    const stats = ksm.stats();
    expect(stats.pagesSharing).toBeGreaterThan(0);
    expect(stats.fullScans).toBeGreaterThanOrEqual(3);
    expect(stats.generalProfitBytes).toBeGreaterThan(0);
    expect(vms.pool.framesInUse).toBeLessThan(before);
    // The digest is what a guest sees: merging changed nothing there.
    expect(asEmulated(vms.require('a').vm).memory.digest()).toBe(asEmulated(vms.require('b').vm).memory.digest());
  });

  it('registers running VMs only, and forgets a VM before it stops', () => {
    setup();
    vms.create(vmSpec({ vmId: 'in' }), { incoming: true });
    vms.create(vmSpec({ vmId: 'a' }));
    expect(ksm.scanner.regionIds()).toEqual(['a']);
    vms.adoptIncoming(vms.require('in'), 1);
    expect(ksm.scanner.regionIds().sort()).toEqual(['a', 'in']);
    vms.delete('a');
    expect(ksm.scanner.regionIds()).toEqual(['in']);
  });

  it('applies set knobs only, in proto shape', async () => {
    setup(0);
    expect(ksm.knobs()).toEqual({ run: 0, pagesToScan: 100, sleepMillisecs: 20, maxPageSharing: 256, useZeroPages: false });
    const answer = await ksm.configure({ run: 1, pagesToScan: 500, useZeroPages: true });
    expect(answer.knobs).toEqual({ run: 1, pagesToScan: 500, sleepMillisecs: 20, maxPageSharing: 256, useZeroPages: true });
    expect(answer.stats.fullScans).toBe(0);
    await expect(ksm.configure({ pagesToScan: 0 })).rejects.toThrow(expect.objectContaining({ code: 'INVALID_KNOB' }));
    expect(ksm.knobs().pagesToScan).toBe(500);
  });

  it('answers each SetKsm with the knobs it left, one after another, though run=2 unmerges in slices', async () => {
    setup();
    vms.create(vmSpec({ vmId: 'a', image: 'alpine-3.20' }));
    vms.create(vmSpec({ vmId: 'b', image: 'alpine-3.20' }));
    ksm.scanner.scanFull(3);
    expect(ksm.stats().pagesSharing).toBeGreaterThan(0);
    const [unmerged, resumed] = await Promise.all([ksm.configure({ run: 2 }), ksm.configure({ run: 1 })]);
    expect(unmerged.knobs.run).toBe(2);
    expect(unmerged.stats).toMatchObject({ pagesShared: 0, pagesSharing: 0 });
    expect(resumed.knobs.run).toBe(1);
  });

  it("host mode (a QEMU node) reports the kernel's counters and knobs, never sets them, and registers no regions", async () => {
    setup();
    ksm.stop();
    ksm = new KsmService(vms.pool, { run: 1, pagesToScan: 100, sleepMillisecs: 20 }, silentLogger, 'host');
    vms.setHooks({ started: (e) => ksm.attach(e), stopping: (e) => ksm.detach(e) });
    ksm.start();
    vms.create(vmSpec({ vmId: 'a', image: 'alpine-3.20' }));
    expect(ksm.scanner.regionIds()).toEqual([]);
    await expect(ksm.configure({ run: 1 })).rejects.toThrow(expect.objectContaining({ code: 'HOST_KSM_READ_ONLY' }));
    const host = await readHostKsm();
    if (host.run === undefined) return; // no /sys/kernel/mm/ksm here: nothing more to compare
    await waitFor(() => ksm.hostKsm().sysfs.run !== undefined, 5_000, 'the first read of the host');
    expect(ksm.knobs().run).toBe(ksm.hostKsm().sysfs.run);
    expect(ksm.stats().fullScans).toBe(ksm.hostKsm().sysfs.full_scans ?? 0);
  });
});
