import { describe, expect, it } from 'vitest';
import { cluster } from '@vmm/proto';
import { InvalidArgumentError } from '../errors.js';
import { validateCreateVm, type LargestNode } from './vm-validation.js';

const LARGEST: LargestNode = { vcpus: 8, memoryMib: 4096 };
const good = (over: Partial<cluster.CreateVmRequest> = {}): Partial<cluster.CreateVmRequest> => ({
  name: 'web-1',
  vcpus: 2,
  memoryMib: 512,
  image: 'alpine-3.20',
  workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_UNIFORM, dirtyRatePagesPerSec: 100, workingSetMib: 64, seed: 7 },
  nodeId: '',
  antiAffinityGroup: '',
  labels: { tier: 'web' },
  ...over,
});
const wl = (w: Partial<cluster.Workload>) => ({ ...good().workload!, ...w });

describe('validateCreateVm', () => {
  it('accepts a valid request and normalises it', () => {
    expect(validateCreateVm(good({ name: ' web-1 ' }), LARGEST)).toEqual({
      name: 'web-1',
      vcpus: 2,
      memoryMib: 512,
      image: 'alpine-3.20',
      workload: { kind: 'WORKLOAD_KIND_UNIFORM', dirtyRatePagesPerSec: 100, workingSetMib: 64, seed: 7 },
      nodeId: '',
      antiAffinityGroup: '',
      labels: { tier: 'web' },
      restartPolicy: 'RESTART_POLICY_UNSPECIFIED',
      hypervisor: '',
      nodeSelector: {},
    });
    expect(validateCreateVm(good({ nodeSelector: { disk: 'ssd' } }), LARGEST).nodeSelector).toEqual({ disk: 'ssd' });
    expect(validateCreateVm(good({ hypervisor: ' qemu ' }), LARGEST).hypervisor).toBe('qemu');
    expect(validateCreateVm(good({ hypervisor: 'emulator' }), LARGEST).hypervisor).toBe('emulator');
    expect(() => validateCreateVm(good({ hypervisor: 'xen' }), LARGEST)).toThrow(InvalidArgumentError);
    expect(() => validateCreateVm(good({ hypervisor: 'xen' }), LARGEST)).toThrow(/hypervisor/);
    expect(validateCreateVm(good({ restartPolicy: cluster.RestartPolicy.RESTART_POLICY_ALWAYS }), LARGEST).restartPolicy).toBe('RESTART_POLICY_ALWAYS');
    expect(() => validateCreateVm(good({ restartPolicy: 'RESTART_POLICY_SOMETIMES' as cluster.RestartPolicy }), LARGEST)).toThrow(/restart_policy/);
  });

  it('defaults an empty image to "empty"', () => {
    expect(validateCreateVm(good({ image: '' }), LARGEST).image).toBe('empty');
  });

  it.each(['windows-95', 'registry.local/team/app:1.2', 'a'.repeat(128)])('accepts any well-formed image name: %s', (image) => {
    expect(validateCreateVm(good({ image }), LARGEST).image).toBe(image);
  });

  it('accepts exactly the largest node', () => {
    expect(validateCreateVm(good({ vcpus: 8, memoryMib: 4096, workload: wl({ workingSetMib: 0 }) }), LARGEST).vcpus).toBe(8);
  });

  it('skips the size check when no node is registered', () => {
    expect(validateCreateVm(good({ memoryMib: 1 << 20 }), undefined).memoryMib).toBe(1 << 20);
  });

  it.each([
    ['empty name', { name: '' }, 'name'],
    ['blank name', { name: '   ' }, 'name'],
    ['name with a slash', { name: 'a/b' }, 'name'],
    ['zero vcpus', { vcpus: 0 }, 'vcpus'],
    ['negative vcpus', { vcpus: -1 }, 'vcpus'],
    ['fractional vcpus', { vcpus: 1.5 }, 'vcpus'],
    ['zero memory', { memoryMib: 0 }, 'memory_mib'],
    ['negative memory', { memoryMib: -64 }, 'memory_mib'],
    ['vcpus above the largest node', { vcpus: 9 }, 'vcpus'],
    ['memory above the largest node', { memoryMib: 4097 }, 'memory_mib'],
    ['unknown image', { image: 'Windows 95' }, 'image'],
    ['image name too long', { image: 'a'.repeat(129) }, 'image'],
    ['image name starting with a dot', { image: '.hidden' }, 'image'],
    ['no workload', { workload: undefined }, 'workload.kind'],
    ['unspecified kind', { workload: wl({ kind: cluster.WorkloadKind.WORKLOAD_KIND_UNSPECIFIED }) }, 'workload.kind'],
    ['unrecognized kind', { workload: wl({ kind: -1 as unknown as cluster.WorkloadKind }) }, 'workload.kind'],
    ['negative rate', { workload: wl({ dirtyRatePagesPerSec: -5 }) }, 'workload.dirty_rate_pages_per_sec'],
    ['NaN rate', { workload: wl({ dirtyRatePagesPerSec: Number.NaN }) }, 'workload.dirty_rate_pages_per_sec'],
    ['negative working set', { workload: wl({ workingSetMib: -1 }) }, 'workload.working_set_mib'],
    ['working set above memory', { workload: wl({ workingSetMib: 513 }) }, 'workload.working_set_mib'],
    ['empty label key', { labels: { '': 'x' } }, 'labels'],
    ['empty node selector key', { nodeSelector: { '': 'x' } }, 'node_selector'],
    ['node selector value too long', { nodeSelector: { disk: 'x'.repeat(254) } }, 'node_selector'],
  ] as const)('rejects %s naming %s', (_case, over, field) => {
    let error: unknown;
    try {
      validateCreateVm(good(over as Partial<cluster.CreateVmRequest>), LARGEST);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as InvalidArgumentError).field).toBe(field);
    expect((error as Error).message.startsWith(`${field}:`)).toBe(true);
  });
});
