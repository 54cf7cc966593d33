import type { FramePool } from '@vmm/emulator';
import { agent, cluster } from '@vmm/proto';
import type { Logger } from 'pino';
import { InsufficientMemoryError, InvalidRequestError, VmBusyError, VmFencedError, VmNotFoundError } from '../errors.js';
import { EmulatorHypervisor } from '../hypervisor/emulator.hypervisor.js';
import type { GuestVm, Hypervisor } from '../hypervisor/hypervisor.js';
import { AgentStateStore } from '../state/agent-state.store.js';
import type { DirtySampler } from './dirty-tracker.js';
import { FenceRegistry } from './fence-registry.js';
import { validateVmSpec, type VmLimits } from './vm-spec.js';

/**
 * What a VM on this node is doing besides running:
 * - `none`: a plain VM;
 * - `incoming`: a paused migration target being filled (not runnable until committed);
 * - `outgoing`: the source of a migration in flight (reported MIGRATING).
 */
export type VmRole = 'none' | 'incoming' | 'outgoing';

export interface ManagedVm {
  /** The guest, whichever driver runs it (Hypervisor). */
  readonly vm: GuestVm;
  spec: agent.VmSpec;
  fencingEpoch: number;
  role: VmRole;
  /** The migration this VM is the source of while `role` is `outgoing`. */
  migrationId: string;
  readonly tracker: DirtySampler;
  readonly createdAtMs: number;
  /**
   * False for a VM migrated in until the controller confirms it here (a report ack): until then the
   * controller may still resume the source's copy instead, so the lease guards it like a restartable VM.
   */
  confirmed: boolean;
  /** Paused by the lease guard (not by anyone else): resumed by the guard when the lease is renewed. */
  leasePaused: boolean;
}

/** The lease guards this VM: the controller may run another copy of it elsewhere if it loses contact with this node. */
export function isLeaseGuarded(entry: Pick<ManagedVm, 'spec' | 'confirmed' | 'role'>): boolean {
  if (entry.role === 'incoming') return false;
  return !entry.confirmed || entry.spec.restartPolicy === cluster.RestartPolicy.RESTART_POLICY_ALWAYS;
}

/** Emulator state → cluster state; a migration in flight shows as MIGRATING on the source. */
export function toVmState(entry: Pick<ManagedVm, 'vm' | 'role'>): cluster.VmState {
  if (entry.vm.state === 'stopped') return cluster.VmState.VM_STATE_STOPPED;
  if (entry.role !== 'none') return cluster.VmState.VM_STATE_MIGRATING;
  return entry.vm.state === 'running' ? cluster.VmState.VM_STATE_RUNNING : cluster.VmState.VM_STATE_PAUSED;
}

/** Told when a VM starts running on this node and before it stops (KSM registers its memory). */
export interface VmLifecycleHooks {
  started(entry: ManagedVm): void;
  stopping(entry: ManagedVm): void;
}

/**
 * The VMs of this node, run by its Hypervisor (the emulator's over one FramePool, or QEMU). Create is
 * idempotent per vm_id (the controller retries), delete of an absent VM succeeds, and no VM id runs
 * under an epoch it was fenced past.
 */
export class VmManager {
  private readonly vms = new Map<string, ManagedVm>();
  readonly fences: FenceRegistry;
  private hooks: VmLifecycleHooks | undefined;

  constructor(
    readonly pool: FramePool,
    private readonly limits: VmLimits,
    private readonly log: Logger,
    private readonly nowMs: () => number = () => performance.now(),
    readonly store: AgentStateStore = AgentStateStore.open(undefined),
    readonly hypervisor: Hypervisor = new EmulatorHypervisor(pool),
  ) {
    this.fences = new FenceRegistry(store);
  }

  /**
   * Takes up the guests that outlived the previous agent process (QEMU), under the epochs they ran at,
   * unconfirmed until the controller's first ack. Call once, before the agent registers.
   */
  adoptRediscovered(): ManagedVm[] {
    const adopted: ManagedVm[] = [];
    for (const { vm, spec } of this.hypervisor.rediscovered()) {
      if (this.vms.has(vm.id)) continue;
      const entry: ManagedVm = {
        vm,
        spec,
        fencingEpoch: spec.fencingEpoch,
        role: 'none',
        migrationId: '',
        tracker: this.hypervisor.dirtySampler(vm, this.nowMs()),
        createdAtMs: Date.now(),
        confirmed: false,
        leasePaused: false,
      };
      this.vms.set(vm.id, entry);
      this.notify('started', entry);
      adopted.push(entry);
      this.log.info({ vmId: vm.id, fencingEpoch: spec.fencingEpoch, state: vm.state }, 'vm found running from before the agent restarted');
    }
    return adopted;
  }

