import { hashString32 } from '@vmm/emulator';
import type { ResolvedGuestSpec } from './guest-spec.js';

/** Console report period of the guest program, in ms (its "vmm: writes=" lines). */
export const GUEST_REPORT_MS = 200;

/**
 * The kernel command line that parameterises the guest program (libs/qemu/guest/vmm-workload.c reads
 * the vmm.* words from /proc/cmdline). The image is passed resolved (name, seed, pages) so that the
 * name → image rule lives in one place, the emulator's getImage(); the salt is the emulator's per-VM
 * value salt (hashString32 of the vm id), so both drivers write the same values for the same VM.
 * `quiet` keeps the boot log short (the serial port is slow under TCG); `panic=1` with QEMU's
 * -no-reboot turns a guest kernel panic into the QEMU process exiting.
 */
export function buildKernelCmdline(spec: ResolvedGuestSpec): string {
  const w = spec.workload;
  return [
    'console=ttyS0',
    'quiet',
    'panic=1',
    `vmm.image=${spec.imageSpec.name}`,
    `vmm.image_seed=${spec.imageSpec.seed >>> 0}`,
    `vmm.image_pages=${spec.imageSpec.pages}`,
    `vmm.kind=${w.kind}`,
    `vmm.rate=${w.dirtyRatePagesPerSec}`,
    `vmm.ws_pages=${spec.workingSetPages}`,
    `vmm.seed=${BigInt.asUintN(64, BigInt(w.seed))}`,
    `vmm.salt=${hashString32(spec.vmId)}`,
    `vmm.report_ms=${GUEST_REPORT_MS}`,
  ].join(' ');
}
