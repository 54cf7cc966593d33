import type { agent } from '@vmm/proto';
import type { HypervisorKind } from './hypervisor-kind.js';

/**
 * The run state a driver reports for one of its VMs, in the driver's own terms; the VM manager maps
 * it (with the VM's migration role) onto cluster.VmState, so that reports do not know the driver.
 */
export type GuestRunState = 'running' | 'paused' | 'stopped';

/**
 * What the node agent asks of whatever runs its VMs (#13.1): the built-in emulator, or QEMU through
 * libs/qemu. Lifecycle only: creation is idempotent per vm id like the manager's, every call on an
 * absent VM throws VmNotFoundError, and a call the VM's state does not allow (pause a stopped VM,
 * start a running one) throws the driver's FAILED_PRECONDITION error, which the agent's exception
 * filter maps to that gRPC status. Pause/resume/stop/start are here so that the lifecycle calls of
 * the API (PauseVm, ResumeVm, StopVm, StartVm) reach both drivers through one seam.
 */
export interface Hypervisor {
  readonly kind: HypervisorKind;
  /** Pauses the guest's vCPUs; its memory stays. */
  pause(vmId: string): Promise<void>;
  /** Runs a paused guest again. */
  resume(vmId: string): Promise<void>;
  /** Stops the guest and drops its memory; the VM's record stays on this node. */
  stop(vmId: string): Promise<void>;
  /** Boots a stopped guest fresh from its image. */
  start(vmId: string): Promise<void>;
  runState(vmId: string): GuestRunState;
  /** The VM's status as the agent reports it (state, pages, epoch, write counter). */
  status(vmId: string): agent.VmStatus;
}
