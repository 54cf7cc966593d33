import { FramePool } from '@vmm/emulator';
import { cluster } from '@vmm/proto';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger, vmSpec } from '../testing/fixtures.js';
import { waitFor } from '../../../../test/support/wait-for.js';
import { VmManager } from './vm-manager.js';

const limits = { maxVcpus: 16, maxMemoryMib: 1024 };
const managers: VmManager[] = [];

function manager(): VmManager {
  const vms = new VmManager(new FramePool(), limits, silentLogger);
  managers.push(vms);
  return vms;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

afterEach(() => {
  for (const vms of managers.splice(0)) vms.stopAll();
});

describe('VmManager', () => {
  it('creates and starts a VM with its image loaded', () => {
    const vms = manager();
    const entry = vms.create(vmSpec({ vmId: 'a', fencingEpoch: 3 }));
    expect(entry.vm.state).toBe('running');
    const status = vms.status(entry);
    expect(status).toMatchObject({ vmId: 'a', state: cluster.VmState.VM_STATE_RUNNING, pagesTotal: 32 * 256, fencingEpoch: 3 });
    expect(status.residentPages).toBeGreaterThan(0);
    expect(vms.pool.bytesInUse).toBeGreaterThan(0);
  });

  it('is idempotent for the same vm_id', () => {
    const vms = manager();
    const first = vms.create(vmSpec({ vmId: 'a' }));
    const framesInUse = vms.pool.framesInUse;
    const again = vms.create(vmSpec({ vmId: 'a' }));
    expect(again).toBe(first);
    expect(vms.size).toBe(1);
    expect(vms.pool.framesInUse).toBe(framesInUse);
  });

  it.each([
    ['unknown image', { image: 'Windows 95' }],
    ['unspecified workload kind', { workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_UNSPECIFIED, dirtyRatePagesPerSec: 0, workingSetMib: 0, seed: 0 } }],
    ['negative dirty rate', { workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_UNIFORM, dirtyRatePagesPerSec: -1, workingSetMib: 0, seed: 0 } }],
    ['working set above memory', { workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_UNIFORM, dirtyRatePagesPerSec: 1, workingSetMib: 64, seed: 0 } }],
    ['zero vcpus', { vcpus: 0 }],
    ['memory above the node limit', { memoryMib: 4096 }],
    ['memory below the image', { memoryMib: 8 }],
    ['empty vm_id', { vmId: '' }],
    ['negative epoch', { fencingEpoch: -1 }],
    ['an epoch past 2^53 (an int64 the wire rounded)', { fencingEpoch: 2 ** 60 }],
  ])('rejects a spec with %s and leaves nothing behind', (_case, overrides) => {
    const vms = manager();
    expect(codeOf(() => vms.create(vmSpec(overrides)))).toBe('INVALID_VM_SPEC');
    expect(codeOf(() => vms.create(undefined))).toBe('INVALID_VM_SPEC');
    expect(vms.size).toBe(0);
    expect(vms.pool.framesInUse).toBe(0);
  });

  it('deletes a VM, frees its memory, and accepts deleting an absent VM', () => {
    const vms = manager();
    const entry = vms.create(vmSpec({ vmId: 'a' }));
    vms.create(vmSpec({ vmId: 'b', image: 'empty' }));
    expect(vms.delete('a')).toBe(true);
    expect(entry.vm.state).toBe('stopped');
    expect(vms.pool.framesInUse).toBe(0);
    expect(vms.delete('a')).toBe(false);
    expect(vms.list().map((s) => s.vmId)).toEqual(['b']);
  });

  it('lists statuses with their specs', () => {
    const vms = manager();
    vms.create(vmSpec({ vmId: 'a', labels: { team: 'x' }, fencingEpoch: 2 }));
    const [status] = vms.list();
    expect(status.spec).toMatchObject({ vmId: 'a', image: 'alpine-3.20', labels: { team: 'x' }, fencingEpoch: 2 });
    expect(status.spec?.workload?.kind).toBe(cluster.WorkloadKind.WORKLOAD_KIND_IDLE);
  });

  it('refuses an epoch lower than the id was fenced at', () => {
    const vms = manager();
    vms.create(vmSpec({ vmId: 'a', fencingEpoch: 4 }));
    vms.fenceAndDestroy('a', 5);
    expect(vms.get('a')).toBeUndefined();
    expect(codeOf(() => vms.create(vmSpec({ vmId: 'a', fencingEpoch: 4 })))).toBe('VM_FENCED');
    expect(vms.size).toBe(0);
    expect(vms.create(vmSpec({ vmId: 'a', fencingEpoch: 5 })).fencingEpoch).toBe(5);
  });

  it('refuses to fence at, or check, an epoch that is not a safe integer, and destroys nothing', () => {
    const vms = manager();
    vms.create(vmSpec({ vmId: 'a', fencingEpoch: 4 }));
    expect(codeOf(() => vms.fenceAndDestroy('a', 2 ** 60))).toBe('INVALID_FENCING_EPOCH');
    expect(vms.get('a')?.vm.state).toBe('running');
    expect(codeOf(() => vms.fences.check('a', 1.5))).toBe('INVALID_FENCING_EPOCH');
  });

  it('refuses an epoch lower than the running copy holds', () => {
    const vms = manager();
    vms.create(vmSpec({ vmId: 'a', fencingEpoch: 7 }));
    expect(codeOf(() => vms.create(vmSpec({ vmId: 'a', fencingEpoch: 6 })))).toBe('VM_FENCED');
  });

  it('runs the workload: a uniform VM writes pages as time passes', async () => {
    const vms = manager();
    const entry = vms.create(
      vmSpec({
        vmId: 'busy',
        image: 'empty',
        workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_UNIFORM, dirtyRatePagesPerSec: 5_000, workingSetMib: 4, seed: 9 },
      }),
    );
    await waitFor(() => entry.vm.writesTotal > 50, 5_000, 'workload writes');
    expect(vms.status(entry).residentPages).toBeGreaterThan(0);
  });

  it('keeps incoming VMs paused and out of the list', () => {
    const vms = manager();
    const entry = vms.create(vmSpec({ vmId: 'in' }), { incoming: true });
    expect(entry.vm.state).toBe('paused');
    expect(entry.vm.memory.residentPages).toBe(0);
    expect(vms.list()).toEqual([]);
    expect(codeOf(() => vms.create(vmSpec({ vmId: 'in' })))).toBe('VM_BUSY');
  });
});
