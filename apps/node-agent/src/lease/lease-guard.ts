/**
 * The node's lease with the controller (vSphere HA's host isolation response, KubeVirt's runStrategy
 * Always): every report ack renews it for `lease_ms`. Once it runs out the controller may soon boot
 * this node's restartable VMs again elsewhere (it waits twice the lease), so before that can happen
 * this agent pauses them, and with them the VMs migrated in that the controller has not confirmed
 * yet (it may resume the source's copy instead). An outgoing migration of such a VM that is still
 * sending rolls back first. The VMs run again when an ack confirms them (VmManager.confirm).
 */
import type { Logger } from 'pino';
import type { MigrationService } from '../migration/migration.service.js';
import { isLeaseGuarded, type VmManager } from '../vm/vm-manager.js';

/** How often the guard looks at the clock while the lease runs; a pause comes at most this late. */
export const LEASE_CHECK_MS = 100;

export class LeaseGuard {
  private expiresAtMs: number;
  private timer: NodeJS.Timeout | undefined;
  private expiredLogged = false;

  constructor(
    private readonly vms: VmManager,
    private readonly migrations: MigrationService,
    private readonly log: Logger,
    /** Until the first ack: the lease a fresh registration gets. */
    initialLeaseMs: number,
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    this.expiresAtMs = nowMs() + initialLeaseMs;
  }

  start(): void {
    this.timer ??= setInterval(() => this.check(), LEASE_CHECK_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** An ack arrived: the lease runs for `leaseMs` from now. */
  renew(leaseMs: number): void {
    this.expiresAtMs = Math.max(this.expiresAtMs, this.nowMs() + leaseMs);
    if (this.expiredLogged) this.log.info('lease with the controller renewed');
    this.expiredLogged = false;
  }

  get expired(): boolean {
    return this.nowMs() > this.expiresAtMs;
  }

  /** Pauses every guarded VM once the lease ran out; returns how many it paused now. */
  check(): number {
    if (!this.expired) return 0;
    if (!this.expiredLogged) {
      this.expiredLogged = true;
      this.log.warn('lease with the controller expired: pausing restartable and unconfirmed VMs');
    }
    let paused = 0;
    for (const entry of this.vms.entries()) {
      if (!isLeaseGuarded(entry)) continue;
      if (entry.role === 'outgoing') this.migrations.abortSendingOf(entry, 'the lease with the controller expired');
      else if (this.vms.pauseForLease(entry)) paused++;
    }
    return paused;
  }
}
