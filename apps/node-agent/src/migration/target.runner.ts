import {
  HELLO_TIMEOUT_MARGIN_MS,
  listenForIncoming,
  MigrationReceiver,
  resolvePolicy,
  type DataPlaneTls,
  type IncomingListener,
  type IncomingResult,
  type PartialMigrationPolicy,
} from '@vmm/migration';
import type { Logger } from 'pino';
import { MigrationStepError } from '../errors.js';
import { asEmulated } from '../hypervisor/emulated-vm.js';
import type { ManagedVm } from '../vm/vm-manager.js';

/**
 * The target end of one migration on this node:
 * listening → receiving → ready → committed; listening, receiving or ready → discarded (final).
 * `discarded` covers failure, abort and timeout: the incoming VM is stopped and its memory freed.
 */
export type IncomingState = 'listening' | 'receiving' | 'ready' | 'committed' | 'discarded';

const allowed: Record<IncomingState, readonly IncomingState[]> = {
  listening: ['receiving', 'discarded'],
  receiving: ['ready', 'discarded'],
  ready: ['committed', 'discarded'],
  committed: [],
  discarded: [],
};

/** No sender connecting within this time discards the incoming VM. */
export const ACCEPT_TIMEOUT_MS = 60_000;

export interface TargetRunnerOptions {
  migrationId: string;
  token: string;
  /** Mutual TLS of the data connection (only the source node's certificate); undefined: plain TCP. */
  tls?: DataPlaneTls;
  /** The migration's policy (checked): what a driver's target must share with its source (QEMU's multifd). */
  policy: PartialMigrationPolicy;
  entry: ManagedVm;
  /** Address the data listener binds (AGENT_HOST). */
  bindHost: string;
  /** Host the source dials (from AGENT_ADVERTISE_ADDRESS), since the bind address may be 0.0.0.0. */
  advertiseHost: string;
  log: Logger;
  /** Removes the discarded VM from the node. */
  onDiscard: (runner: IncomingRunner) => void;
  /** Told synchronously on every state change, before it takes effect (`committed` is durable before the VM resumes). */
  onState: (state: IncomingState) => void;
}

/**
 * The target end of one migration as MigrationService drives it, whichever driver receives the VM.
 */
export interface IncomingRunner {
  readonly migrationId: string;
  readonly vmId: string;
  readonly state: IncomingState;
  /** Settles when the copy is ready to commit or was discarded; never rejects. */
  readonly settled: Promise<void>;
  resumedAtMs: number;
  /** Opens the data listener once; the address the source dials (PrepareIncomingResponse.data_address). */
  open(): Promise<string>;
  /** Resumes the VM under the committed epoch; returns when it resumed (epoch ms). Idempotent. */
  commit(): number | Promise<number>;
  /** Discards the incoming copy (any state before commit). Idempotent. */
  abort(reason: string): void;
}

/** Accepts one token-checked data connection and receives the VM into the paused incoming VM. */
export class TargetRunner implements IncomingRunner {
  private current: IncomingState = 'listening';
  private readonly abortController = new AbortController();
  private result: IncomingResult | undefined;
  private listener: IncomingListener | undefined;
  /** Why it was discarded. */
  error: Error | undefined;
  /** Settles when the transfer is ready to commit or was discarded; never rejects. */
  readonly settled: Promise<void>;
  private settle!: () => void;
  dataAddress = '';
  resumedAtMs = 0;

  constructor(private readonly opts: TargetRunnerOptions) {
    this.settled = new Promise((resolve) => (this.settle = resolve));
  }

  get migrationId(): string {
    return this.opts.migrationId;
  }

  get vmId(): string {
    return this.opts.entry.vm.id;
  }

  get state(): IncomingState {
    return this.current;
  }

  private opening: Promise<string> | undefined;

  /** Opens the data listener (once; later calls get the same address); the transfer runs in the background. */
  open(): Promise<string> {
    this.opening ??= this.listen();
    return this.opening;
  }

  private async listen(): Promise<string> {
    const { migrationId, token, bindHost, advertiseHost } = this.opts;
    this.listener = await listenForIncoming({
      host: bindHost,
      port: 0,
      token,
      migrationId,
      acceptTimeoutMs: ACCEPT_TIMEOUT_MS,
      signal: this.abortController.signal,
      tls: this.opts.tls,
    });
    this.dataAddress = `${advertiseHost.includes(':') ? `[${advertiseHost}]` : advertiseHost}:${this.listener.port}`;
    void this.receive(this.listener);
    return this.dataAddress;
  }

  private async receive(listener: IncomingListener): Promise<void> {
    const { migrationId, token, entry, log } = this.opts;
    try {
      const { connection, hello } = await listener.accept;
      // The listener's accept promise holds the data connection (its socket, its TLS context): a
      // settled runner is kept for a while (RETAIN_RUNNER_MS) and must not keep those with it.
      this.listener = undefined;
      if (!this.transition('receiving')) {
        connection.destroy();
        return;
      }
      log.info({ migrationId, vmId: entry.vm.id }, 'incoming migration connected');
      // A sender that falls silent must not hold the incoming VM forever: the default completion timeout
      // for its size plus a margin (a HELLO carrying the source's own policy timeout replaces it).
      const vmBytes = entry.vm.memory.pageCount * 4096;
      const timeoutMs = resolvePolicy(undefined, vmBytes).completionTimeoutMs + HELLO_TIMEOUT_MARGIN_MS;
      const receiver = new MigrationReceiver({ vm: asEmulated(entry.vm), migrationId, token, signal: this.abortController.signal, timeoutMs });
      const result = await receiver.run(connection, hello);
      if (!this.transition('ready')) {
        result.abort();
        return;
      }
      this.result = result;
      log.info({ migrationId, digest: result.targetDigest, stats: result.stats }, 'incoming migration verified');
    } catch (err) {
      this.discard(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.settle();
    }
  }

  /**
   * Resumes the VM under the committed epoch. Idempotent once committed.
   * @throws MigrationStepError before the transfer was verified, or after a discard
   */
  commit(): number {
    if (this.current === 'committed') return this.resumedAtMs;
    if (this.current !== 'ready' || !this.result) {
      throw new MigrationStepError(this.migrationId, `cannot commit: incoming migration is ${this.current}`);
    }
    this.transition('committed');
    this.resumedAtMs = this.result.commit().resumedAtMs;
    this.result = undefined; // nothing more to do with the transfer
    return this.resumedAtMs;
  }

  /** Discards the incoming VM (any state before commit). Idempotent. */
  abort(reason: string): void {
    if (this.current === 'committed') {
      throw new MigrationStepError(this.migrationId, 'cannot abort: the incoming VM was committed');
    }
    this.discard(new Error(`aborted: ${reason}`));
  }

  private discard(error: Error): void {
    if (!this.transition('discarded')) return;
    this.error = error;
    this.abortController.abort(error);
    this.listener?.close();
    this.listener = undefined;
    try {
      this.result?.abort();
    } catch {
      // already settled by the receiver; the VM is stopped below either way
    }
    this.result = undefined;
    this.opts.log.warn({ migrationId: this.migrationId, vmId: this.vmId, reason: error.message }, 'incoming migration discarded');
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
