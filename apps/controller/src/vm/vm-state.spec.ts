import { describe, expect, it } from 'vitest';
import { cluster } from '@vmm/proto';
import { canVmTransition, isControllerOwned, vmStatesLeadingTo } from './vm-state.js';

const S = cluster.VmState;

describe('vm state machine', () => {
  it.each([
    [S.VM_STATE_PENDING, S.VM_STATE_RUNNING, true],
    [S.VM_STATE_PENDING, S.VM_STATE_MIGRATING, false],
    [S.VM_STATE_RUNNING, S.VM_STATE_MIGRATING, true],
    [S.VM_STATE_PAUSED, S.VM_STATE_MIGRATING, false],
    [S.VM_STATE_MIGRATING, S.VM_STATE_PAUSED, false],
    [S.VM_STATE_MIGRATING, S.VM_STATE_RUNNING, true],
    [S.VM_STATE_FAILED, S.VM_STATE_RUNNING, true],
    [S.VM_STATE_FAILED, S.VM_STATE_PENDING, false],
  ])('%s → %s: %s', (from, to, allowed) => {
    expect(canVmTransition(from, to)).toBe(allowed);
  });

  it('gives the compare-and-set lists', () => {
    expect(vmStatesLeadingTo(S.VM_STATE_MIGRATING).sort()).toEqual([S.VM_STATE_MIGRATING, S.VM_STATE_RUNNING].sort());
    expect(vmStatesLeadingTo(S.VM_STATE_FAILED)).toContain(S.VM_STATE_PENDING);
  });

  it('PENDING and MIGRATING belong to the controller', () => {
    expect(isControllerOwned(S.VM_STATE_PENDING)).toBe(true);
    expect(isControllerOwned(S.VM_STATE_MIGRATING)).toBe(true);
    expect(isControllerOwned(S.VM_STATE_RUNNING)).toBe(false);
  });
});
