import { describe, expect, it } from 'vitest';
import { cluster } from '@vmm/proto';
import type { VmRecord } from '../common/model.js';
import { expectedMigrationPages, LINK_PAGES_PER_SEC, pickVmToEvacuate } from './migration-cost.js';

const vm = (id: string, residentPages: number, dirtyRatePagesPerSec = 0, state: cluster.VmState = cluster.VmState.VM_STATE_RUNNING) =>
  ({ vmId: id, residentPages, dirtyRatePagesPerSec, state }) as VmRecord;

describe('expectedMigrationPages', () => {
  it('is the resident set for an idle VM and grows as W/(1-r) with the dirty rate', () => {
    expect(expectedMigrationPages(vm('a', 1000))).toBe(1000);
    expect(expectedMigrationPages(vm('a', 1000, LINK_PAGES_PER_SEC / 2))).toBeCloseTo(2000);
  });

  it('stays finite for a VM dirtying faster than the link', () => {
    expect(expectedMigrationPages(vm('a', 1000, LINK_PAGES_PER_SEC * 10))).toBeCloseTo(20_000);
  });
});

describe('pickVmToEvacuate', () => {
  const MIB_PAGES = 256;
  it('picks the cheapest VM that covers the excess', () => {
    const vms = [vm('big-busy', 200 * MIB_PAGES, LINK_PAGES_PER_SEC * 0.9), vm('big-idle', 150 * MIB_PAGES), vm('small', 10 * MIB_PAGES)];
    expect(pickVmToEvacuate(vms, 100)?.vmId).toBe('big-idle');
  });

  it('frees the most when no VM covers the excess', () => {
    expect(pickVmToEvacuate([vm('a', 10 * MIB_PAGES), vm('b', 30 * MIB_PAGES)], 500)?.vmId).toBe('b');
  });

  it('ignores VMs that are not running, and answers undefined when nothing runs', () => {
    expect(pickVmToEvacuate([vm('m', 999_999, 0, cluster.VmState.VM_STATE_MIGRATING), vm('r', 10)], 0)?.vmId).toBe('r');
    expect(pickVmToEvacuate([vm('p', 100, 0, cluster.VmState.VM_STATE_PENDING)], 0)).toBeUndefined();
  });
});