  /**
   * Waits for the driver's work behind the entry's last call (a QEMU boot, stop, cont); a guest that
   * failed to boot is removed and its error thrown.
   */
  async settle(entry: ManagedVm): Promise<ManagedVm> {
    try {
      await entry.vm.settled?.();
    } catch (err) {
      if (this.vms.get(entry.vm.id) === entry && entry.vm.state === 'stopped' && entry.role === 'none') this.delete(entry.vm.id);
      throw err;
    }
    return entry;
  }

  setHooks(hooks: VmLifecycleHooks): void {
    this.hooks = hooks;
  }

  /**
   * Creates and starts a VM, or returns the one already running under this id.
   * @throws InvalidVmSpecError (and the emulator's argument errors) for a bad spec
   * @throws VmFencedError when the epoch is older than the id's fence or its running copy
   * @throws VmBusyError when the id is a migration target not yet committed
   */
  create(spec: agent.VmSpec | undefined, options: { incoming?: boolean } = {}): ManagedVm {
    const valid = validateVmSpec(spec, this.limits);
    const { vmId, fencingEpoch } = valid.spec;
    this.fences.check(vmId, fencingEpoch);
    const existing = this.vms.get(vmId);
    if (existing) {
      if (fencingEpoch < existing.fencingEpoch) throw new VmFencedError(vmId, fencingEpoch, existing.fencingEpoch);
      // Incoming VMs are made once per migration; the migration service dedupes by migration id.
      if (options.incoming) throw new VmBusyError(vmId, 'it is already on this node');
      if (existing.role === 'incoming') throw new VmBusyError(vmId, 'it is an incoming migration');
      return existing;
    }
    const vm = this.hypervisor.createGuest(valid, options.incoming === true);
    const entry: ManagedVm = {
      vm,
      spec: valid.spec,
      fencingEpoch,
      role: options.incoming ? 'incoming' : 'none',
      migrationId: '',
      tracker: this.hypervisor.dirtySampler(vm, this.nowMs()),
      createdAtMs: Date.now(),
      confirmed: true,
      leasePaused: false,
    };
    this.vms.set(vmId, entry);
    if (!options.incoming) {
      this.hypervisor.recordSpec(entry.spec);
      this.notify('started', entry);
    }
    this.log.info(
      { vmId, image: valid.image, memoryMib: valid.memoryMib, fencingEpoch, incoming: options.incoming === true },
      'vm created',
    );
    return entry;
  }

  /** Stops a VM and frees its memory. Absent VMs are fine: the controller retries deletes. */
  delete(vmId: string): boolean {
    const entry = this.vms.get(vmId);
    if (!entry) return false;
    this.vms.delete(vmId);
    if (entry.role !== 'incoming') this.notify('stopping', entry);
    entry.tracker.dispose();
    if (entry.vm.state !== 'stopped') entry.vm.stop();
    this.log.info({ vmId }, 'vm deleted');
    return true;
  }

  /**
   * Destroys this node's copy and fences the id at `epoch`: from now on nothing here runs it under
   * an older epoch (the VM lives on elsewhere after a committed migration).
   */
  fenceAndDestroy(vmId: string, epoch: number): void {
    this.fences.fence(vmId, epoch);
    this.delete(vmId);
  }

  /**
   * A committed migration target becomes an ordinary VM of this node under the new epoch. Its dirty
   * log is cleared: the transfer's page writes are not guest activity.
   */
  adoptIncoming(entry: ManagedVm, fencingEpoch: number): void {
    entry.fencingEpoch = fencingEpoch;
    entry.spec = { ...entry.spec, fencingEpoch };
    entry.role = 'none';
    entry.confirmed = false;
    entry.tracker.reset(this.nowMs());
    this.hypervisor.recordSpec(entry.spec);
    this.notify('started', entry);
  }

  /**
   * A paused source copy that the controller says runs on here (a rolled back or reverted migration):
   * it becomes an ordinary VM again under `fencingEpoch` (the VM's epoch, or the reverted one).
   */
  resumeOutgoing(entry: ManagedVm, fencingEpoch: number): void {
    this.fences.check(entry.vm.id, fencingEpoch);
    if (fencingEpoch > entry.fencingEpoch) {
      entry.fencingEpoch = fencingEpoch;
      entry.spec = { ...entry.spec, fencingEpoch };
      this.hypervisor.recordSpec(entry.spec);
    }
    entry.role = 'none';
    entry.migrationId = '';
  }

