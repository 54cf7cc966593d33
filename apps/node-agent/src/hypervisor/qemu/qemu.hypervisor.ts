import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { bitmapWords } from '@vmm/emulator';
import { QemuDriver, type GuestSpec } from '@vmm/qemu';
import type { agent } from '@vmm/proto';
import type { Logger } from 'pino';
import type { OutgoingRunner, SourceRunnerOptions } from '../../migration/source.runner.js';
import type { IncomingRunner, TargetRunnerOptions } from '../../migration/target.runner.js';
import type { DirtySample, DirtySampler } from '../../vm/dirty-tracker.js';
import type { ValidatedVmSpec } from '../../vm/vm-spec.js';
import type { GuestRunState, GuestVm, Hypervisor, RediscoveredGuest } from '../hypervisor.js';
import { QemuSourceRunner } from './qemu-source.runner.js';
import { QemuTargetRunner } from './qemu-target.runner.js';
import { QemuVm } from './qemu-vm.js';

/** How often the poller reads each guest's console counter, VmRSS and run state, ms. */
export const QEMU_POLL_MS = 1_000;
/** calc-dirty-rate every this many polls (it samples for 1 s; QEMU runs one at a time). */
const DIRTY_RATE_EVERY_POLLS = 3;

export interface QemuHypervisorOptions {
  /** The driver's state directory (one directory per guest, kept across agent restarts). */
  stateDir: string;
  log: Logger;
  /** The node's certificate and the CA: QEMU's migration stream over TLS. Undefined: plain TCP. */
  tls?: { ca: Buffer; cert: Buffer; key: Buffer };
}

/**
 * The QEMU driver behind the agent: each VM one qemu-system-x86_64 process (libs/qemu's QemuDriver),
 * migrated by QEMU itself under the same phases and the same digest check (qemu-source.runner.ts,
 * qemu-target.runner.ts). QEMU outlives the agent: the specs (with their fencing epochs) the guests
 * run under are kept beside the driver's state, so that a restarted agent reports them again.
 */
export class QemuHypervisor implements Hypervisor {
  readonly kind = 'qemu' as const;
  private readonly guests = new Map<string, QemuVm>();
  private readonly specsDir: string;
  private found: RediscoveredGuest[] = [];
  private timer: NodeJS.Timeout | undefined;
  private polls = 0;
  private polling = false;

  private constructor(
    readonly driver: QemuDriver,
    private readonly log: Logger,
  ) {
    this.specsDir = path.join(driver.stateDir, 'specs');
    mkdirSync(this.specsDir, { recursive: true });
  }

  /**
   * Opens the driver on `stateDir` (QEMU and the guest image checked, the accelerator chosen, running
   * guests reattached) and takes up the guests it found. @throws QemuUnavailableError
   */
  static async open(opts: QemuHypervisorOptions): Promise<QemuHypervisor> {
    const driver = await QemuDriver.open({ stateDir: opts.stateDir, tls: opts.tls });
    const h = new QemuHypervisor(driver, opts.log);
    await h.takeUpRediscovered();
    h.timer = setInterval(() => void h.poll(), QEMU_POLL_MS);
    h.timer.unref();
    opts.log.info({ stateDir: driver.stateDir, accel: driver.accel, guests: h.found.length }, 'qemu driver ready');
    return h;
  }

  createGuest(valid: ValidatedVmSpec, incoming: boolean): GuestVm {
    const vmId = valid.spec.vmId;
    // A copy of the same id that is still quitting (stopped, then started again) goes first.
    const previous = this.guests.get(vmId);
    const vm = new QemuVm(vmId, this.driver, valid.memoryMib, incoming ? 'paused' : 'running', previous?.settled());
    this.guests.set(vmId, vm);
    if (incoming) vm.guestSpec = guestSpecOf(valid);
    else vm.boot(guestSpecOf(valid));
    return vm;
  }

  dirtySampler(vm: GuestVm, nowMs: number): DirtySampler {
    return new QemuDirtySampler(this.qemuVm(vm), nowMs);
  }

  outgoing(opts: SourceRunnerOptions): OutgoingRunner {
    return new QemuSourceRunner(this.driver, this.qemuVm(opts.entry.vm), opts);
  }

  incoming(opts: TargetRunnerOptions): IncomingRunner {
    return new QemuTargetRunner(this.driver, this.qemuVm(opts.entry.vm), opts);
  }

  memoryUsedBytes(): number {
    let total = 0;
    for (const vm of this.guests.values()) if (vm.state !== 'stopped') total += vm.residentBytes;
    return total;
  }

  recordSpec(spec: agent.VmSpec): void {
    const file = this.specFile(spec.vmId);
    writeFileSync(`${file}.tmp`, JSON.stringify(spec));
    renameSync(`${file}.tmp`, file);
  }

  rediscovered(): RediscoveredGuest[] {
    const found = this.found;
    this.found = [];
    return found;
  }

  /** Graceful shutdown stops the guests (a crashed agent's guests run on and are found again). */
  async shutdown(log: Logger): Promise<void> {
    clearInterval(this.timer);
    await Promise.all([...this.guests.values()].map((vm) => vm.settled().catch(() => {})));
    const ids = this.driver.list();
    await this.driver.destroyAll();
    for (const vmId of ids) rmSync(this.specFile(vmId), { force: true });
    if (ids.length > 0) log.info({ guests: ids.length }, 'qemu guests stopped');
  }

