import { getImage, PAGE_SIZE, UnknownImageError, validateWorkloadConfig, type ImageSpec, type WorkloadConfig } from '@vmm/emulator';
import { InvalidGuestSpecError } from '../errors.js';

/**
 * What a QEMU guest is made of: the same fields the emulator's VirtualMachine takes (the agent's
 * validated VM spec serves both drivers). The workload's working set is in pages, as the emulator's.
 */
export interface GuestSpec {
  vmId: string;
  memoryMib: number;
  vcpus: number;
  image: string;
  workload: WorkloadConfig;
}

/** A spec checked and resolved: the image's spec, the working set the guest program really writes. */
export interface ResolvedGuestSpec extends GuestSpec {
  imageSpec: ImageSpec;
  /** Pages the guest program writes to: workload.workingSetPages, or the memory it may use for 0. */
  workingSetPages: number;
}

/**
 * Memory the guest's kernel and initramfs keep for themselves, in MiB: image and working set live in
 * the rest. Measured: Debian's 6.1 kernel with the 1.4 MiB initramfs boots with ~40 MiB in use.
 */
export const GUEST_OS_RESERVED_MIB = 64;
/** The smallest guest: the reserve plus room for a small image. */
export const MIN_GUEST_MEMORY_MIB = 128;
export const MAX_GUEST_MEMORY_MIB = 64 * 1024;
export const MAX_GUEST_VCPUS = 64;
/**
 * A vm id names the guest on QEMU's command line (`-name guest=<vm_id>`) and in file names: 1–128
 * letters, digits, '.', '_', ':' or '-', starting with a letter or digit (no ',' that QEMU would split on).
 */
export const VM_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const PAGES_PER_MIB = (1024 * 1024) / PAGE_SIZE;

/** @throws InvalidGuestSpecError, UnknownImageError (field `image`), or the emulator's InvalidArgumentError for the workload */
export function resolveGuestSpec(spec: GuestSpec): ResolvedGuestSpec {
  if (typeof spec.vmId !== 'string' || !VM_ID_PATTERN.test(spec.vmId)) {
    throw new InvalidGuestSpecError('vmId', "must be 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit");
  }
  if (!Number.isInteger(spec.memoryMib) || spec.memoryMib < MIN_GUEST_MEMORY_MIB || spec.memoryMib > MAX_GUEST_MEMORY_MIB) {
    throw new InvalidGuestSpecError('memoryMib', `must be an integer in ${MIN_GUEST_MEMORY_MIB}..${MAX_GUEST_MEMORY_MIB}, got ${spec.memoryMib}`);
  }
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1 || spec.vcpus > MAX_GUEST_VCPUS) {
    throw new InvalidGuestSpecError('vcpus', `must be an integer in 1..${MAX_GUEST_VCPUS}, got ${spec.vcpus}`);
  }
  const imageSpec = getImage(spec.image);
  if (!imageSpec) throw new UnknownImageError(spec.image);
  const usablePages = (spec.memoryMib - GUEST_OS_RESERVED_MIB) * PAGES_PER_MIB;
  if (imageSpec.pages > usablePages) {
    throw new InvalidGuestSpecError(
      'memoryMib',
      `image ${imageSpec.name} needs ${imageSpec.pages / PAGES_PER_MIB} MiB plus ${GUEST_OS_RESERVED_MIB} MiB for the guest's kernel`,
    );
  }
  validateWorkloadConfig(spec.workload, spec.memoryMib * PAGES_PER_MIB);
  // The emulator's 0 means the whole memory; a real guest keeps its kernel's share.
  const workingSetPages = spec.workload.workingSetPages === 0 ? usablePages : spec.workload.workingSetPages;
  if (workingSetPages > usablePages) {
    throw new InvalidGuestSpecError(
      'workload.workingSetPages',
      `${workingSetPages} pages do not fit beside the guest's kernel (at most ${usablePages} in ${spec.memoryMib} MiB)`,
    );
  }
  return { ...spec, workload: { ...spec.workload }, imageSpec, workingSetPages };
}
