import type { GuestPaths } from './guest-paths.js';

export type Accelerator = 'kvm' | 'tcg';

export interface QemuArgsInput {
  vmId: string;
  memoryMib: number;
  vcpus: number;
  accel: Accelerator;
  kernel: string;
  initrd: string;
  cmdline: string;
  paths: GuestPaths;
  /** A migration target: -S (stay paused after the migration) and -incoming defer (migrate-incoming later). */
  incoming: boolean;
}

/** QEMU option values are comma-separated: a literal comma is doubled. */
export function qemuOptValue(s: string): string {
  return s.replaceAll(',', ',,');
}

/**
 * The command line of one guest. -name guest=<vm_id> lets anyone find the guest's process by its VM
 * (docs/api.md: Node.hypervisor); -nodefaults -nographic: no devices but the serial console and QMP;
 * mem-merge=on marks guest RAM mergeable for the host's KSM (QEMU's default, said explicitly);
 * -no-reboot: a guest that panics (panic=1) makes QEMU exit instead of booting again.
 */
export function buildQemuArgs(a: QemuArgsInput): string[] {
  const args = [
    '-name', `guest=${qemuOptValue(a.vmId)}`,
    '-machine', `pc,accel=${a.accel},mem-merge=on`,
    '-m', String(a.memoryMib),
    '-smp', String(a.vcpus),
    '-nodefaults', '-nographic', '-no-user-config', '-no-reboot',
    '-kernel', a.kernel,
    '-initrd', a.initrd,
    '-append', a.cmdline,
    '-serial', `file:${a.paths.serialLog}`,
    '-qmp', `unix:${qemuOptValue(a.paths.qmpSocket)},server=on,wait=off`,
    '-pidfile', a.paths.pidFile,
  ];
  if (a.incoming) args.push('-S', '-incoming', 'defer');
  return args;
}