  /**
   * A lifecycle action asked by the controller on a VM outside any migration. Repeating an action
   * whose state is reached already succeeds (the controller retries); what the emulator's state
   * machine does not allow (pause a stopped VM) throws its INVALID_VM_STATE. START boots the VM fresh
   * from its spec: a new emulator instance, memory from its image only, the workload from its seed.
   * @throws VmNotFoundError, VmFencedError (an older epoch than this copy's), VmBusyError (migrating)
   */
  setPower(vmId: string, fencingEpoch: number, action: agent.PowerAction): ManagedVm {
    const entry = this.require(vmId);
    if (fencingEpoch < entry.fencingEpoch) throw new VmFencedError(vmId, fencingEpoch, entry.fencingEpoch);
    if (entry.role !== 'none') throw new VmBusyError(vmId, entry.role === 'outgoing' ? 'it is migrating' : 'it is an incoming migration');
    const { vm } = entry;
    switch (action) {
      case agent.PowerAction.POWER_ACTION_PAUSE:
        vm.pause();
        // Paused by the controller now, not by the lease guard: a renewed lease must not resume it.
        entry.leasePaused = false;
        break;
      case agent.PowerAction.POWER_ACTION_RESUME:
        vm.resume();
        entry.leasePaused = false;
        break;
      case agent.PowerAction.POWER_ACTION_STOP:
        if (vm.state === 'stopped') break;
        this.notify('stopping', entry);
        entry.tracker.dispose();
        vm.stop();
        break;
      case agent.PowerAction.POWER_ACTION_START:
        if (vm.state !== 'stopped') break;
        this.vms.delete(vmId);
        this.log.info({ vmId, fencingEpoch: entry.fencingEpoch }, 'vm started fresh from its image');
        return this.create({ ...entry.spec, fencingEpoch: entry.fencingEpoch });
      default:
        throw new InvalidRequestError('action', `unknown power action ${String(action)}`);
    }
    this.log.info({ vmId, action, state: vm.state }, 'vm power action');
    return entry;
  }

  /** The lease ran out: a guarded VM stops running until the controller confirms it again. */
  pauseForLease(entry: ManagedVm): boolean {
    if (!isLeaseGuarded(entry) || entry.vm.state !== 'running' || entry.role !== 'none') return false;
    entry.vm.pause();
    entry.leasePaused = true;
    this.log.warn({ vmId: entry.vm.id, fencingEpoch: entry.fencingEpoch }, 'lease with the controller expired: vm paused');
    return true;
  }

  /** The controller confirmed the VM here at its epoch: it runs again if the lease guard had paused it. */
  confirm(entry: ManagedVm): void {
    entry.confirmed = true;
    if (!entry.leasePaused) return;
    entry.leasePaused = false;
    if (entry.vm.state === 'paused') entry.vm.resume();
    this.log.info({ vmId: entry.vm.id, fencingEpoch: entry.fencingEpoch }, 'lease renewed: vm resumed');
  }

  private notify(event: keyof VmLifecycleHooks, entry: ManagedVm): void {
    try {
      this.hooks?.[event](entry);
    } catch (err) {
      // A hook (KSM bookkeeping) failing must not fail or half-do the VM operation itself.
      this.log.error({ err, vmId: entry.vm.id, event }, 'vm lifecycle hook failed');
    }
  }

  get(vmId: string): ManagedVm | undefined {
    return this.vms.get(vmId);
  }

  /** @throws VmNotFoundError */
  require(vmId: string): ManagedVm {
    const entry = this.vms.get(vmId);
    if (!entry) throw new VmNotFoundError(vmId);
    return entry;
  }

  all(): IterableIterator<ManagedVm> {
    return this.vms.values();
  }

  get size(): number {
    return this.vms.size;
  }

  status(entry: ManagedVm): agent.VmStatus {
    return {
      vmId: entry.vm.id,
      state: toVmState(entry),
      pagesTotal: entry.vm.memory.pageCount,
      residentPages: entry.vm.state === 'stopped' ? 0 : entry.vm.memory.residentPages,
      fencingEpoch: entry.fencingEpoch,
      spec: { ...entry.spec, fencingEpoch: entry.fencingEpoch },
      writesTotal: entry.vm.writesTotal,
    };
  }

  /** Every VM of this node, migration targets included (lease guard, reconcile). */
  /**
   * Refuses a VM of `memoryMib` that would take the node's VMs (incoming copies included) past what it
   * may allocate: the controller admits the same way, this is the node's own line for a decision
   * made on stale numbers or by a confused caller.
   * @throws InsufficientMemoryError (RESOURCE_EXHAUSTED)
   */
  assertRoomFor(vmId: string, memoryMib: number): void {
    let allocated = 0;
    for (const entry of this.vms.values()) if (entry.spec.vmId !== vmId) allocated += entry.spec.memoryMib;
    const free = this.limits.maxMemoryMib - allocated;
    if (memoryMib > free) throw new InsufficientMemoryError(vmId, memoryMib, Math.max(0, free));
  }

  entries(): ManagedVm[] {
    return [...this.vms.values()];
  }

  /** Every VM except migration targets not yet committed (they are not the controller's VMs yet). */
  list(): agent.VmStatus[] {
    const out: agent.VmStatus[] = [];
    for (const entry of this.vms.values()) if (entry.role !== 'incoming') out.push(this.status(entry));
    return out;
  }

  /** Shutdown: stops every VM. */
  stopAll(): void {
    for (const vmId of [...this.vms.keys()]) this.delete(vmId);
  }
}
