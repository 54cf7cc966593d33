/**
 * Carries out the controller's answer to one report (ReportAck): renews the node's lease, applies the
 * directives (destroy a stale copy, resume or release a paused source, discard an incoming copy), and
 * confirms every reported VM the ack has no directive for, which un-pauses VMs the lease guard paused.
 *
 * A directive that cannot be applied (it contradicts what this node already did, or names a copy that
 * is gone) is logged and left: the next report shows the controller the node as it is.
 */
import { agent } from '@vmm/proto';
import type { Logger } from 'pino';
import type { LeaseGuard } from '../lease/lease-guard.js';
import type { MigrationService } from '../migration/migration.service.js';
import type { VmManager } from '../vm/vm-manager.js';

/** The longest lease an ack may grant: the largest NODE_LEASE_MS the controller accepts (1 h). */
export const MAX_LEASE_MS = 3_600_000;
import type { AckHandler } from './controller-link.js';

const A = agent.DirectiveAction;

export class ReportAckHandler implements AckHandler {
  constructor(
    private readonly vms: VmManager,
    private readonly migrations: MigrationService,
    private readonly lease: LeaseGuard,
    private readonly log: Logger,
  ) {}

  onAck(ack: agent.ReportAck, report: agent.NodeReport): void {
    // Bounded: a lease is a few report intervals; an ack granting hours (a confused or hostile
    // controller) must not keep this node's VMs running long after the cluster gave them up.
    const leaseMs = Math.min(Number(ack.leaseMs), MAX_LEASE_MS);
    if (leaseMs > 0) this.lease.renew(leaseMs);
    const directed = new Set<string>();
    for (const d of ack.directives ?? []) {
      directed.add(d.vmId);
      try {
        this.apply(d);
      } catch (err) {
        this.log.warn({ err, vmId: d.vmId, migrationId: d.migrationId, action: d.action }, 'directive not applied');
      }
    }
    for (const reported of report.vms) {
      if (directed.has(reported.vmId)) continue;
      const entry = this.vms.get(reported.vmId);
      // Confirmed at the epoch the report carried; a copy that changed since waits for the next ack.
      if (entry && entry.role === 'none' && entry.fencingEpoch === Number(reported.fencingEpoch)) this.vms.confirm(entry);
    }
  }

  private apply(d: agent.Directive): void {
    switch (d.action) {
      case A.DIRECTIVE_ACTION_DESTROY:
        return this.destroy(d);
      case A.DIRECTIVE_ACTION_RESUME_SOURCE:
      case A.DIRECTIVE_ACTION_RELEASE_SOURCE:
      case A.DIRECTIVE_ACTION_DISCARD_INCOMING:
        this.migrations.applyDirective(d);
        return;
      default:
        return; // HOLD, or an action of a newer controller: keep the copy as it is, unconfirmed
    }
  }

  /** A copy below the epoch the controller holds (or deleted): it goes, and the id is fenced there. */
  private destroy(d: agent.Directive): void {
    const epoch = Number(d.fencingEpoch);
    const entry = this.vms.get(d.vmId);
    if (!entry) return;
    if (entry.role === 'incoming') return; // incoming copies are discarded by migration, never by VM id
    if (entry.fencingEpoch >= epoch) {
      this.log.warn({ vmId: d.vmId, copyEpoch: entry.fencingEpoch, fencingEpoch: epoch }, 'destroy directive at or below the copy\'s epoch refused');
      return;
    }
    if (entry.role === 'outgoing' && entry.migrationId) {
      try {
        // A paused source copy goes the way a release takes it, so that its migration end settles too.
        this.migrations.releaseOutgoing({ migrationId: entry.migrationId, vmId: d.vmId, fencingEpoch: epoch });
        return;
      } catch {
        // still sending: roll the transfer back, then destroy
      }
    }
    this.migrations.abortForVm(d.vmId, d.reason || 'the controller does not hold this copy');
    this.vms.fenceAndDestroy(d.vmId, epoch);
    this.log.warn({ vmId: d.vmId, copyEpoch: entry.fencingEpoch, fencingEpoch: epoch, reason: d.reason }, 'stale vm copy destroyed at the controller\'s word');
  }
}