  private qemuVm(vm: GuestVm): QemuVm {
    if (!(vm instanceof QemuVm)) throw new Error(`VM ${vm.id} is not a QEMU guest`);
    return vm;
  }

  private specFile(vmId: string): string {
    return path.join(this.specsDir, `${createHash('sha256').update(vmId).digest('hex').slice(0, 16)}.json`);
  }

  /**
   * The guests the driver reattached to, with the spec each ran under. A guest without one was never
   * the controller's VM here (an incoming copy not committed): it goes. A source caught mid-migration
   * before its switch-over is cancelled (it runs on; the restart made that migration's end LOST).
   */
  private async takeUpRediscovered(): Promise<void> {
    const known = new Set<string>();
    for (const vmId of this.driver.list()) {
      const file = this.specFile(vmId);
      let spec: agent.VmSpec | undefined;
      try {
        spec = JSON.parse(readFileSync(file, 'utf8')) as agent.VmSpec;
      } catch {
        spec = undefined;
      }
      if (!spec || spec.vmId !== vmId) {
        this.log.warn({ vmId }, 'qemu guest without a recorded spec (an uncommitted incoming copy): stopped');
        await this.driver.delete(vmId).catch(() => {});
        continue;
      }
      const out = this.driver.outgoingOf(vmId);
      if (out && (out.state === 'starting' || out.state === 'precopy' || out.state === 'switchover-ready')) await out.cancel().catch(() => {});
      const status = await this.driver.status(vmId).catch(() => undefined);
      const state: GuestRunState = !status || status.state === 'gone' || status.state === 'crashed' ? 'stopped' : status.state === 'running' || status.state === 'starting' ? 'running' : 'paused';
      if (state === 'stopped') {
        await this.driver.delete(vmId).catch(() => {});
        rmSync(file, { force: true });
        continue;
      }
      const vm = new QemuVm(vmId, this.driver, Number(spec.memoryMib), state);
      vm.hasProcess = true;
      this.guests.set(vmId, vm);
      this.found.push({ vm, spec });
      known.add(path.basename(file));
    }
    for (const name of readdirSync(this.specsDir)) if (!known.has(name)) rmSync(path.join(this.specsDir, name), { force: true });
    await this.poll();
  }

  /** Refreshes every guest's figures; a guest whose QEMU is gone reads as stopped. */
  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    const measure = this.polls++ % DIRTY_RATE_EVERY_POLLS === 0;
    try {
      for (const [vmId, vm] of this.guests) {
        if (vm.state === 'stopped' && !vm.hasProcess) {
          if (this.driver.list().includes(vmId) === false) this.guests.delete(vmId);
          continue;
        }
        if (!this.driver.list().includes(vmId)) continue; // booting or incoming, not started yet
        try {
          const stats = await this.driver.stats(vmId);
          vm.residentBytes = stats.residentBytes;
          if (stats.writesTotal !== null) vm.writesTotal = stats.writesTotal;
          const status = await this.driver.status(vmId);
          if (status.state === 'gone' || status.state === 'crashed') {
            if (vm.state !== 'stopped' && !vm.migrating) this.log.warn({ vmId, qemuStatus: status.qemuStatus }, 'qemu guest died');
            if (!vm.migrating) vm.observed('stopped');
          } else if (measure && status.state === 'running' && vm.state === 'running' && !vm.migrating) {
            vm.dirtyRatePagesPerSec = await this.driver.measureDirtyRate(vmId, 1);
          }
        } catch (err) {
          this.log.debug({ err, vmId }, 'polling a qemu guest failed');
        }
      }
    } finally {
      this.polling = false;
    }
  }
}

/** The agent's validated spec as the driver's GuestSpec (the same fields the emulator takes). */
export function guestSpecOf(valid: ValidatedVmSpec): GuestSpec {
  return { vmId: valid.spec.vmId, memoryMib: valid.memoryMib, vcpus: valid.vcpus, image: valid.image, workload: valid.workload };
}

/**
 * The reports' view of a QEMU guest's memory writes: QEMU's calc-dirty-rate (page sampling) gives a
 * rate, not pages, so the bitmap is empty, the dirty pages are the rate over the interval, and there
 * is no working-set estimate (0).
 */
class QemuDirtySampler implements DirtySampler {
  private readonly bitmap: Uint32Array;
  private lastSampleMs: number;

  constructor(
    private readonly vm: QemuVm,
    nowMs: number,
  ) {
    this.bitmap = new Uint32Array(bitmapWords(vm.memory.pageCount));
    this.lastSampleMs = nowMs;
  }

  sample(nowMs: number): DirtySample {
    const elapsedMs = Math.max(nowMs - this.lastSampleMs, 1);
    this.lastSampleMs = nowMs;
    const rate = this.vm.state === 'running' ? this.vm.dirtyRatePagesPerSec : 0;
    return { bitmap: this.bitmap, dirtyPages: Math.round((rate * elapsedMs) / 1000), dirtyRatePagesPerSec: rate, workingSetPages: 0, elapsedMs };
  }

  reset(nowMs: number): void {
    this.lastSampleMs = nowMs;
  }

  dispose(): void {}
}
