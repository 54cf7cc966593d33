import { FramePool } from '@vmm/emulator';
import { agent, cluster } from '@vmm/proto';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger, vmSpec } from '../testing/fixtures.js';
import { VmManager } from './vm-manager.js';

const A = agent.PowerAction;
const managers: VmManager[] = [];

function manager(): VmManager {
  const vms = new VmManager(new FramePool(), { maxVcpus: 16, maxMemoryMib: 1024 }, silentLogger);
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

describe('VmManager.setPower', () => {
  it('pause and resume keep the VM and its memory; stop frees the memory and keeps the VM; start boots a fresh one', () => {
    const vms = manager();
    const created = vms.create(vmSpec({ vmId: 'a', fencingEpoch: 2 }));
    const framesRunning = vms.pool.framesInUse;

    expect(vms.setPower('a', 2, A.POWER_ACTION_PAUSE).vm.state).toBe('paused');
    expect(vms.setPower('a', 2, A.POWER_ACTION_PAUSE).vm).toBe(created.vm); // a retry is a no-op
    expect(vms.pool.framesInUse).toBe(framesRunning);
    expect(vms.setPower('a', 2, A.POWER_ACTION_RESUME).vm.state).toBe('running');

    const stopped = vms.setPower('a', 2, A.POWER_ACTION_STOP);
    expect(vms.status(stopped)).toMatchObject({ state: cluster.VmState.VM_STATE_STOPPED, residentPages: 0 });
    expect(vms.pool.framesInUse).toBeLessThan(framesRunning);
    expect(vms.size).toBe(1);
    expect(codeOf(() => vms.setPower('a', 2, A.POWER_ACTION_PAUSE))).toBe('INVALID_VM_STATE');
    expect(codeOf(() => vms.setPower('a', 2, A.POWER_ACTION_RESUME))).toBe('INVALID_VM_STATE');

    const started = vms.setPower('a', 2, A.POWER_ACTION_START);
    expect(started.vm).not.toBe(created.vm);
    expect(started.vm.state).toBe('running');
    expect(started.fencingEpoch).toBe(2);
    expect(vms.get('a')).toBe(started);
    expect(vms.pool.framesInUse).toBe(framesRunning);
  });

  it('refuses an older epoch, a migrating VM, an unknown VM and an unspecified action, changing nothing', () => {
    const vms = manager();
    const entry = vms.create(vmSpec({ vmId: 'a', fencingEpoch: 3 }));
    expect(codeOf(() => vms.setPower('a', 2, A.POWER_ACTION_PAUSE))).toBe('VM_FENCED');
    expect(codeOf(() => vms.setPower('b', 3, A.POWER_ACTION_PAUSE))).toBe('VM_NOT_FOUND');
    expect(codeOf(() => vms.setPower('a', 3, A.POWER_ACTION_UNSPECIFIED))).toBe('INVALID_REQUEST');
    entry.role = 'outgoing';
    expect(codeOf(() => vms.setPower('a', 3, A.POWER_ACTION_STOP))).toBe('VM_BUSY');
    expect(entry.vm.state).toBe('running');
  });

  it('a pause by the controller is not undone by a renewed lease', () => {
    const vms = manager();
    const entry = vms.create(vmSpec({ vmId: 'a', restartPolicy: cluster.RestartPolicy.RESTART_POLICY_ALWAYS }));
    expect(vms.pauseForLease(entry)).toBe(true);
    vms.setPower('a', entry.fencingEpoch, A.POWER_ACTION_PAUSE);
    vms.confirm(entry);
    expect(entry.vm.state).toBe('paused');
  });
});
