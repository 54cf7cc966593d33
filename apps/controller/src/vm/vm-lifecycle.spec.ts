import { cluster } from '@vmm/proto';
import { describe, expect, it } from 'vitest';
import { LIFECYCLE, lifecycleStep, type LifecycleAction } from './vm-state.js';

const S = cluster.VmState;
const ALL = [S.VM_STATE_PENDING, S.VM_STATE_RUNNING, S.VM_STATE_PAUSED, S.VM_STATE_MIGRATING, S.VM_STATE_STOPPED, S.VM_STATE_FAILED];

describe('lifecycle calls (PauseVm, ResumeVm, StopVm, StartVm)', () => {
  // One row per call: the states it proceeds from and the states it answers as they are; every
  // other state is refused (FAILED_PRECONDITION), MIGRATING and PENDING for every call.
  it.each<[LifecycleAction, cluster.VmState[], cluster.VmState[]]>([
    ['pause', [S.VM_STATE_RUNNING], [S.VM_STATE_PAUSED]],
    ['resume', [S.VM_STATE_PAUSED], []],
    ['stop', [S.VM_STATE_RUNNING, S.VM_STATE_PAUSED], [S.VM_STATE_STOPPED]],
    ['start', [S.VM_STATE_STOPPED], []],
  ])('%s proceeds from %j, is done in %j, refused otherwise', (action, proceeds, done) => {
    for (const state of ALL) {
      const expected = proceeds.includes(state) ? 'start' : done.includes(state) ? 'done' : 'refused';
      expect(lifecycleStep(action, state), `${action} from ${state}`).toBe(expected);
    }
  });

  it('a running VM is not started again, and no call touches a migrating or pending VM', () => {
    expect(lifecycleStep('start', S.VM_STATE_RUNNING)).toBe('refused');
    for (const action of Object.keys(LIFECYCLE) as LifecycleAction[]) {
      expect(lifecycleStep(action, S.VM_STATE_MIGRATING)).toBe('refused');
      expect(lifecycleStep(action, S.VM_STATE_PENDING)).toBe('refused');
    }
  });
});
