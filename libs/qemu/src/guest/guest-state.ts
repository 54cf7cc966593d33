/**
 * A guest as the driver reports it, derived from QEMU's run state (query-status) and the guest's role:
 *
 * - `starting`:  QEMU is up, the guest program has not printed `vmm: ready` yet.
 * - `running`:   the vCPUs run (QEMU `running`).
 * - `paused`:    stopped by pause() or at the end of an incoming migration, waiting for resume()/commit
 *                (QEMU `paused`, `postmigrate` once an outgoing migration completed).
 * - `migrating`: an outgoing migration holds the source stopped for the switch-over (QEMU
 *                `finish-migrate`), or precopy runs with the vCPUs on (then it reads `running`).
 * - `incoming`:  a migration target waiting for or receiving the state (QEMU `inmigrate`).
 * - `crashed`:   QEMU reports the guest dead (`internal-error`, `guest-panicked`, `shutdown`, …).
 * - `gone`:      the QEMU process is gone.
 */
export type GuestState = 'starting' | 'running' | 'paused' | 'migrating' | 'incoming' | 'crashed' | 'gone';

/** Maps QEMU's RunState (qapi/run-state.json) to GuestState. */
export function guestStateOf(qemuStatus: string, ready: boolean): GuestState {
  switch (qemuStatus) {
    case 'running':
      return ready ? 'running' : 'starting';
    case 'paused':
    case 'postmigrate':
    case 'prelaunch':
    case 'suspended':
    case 'save-vm':
    case 'restore-vm':
    case 'debug':
      return 'paused';
    case 'finish-migrate':
      return 'migrating';
    case 'inmigrate':
      return 'incoming';
    default:
      return 'crashed'; // internal-error, io-error, shutdown, guest-panicked, watchdog, colo
  }
}
