import { FramePool } from '@vmm/emulator';
import { agent, cluster } from '@vmm/proto';
import { afterEach, describe, expect, it } from 'vitest';
import type { MigrationService } from '../migration/migration.service.js';
import { ReportAckHandler } from '../registry/ack-handler.js';
import { silentLogger, vmSpec } from '../testing/fixtures.js';
import { VmManager } from '../vm/vm-manager.js';
import { LeaseGuard } from './lease-guard.js';

const ALWAYS = cluster.RestartPolicy.RESTART_POLICY_ALWAYS;
let vms: VmManager;
afterEach(() => vms?.stopAll());

function setup() {
  let now = 0;
  vms = new VmManager(new FramePool(), { maxVcpus: 8, maxMemoryMib: 256 }, silentLogger);
  const aborted: string[] = [];
  const migrations = { abortSendingOf: (e: { vm: { id: string } }) => aborted.push(e.vm.id), applyDirective: () => undefined, abortForVm: () => undefined, releaseOutgoing: () => ({}) } as unknown as MigrationService;
  const guard = new LeaseGuard(vms, migrations, silentLogger, 1_000, () => now);
  const acks = new ReportAckHandler(vms, migrations, guard, silentLogger);
  return { guard, acks, aborted, advance: (ms: number) => (now += ms) };
}

const report = (...entries: [string, number][]): agent.NodeReport =>
  agent.NodeReport.fromPartial({ nodeId: 'n', vms: entries.map(([vmId, fencingEpoch]) => ({ vmId, fencingEpoch })) });

describe('LeaseGuard', () => {
  it('pauses restartable VMs once the lease ran out, and leaves the others running', () => {
    const { guard, advance } = setup();
    const restartable = vms.create(vmSpec({ vmId: 'r', fencingEpoch: 1, restartPolicy: ALWAYS }));
    const plain = vms.create(vmSpec({ vmId: 'p', fencingEpoch: 1 }));
    advance(999);
    expect(guard.check()).toBe(0);
    advance(2);
    expect(guard.check()).toBe(1);
    expect(restartable.vm.state).toBe('paused');
    expect(restartable.leasePaused).toBe(true);
    expect(plain.vm.state).toBe('running');
  });

  it('resumes them when an ack confirms them at their epoch; a VM the user paused stays paused', () => {
    const { guard, acks, advance } = setup();
    const r = vms.create(vmSpec({ vmId: 'r', fencingEpoch: 1, restartPolicy: ALWAYS }));
    const userPaused = vms.create(vmSpec({ vmId: 'u', fencingEpoch: 1, restartPolicy: ALWAYS }));
    userPaused.vm.pause();
    advance(1_500);
    guard.check();
    acks.onAck({ seq: 1, leaseMs: 1_000, directives: [] }, report(['r', 1], ['u', 1]));
    expect(guard.expired).toBe(false);
    expect(r.vm.state).toBe('running');
    expect(r.leasePaused).toBe(false);
    expect(userPaused.vm.state).toBe('paused');
  });

  it('does not confirm a copy the ack holds, or one whose epoch changed since the report', () => {
    const { guard, acks, advance } = setup();
    const r = vms.create(vmSpec({ vmId: 'r', fencingEpoch: 1, restartPolicy: ALWAYS }));
    advance(1_500);
    guard.check();
    acks.onAck({ seq: 1, leaseMs: 1_000, directives: [{ vmId: 'r', migrationId: '', action: agent.DirectiveAction.DIRECTIVE_ACTION_HOLD, fencingEpoch: 1, reason: '' }] }, report(['r', 1]));
    expect(r.vm.state).toBe('paused');
    acks.onAck({ seq: 2, leaseMs: 1_000, directives: [] }, report(['r', 0]));
    expect(r.vm.state).toBe('paused');
  });

  it('guards a migrated-in VM until the controller confirmed it, whatever its restart policy', () => {
    const { guard, acks, advance } = setup();
    const e = vms.create(vmSpec({ vmId: 'm', fencingEpoch: 1 }));
    vms.adoptIncoming(e, 2);
    advance(1_500);
    expect(guard.check()).toBe(1);
    acks.onAck({ seq: 3, leaseMs: 1_000, directives: [] }, report(['m', 2]));
    expect(e.confirmed).toBe(true);
    expect(e.vm.state).toBe('running');
    advance(1_500);
    expect(guard.check()).toBe(0);
  });

  it('destroys a copy the controller holds at a newer epoch elsewhere, and fences it there', () => {
    const { acks } = setup();
    vms.create(vmSpec({ vmId: 'old', fencingEpoch: 1 }));
    acks.onAck({ seq: 1, leaseMs: 1_000, directives: [{ vmId: 'old', migrationId: '', action: agent.DirectiveAction.DIRECTIVE_ACTION_DESTROY, fencingEpoch: 2, reason: 'restarted elsewhere' }] }, report(['old', 1]));
    expect(vms.get('old')).toBeUndefined();
    expect(vms.fences.epochOf('old')).toBe(2);
    // A directive at or below the copy's own epoch is refused: the copy stays.
    vms.create(vmSpec({ vmId: 'keep', fencingEpoch: 5 }));
    acks.onAck({ seq: 2, leaseMs: 1_000, directives: [{ vmId: 'keep', migrationId: '', action: agent.DirectiveAction.DIRECTIVE_ACTION_DESTROY, fencingEpoch: 5, reason: '' }] }, report(['keep', 5]));
    expect(vms.get('keep')).toBeDefined();
  });
});
