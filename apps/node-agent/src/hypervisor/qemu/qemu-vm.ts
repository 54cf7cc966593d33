import { InvalidVmStateError, PAGE_SIZE } from '@vmm/emulator';
import { GuestNotFoundError, type GuestSpec, type QemuDriver } from '@vmm/qemu';
import type { GuestRunState, GuestVm } from '../hypervisor.js';

/**
 * A QEMU guest as the VM manager sees it (GuestVm). State changes are taken at once and carried out
 * through QMP behind them, one after the other (a pause waits for the boot before it); settled()
 * tells how the last one went. The figures (writes, resident memory, dirty rate) are the poller's
 * (QemuHypervisor): the guest program's console counter, VmRSS, calc-dirty-rate.
 */
export class QemuVm implements GuestVm {
  private current: GuestRunState;
  private chain: Promise<void> = Promise.resolve();
  writesTotal = 0;
  residentBytes = 0;
  dirtyRatePagesPerSec = 0;
  /** True while a migration drives the guest: the poller then measures no dirty rate (QMP refuses). */
  migrating = false;
  /** A QEMU process exists for it (booted, being booted, or an incoming one started). */
  hasProcess = false;
  /** What the guest is made of (an incoming guest's QEMU is started from it by its migration). */
  guestSpec: GuestSpec | undefined;
  readonly memory: { readonly pageCount: number; readonly residentPages: number };

  constructor(
    readonly id: string,
    private readonly driver: QemuDriver,
    readonly memoryMib: number,
    initial: GuestRunState,
    /** Where the driver goes to (or waits on) before this guest's first call: a previous copy's quit. */
    before: Promise<void> = Promise.resolve(),
  ) {
    this.current = initial;
    this.chain = before.catch(() => {});
    const pageCount = (memoryMib * 1024 * 1024) / PAGE_SIZE;
    const self = this;
    this.memory = {
      pageCount,
      get residentPages() {
        return self.current === 'stopped' ? 0 : Math.min(pageCount, Math.round(self.residentBytes / PAGE_SIZE));
      },
    };
  }

  get state(): GuestRunState {
    return this.current;
  }

  /**
   * Boots the guest: settled() once its QEMU runs and answers (the guest OS and its program come up
   * behind it, a few seconds under TCG: writesTotal starts counting then), as a hypervisor's create does.
   */
  boot(spec: GuestSpec): void {
    this.guestSpec = spec;
    this.hasProcess = true;
    this.enqueue(async () => {
      try {
        await this.driver.create(spec, { waitReady: false });
      } catch (err) {
        this.current = 'stopped';
        this.hasProcess = false;
        throw err;
      }
    });
  }

  pause(): void {
    if (this.current === 'paused') return;
    if (this.current === 'stopped') throw new InvalidVmStateError(this.id, this.current, 'pause');
    this.current = 'paused';
    this.enqueue(() => this.driver.pause(this.id));
  }

  resume(): void {
    if (this.current === 'running') return;
    if (this.current === 'stopped') throw new InvalidVmStateError(this.id, this.current, 'resume');
    this.current = 'running';
    this.enqueue(() => this.driver.resume(this.id));
  }

  stop(): void {
    if (this.current === 'stopped' && !this.hasProcess) return;
    this.current = 'stopped';
    this.hasProcess = false;
    this.enqueue(() => this.driver.delete(this.id).catch((err: unknown) => {
      if (!(err instanceof GuestNotFoundError)) throw err;
    }));
  }

  /** The guest's state as a migration or the poller found it (no QMP call behind it). */
  observed(state: GuestRunState): void {
    this.current = state;
    if (state === 'stopped') this.hasProcess = false;
  }

  settled(): Promise<void> {
    return this.chain;
  }

  /** Runs `op` after every earlier one (whatever became of them). */
  enqueue(op: () => Promise<void>): Promise<void> {
    const next = this.chain.catch(() => {}).then(op);
    this.chain = next;
    return next;
  }
}
