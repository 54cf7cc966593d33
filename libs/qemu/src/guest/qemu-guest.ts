import { rm } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { GuestStartError, InvalidGuestStateError, QmpConnectionError } from '../errors.js';
import type { QmpClient } from '../qmp/qmp-client.js';
import type { GuestPaths } from './guest-paths.js';
import type { GuestRecord } from './guest-record.js';
import { guestStateOf, type GuestState } from './guest-state.js';
import { isProcessAlive, readResidentBytes } from './proc-info.js';
import { killQuietly, waitForExit } from './qemu-process.js';
import { SerialConsole } from './serial-console.js';

export interface GuestStatus {
  vmId: string;
  state: GuestState;
  /** QEMU's own run state (query-status `status`), or 'gone'. */
  qemuStatus: string;
  pid: number;
}

export interface GuestStats {
  /** Resident memory of the QEMU process (VmRSS), bytes: what the guest really costs the host. */
  residentBytes: number;
  /** Page writes the guest program reported last (its serial console), null before its first report. */
  writesTotal: number | null;
  /** The last dirty rate measured with measureDirtyRate(), pages/s, null if never measured. */
  dirtyRatePagesPerSec: number | null;
}

/** How long quit() waits for QEMU to exit before it kills the process. */
export const QUIT_TIMEOUT_MS = 5_000;

/** One QEMU process running one guest, reached through QMP; the driver keeps one per vm id. */
export class QemuGuest {
  readonly console: SerialConsole;
  lastDirtyRatePagesPerSec: number | null = null;
  private gone = false;

  constructor(
    readonly record: GuestRecord,
    readonly pid: number,
    readonly qmp: QmpClient,
    readonly paths: GuestPaths,
  ) {
    this.console = new SerialConsole(paths.serialLog);
    qmp.on('close', () => {
      if (!isProcessAlive(pid)) this.gone = true;
    });
  }

  get vmId(): string {
    return this.record.spec.vmId;
  }

  /** QEMU's run state; 'gone' when its process is. */
  async qemuStatus(): Promise<string> {
    if (this.gone || !isProcessAlive(this.pid)) {
      this.gone = true;
      return 'gone';
    }
    try {
      const r = await this.qmp.execute<{ status: string }>('query-status');
      return r.status;
    } catch (err) {
      if (err instanceof QmpConnectionError && !isProcessAlive(this.pid)) {
        this.gone = true;
        return 'gone';
      }
      throw err;
    }
  }

  async status(): Promise<GuestStatus> {
    const qemuStatus = await this.qemuStatus();
    const consoleState = await this.console.poll();
    const state: GuestState = qemuStatus === 'gone' ? 'gone' : guestStateOf(qemuStatus, consoleState.ready || this.record.origin === 'incoming');
    return { vmId: this.vmId, state, qemuStatus, pid: this.pid };
  }

  async stats(): Promise<GuestStats> {
    const consoleState = await this.console.poll();
    return {
      residentBytes: (await readResidentBytes(this.pid)) ?? 0,
      writesTotal: consoleState.writesTotal,
      dirtyRatePagesPerSec: this.lastDirtyRatePagesPerSec,
    };
  }

  /**
   * Waits until the guest program printed `vmm: ready` (its image is in memory and its workload runs).
   * @throws GuestStartError when the guest reports an error, QEMU exits, or `timeoutMs` passes
   */
  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.console.poll();
      if (s.error) throw new GuestStartError(this.vmId, `the guest program says: ${s.error}`);
      if (s.ready) return;
      if (!isProcessAlive(this.pid)) throw new GuestStartError(this.vmId, 'QEMU exited during boot');
      if (Date.now() >= deadline) throw new GuestStartError(this.vmId, `no 'vmm: ready' on the console after ${timeoutMs} ms`);
      await delay(100);
    }
  }

  /** stop: the vCPUs halt; memory and the workload's place stay. Only from running. */
  async pause(): Promise<void> {
    const s = await this.qemuStatus();
    if (s === 'paused') return;
    if (s !== 'running') throw new InvalidGuestStateError(this.vmId, s, 'pause');
    await this.qmp.execute('stop');
  }

  /**
   * cont: the vCPUs run again. From paused, and from postmigrate (an outgoing migration that completed
   * but was not committed: the source takes the VM back).
   */
  async resume(): Promise<void> {
    const s = await this.qemuStatus();
    if (s === 'running') return;
    if (s !== 'paused' && s !== 'postmigrate') throw new InvalidGuestStateError(this.vmId, s, 'resume');
    await this.qmp.execute('cont');
  }

  /** quit through QMP, then SIGKILL by pid when QEMU has not exited within QUIT_TIMEOUT_MS; removes its files. */
  async destroy(): Promise<void> {
    if (isProcessAlive(this.pid)) {
      await this.qmp.execute('quit', undefined, { timeoutMs: 2_000 }).catch(() => {}); // the socket closes as QEMU exits
      if (!(await waitForExit(this.pid, QUIT_TIMEOUT_MS))) {
        killQuietly(this.pid);
        await waitForExit(this.pid, QUIT_TIMEOUT_MS);
      }
    }
    this.gone = true;
    this.qmp.close();
    await rm(this.paths.dir, { recursive: true, force: true });
  }

  /** Lets go of QEMU without stopping it (the agent shuts down; a later driver reattaches). */
  detach(): void {
    this.qmp.close();
  }
}
