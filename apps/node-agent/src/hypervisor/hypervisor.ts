import type { agent } from '@vmm/proto';
import type { Logger } from 'pino';
import type { IncomingRunner, TargetRunnerOptions } from '../migration/target.runner.js';
import type { OutgoingRunner, SourceRunnerOptions } from '../migration/source.runner.js';
import type { DirtySampler } from '../vm/dirty-tracker.js';
import type { ValidatedVmSpec } from '../vm/vm-spec.js';
import type { HypervisorKind } from './hypervisor-kind.js';

/**
 * The run state a driver reports for one of its VMs, in the driver's own terms; the VM manager maps
 * it (with the VM's migration role) onto cluster.VmState, so that reports do not know the driver.
 */
export type GuestRunState = 'running' | 'paused' | 'stopped';

/**
 * One guest as the VM manager, the reports and the lease guard see it, whichever driver runs it. The
 * emulator's VirtualMachine is one as it is; a QEMU guest is one through QemuVm. The calls are
 * synchronous (the manager's bookkeeping is): a driver whose guests answer asynchronously updates its
 * state at once, carries the work out behind it, and reports how that went through settled().
 */
export interface GuestVm {
  readonly id: string;
  readonly state: GuestRunState;
  /** Page writes the guest's workload made since it first booted (continues across a migration). */
  readonly writesTotal: number;
  readonly memory: { readonly pageCount: number; readonly residentPages: number };
  pause(): void;
  resume(): void;
  /** Stops the guest and frees its memory (for good: a new guest is made to start it again). */
  stop(): void;
  /**
   * Resolves when the work behind the last call is done (a boot, a QMP stop/cont, a quit), rejects
   * with its error. Absent: every call is done when it returns (the emulator).
   */
  settled?(): Promise<void>;
}

/** A guest found running when the agent started (QEMU outlives the agent), with the spec it runs. */
export interface RediscoveredGuest {
  vm: GuestVm;
  spec: agent.VmSpec;
}

/**
 * What the node agent asks of whatever runs its VMs (#13.1): the built-in emulator, or QEMU through
 * libs/qemu. Above it (VmManager, the reports, MigrationService, the gRPC handlers) nothing knows which
 * one runs a VM. Creation is idempotent per vm id in the manager; a call the VM's state does not allow
 * throws a FAILED_PRECONDITION error, which the agent's exception filter maps to that status.
 */
export interface Hypervisor {
  readonly kind: HypervisorKind;
  /**
   * Makes the guest of a validated spec. A plain one is started (the QEMU guest boots behind it: see
   * settled()); an incoming one is an empty, paused migration target that its IncomingRunner fills.
   */
  createGuest(valid: ValidatedVmSpec, incoming: boolean): GuestVm;
  /** The reports' dirty-memory client on a guest (a migration uses the driver's own). */
  dirtySampler(vm: GuestVm, nowMs: number): DirtySampler;
  /** The source end of one migration of `opts.entry`. */
  outgoing(opts: SourceRunnerOptions): OutgoingRunner;
  /** The target end of one migration into `opts.entry` (an incoming guest). */
  incoming(opts: TargetRunnerOptions): IncomingRunner;
  /** Host memory the node's guests hold, in bytes (NodeReport.memory_used_bytes). */
  memoryUsedBytes(): number;
  /** Remembers the spec (and epoch) a guest runs under, for a restarted agent to find (no-op where guests die with the agent). */
  recordSpec(spec: agent.VmSpec): void;
  /** Guests that outlived the previous agent process; each once, at start-up. */
  rediscovered(): RediscoveredGuest[];
  /** Agent shutdown: the emulator's guests end with the process; QEMU's are let go and found again. */
  shutdown(log: Logger): Promise<void>;
}
