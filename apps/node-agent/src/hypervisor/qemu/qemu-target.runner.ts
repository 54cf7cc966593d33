import { ConnectionLostError, HELLO_TIMEOUT_MARGIN_MS, resolvePolicy } from '@vmm/migration';
import type { IncomingMigration, QemuDriver } from '@vmm/qemu';
import { MAX_SWITCHOVER_HOLD_MS } from '../../config.js';
import { MigrationStepError } from '../../errors.js';
import { ACCEPT_TIMEOUT_MS, type IncomingRunner, type IncomingState, type TargetRunnerOptions } from '../../migration/target.runner.js';
import type { QemuVm } from './qemu-vm.js';
import { listenVerifyChannel, type VerifyChannel } from './verify-channel.js';

const allowed: Record<IncomingState, readonly IncomingState[]> = {
  listening: ['receiving', 'discarded'],
  receiving: ['ready', 'discarded'],
  ready: ['committed', 'discarded'],
  committed: [],
  discarded: [],
};

/** After the source's QEMU completed, the target's reports completed within this, ms. */
const RECEIVED_TIMEOUT_MS = 30_000;

/**
 * The target end of a QEMU migration, in the states of the emulator's TargetRunner:
 * listening (QEMU started with -S -incoming defer, migrate-incoming on a port the kernel chose; the
 * verify channel open) → receiving (the source said hello with the token and got QEMU's port) → ready
 * (QEMU completed, the guest paused, its RAM digest sent to the source) → committed (`cont` on
 * CommitIncoming); any state before committed → discarded (QEMU quits).
 */
export class QemuTargetRunner implements IncomingRunner {
  private current: IncomingState = 'listening';
  private opening: Promise<string> | undefined;
  private committing: Promise<number> | undefined;
  private incoming: IncomingMigration | undefined;
  private closeListener: (() => void) | undefined;
  private channel: VerifyChannel | undefined;
  error: Error | undefined;
  readonly settled: Promise<void>;
  private settle!: () => void;
  dataAddress = '';
  resumedAtMs = 0;

  constructor(
    private readonly driver: QemuDriver,
    private readonly vm: QemuVm,
    private readonly opts: TargetRunnerOptions,
  ) {
    this.settled = new Promise((resolve) => (this.settle = resolve));
  }

  get migrationId(): string {
    return this.opts.migrationId;
  }

  get vmId(): string {
    return this.vm.id;
  }

  get state(): IncomingState {
    return this.current;
  }

  open(): Promise<string> {
    this.opening ??= this.listen();
    return this.opening;
  }

  private async listen(): Promise<string> {
    const { migrationId, token, bindHost, advertiseHost } = this.opts;
    if (!this.vm.guestSpec) throw new MigrationStepError(migrationId, 'the incoming guest has no spec');
    this.vm.migrating = true;
    this.vm.hasProcess = true;
    const incoming = await this.driver.prepareIncoming(this.vm.guestSpec, { host: bindHost, port: 0, peerSubject: this.opts.tls?.peerSubject, policy: this.opts.policy });
    this.incoming = incoming;
    // abort() may have come while QEMU started (the state is read again after the await).
    if ((this.current as IncomingState) === 'discarded') {
      await this.driver.abortIncoming(this.vmId);
      throw new MigrationStepError(migrationId, 'discarded while it was being prepared');
    }
    const listener = await listenVerifyChannel(bindHost, migrationId, token, ACCEPT_TIMEOUT_MS, this.opts.tls);
    this.closeListener = listener.close;
    if ((this.current as IncomingState) === 'discarded') listener.close();
    this.dataAddress = `${advertiseHost.includes(':') ? `[${advertiseHost}]` : advertiseHost}:${listener.port}`;
    void this.receive(listener.accepted, incoming);
    return this.dataAddress;
  }

  private async receive(accepted: Promise<VerifyChannel>, incoming: IncomingMigration): Promise<void> {
    const { migrationId, log } = this.opts;
    try {
      const channel = await accepted;
      this.channel = channel;
      if (!this.transition('receiving')) {
        channel.close();
        return;
      }
      channel.send({ type: 'welcome', qemuPort: incoming.port });
      log.info({ migrationId, vmId: this.vmId, qemuPort: incoming.port }, 'incoming qemu migration connected');
      // The source asks for the digest once its QEMU completed; until then it may only go away.
      // The migration's own deadline (the policy the controller sent), plus the source's longest hold.
      const timeoutMs = resolvePolicy(this.opts.policy, this.vm.memoryMib * 1024 * 1024).completionTimeoutMs + HELLO_TIMEOUT_MARGIN_MS + MAX_SWITCHOVER_HOLD_MS;
      const ask = await channel.next(timeoutMs);
      if (ask.type !== 'digest') throw new ConnectionLostError(migrationId, `unexpected ${ask.type} on the verify channel`);
      try {
        await incoming.received(RECEIVED_TIMEOUT_MS);
        const d = await this.driver.digest(this.vmId);
        if (!this.transition('ready')) return;
        channel.send({ type: 'digest', digest: d.digest, dumpMs: d.dumpMs, hashMs: d.hashMs });
        log.info({ migrationId, digest: d.digest, digestMs: Math.round(d.dumpMs + d.hashMs) }, 'incoming qemu migration received and digested');
      } catch (err) {
        const e = err as Error & { code?: string };
        channel.send({ type: 'error', code: e.code ?? 'INTERNAL', message: e.message });
        throw err;
      }
    } catch (err) {
      this.discard(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.settle();
    }
  }

  commit(): Promise<number> {
    if (this.current !== 'ready' && this.current !== 'committed') {
      return Promise.reject(new MigrationStepError(this.migrationId, `cannot commit: incoming migration is ${this.current}`));
    }
    this.committing ??= (async () => {
      this.transition('committed');
      await this.driver.commitIncoming(this.vmId);
      this.vm.migrating = false;
      this.vm.observed('running');
      this.resumedAtMs = Date.now();
      this.channel?.close();
      return this.resumedAtMs;
    })();
    return this.committing;
  }

  abort(reason: string): void {
    if (this.current === 'committed') throw new MigrationStepError(this.migrationId, 'cannot abort: the incoming VM was committed');
    this.discard(new Error(`aborted: ${reason}`));
  }

  private discard(error: Error): void {
    if (!this.transition('discarded')) return;
    this.error = error;
    this.closeListener?.();
    this.channel?.close();
    this.vm.observed('stopped');
    this.vm.migrating = false;
    void this.vm.enqueue(() => this.driver.abortIncoming(this.vmId)).catch((err: unknown) => {
      this.opts.log.warn({ err, vmId: this.vmId }, 'discarding the incoming qemu guest failed');
    });
    this.opts.log.warn({ migrationId: this.migrationId, vmId: this.vmId, reason: error.message }, 'incoming qemu migration discarded');
    this.opts.onDiscard(this);
    this.settle();
  }

  private transition(next: IncomingState): boolean {
    if (!allowed[this.current].includes(next)) return false;
    this.opts.onState(next);
    this.current = next;
    return true;
  }
}
