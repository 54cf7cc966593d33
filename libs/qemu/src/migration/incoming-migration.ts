import { setTimeout as delay } from 'node:timers/promises';
import { InvalidGuestStateError, MigrationFailedError, QmpTimeoutError } from '../errors.js';
import type { QemuGuest } from '../guest/qemu-guest.js';
import { canMoveIncoming, type IncomingState } from './migration-state.js';
import { MIGRATION_POLL_MS } from './outgoing-migration.js';
import type { QemuMigrationInfo } from './migration-progress.js';

/**
 * The target end of one QEMU migration: a guest started with -S -incoming defer that listens on `port`
 * (see migration-state.ts for its states). received() resolves when QEMU completed the incoming side;
 * the guest then stays paused until commit() (`cont`) or abort() (quit, the copy discarded).
 */
export class IncomingMigration {
  private current: IncomingState = 'listening';

  constructor(
    readonly guest: QemuGuest,
    /** Host and port QEMU listens on (give them to the source's startOutgoing). */
    readonly host: string,
    readonly port: number,
    /** Called once commit() succeeded, before it resolves (the driver records the commit on disk). */
    private readonly onCommitted: () => Promise<void> = async () => {},
    initial: IncomingState = 'listening',
  ) {
    this.current = initial;
  }

  get vmId(): string {
    return this.guest.vmId;
  }

  get state(): IncomingState {
    return this.current;
  }

  /**
   * Resolves when the whole state arrived (QEMU `completed` on the target, guest paused).
   * @throws MigrationFailedError when QEMU reports failed or exits; QmpTimeoutError after `timeoutMs`
   */
  async received(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.current === 'listening') {
      let info: QemuMigrationInfo;
      try {
        info = await this.guest.qmp.execute<QemuMigrationInfo>('query-migrate');
      } catch (err) {
        this.move('failed');
        throw new MigrationFailedError(this.vmId, `the target's QMP failed: ${(err as Error).message}`);
      }
      if (info.status === 'completed') this.move('received');
      else if (info.status === 'failed' || info.status === 'cancelled') {
        this.move('failed');
        throw new MigrationFailedError(this.vmId, info['error-desc'] ?? `the incoming migration ${info.status}`);
      } else if (Date.now() >= deadline) throw new QmpTimeoutError('waiting for the incoming migration', timeoutMs);
      else await delay(MIGRATION_POLL_MS);
    }
    if (this.current !== 'received') throw new InvalidGuestStateError(this.vmId, `incoming ${this.current}`, 'wait for the state');
  }

  /** The point of no return on this end: the target runs the VM (`cont`). Only after received(). */
  async commit(): Promise<void> {
    if (this.current === 'committed') return;
    if (this.current !== 'received') throw new InvalidGuestStateError(this.vmId, `incoming ${this.current}`, 'commit');
    await this.guest.qmp.execute('cont');
    this.move('committed');
    await this.onCommitted();
  }

  /** Marks the copy discarded; the driver quits QEMU and removes the guest. */
  markAborted(): void {
    if (canMoveIncoming(this.current, 'aborted')) this.move('aborted');
  }

  private move(next: IncomingState): void {
    if (!canMoveIncoming(this.current, next)) throw new InvalidGuestStateError(this.vmId, `incoming ${this.current}`, `move to ${next}`);
    this.current = next;
  }
}
