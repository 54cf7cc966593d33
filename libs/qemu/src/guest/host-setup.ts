import { accessSync, constants, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { QemuUnavailableError } from '../errors.js';

/** The guest image scripts/build-guest-image.sh makes. */
export interface GuestImage {
  kernel: string;
  initrd: string;
}

/** `VMM_GUEST_IMAGE_DIR`, else the repository's .cache/guest (this file is libs/qemu/{src,dist}/guest/). */
export function defaultGuestImageDir(): string {
  if (process.env.VMM_GUEST_IMAGE_DIR) return path.resolve(process.env.VMM_GUEST_IMAGE_DIR);
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../.cache/guest');
}

/** The image in `dir`, or null when it is not built. */
export function findGuestImage(dir = defaultGuestImageDir()): GuestImage | null {
  const kernel = path.join(dir, 'vmlinuz');
  const initrd = path.join(dir, 'initramfs.cpio.gz');
  const usable = (f: string) => existsSync(f) && statSync(f).size > 0;
  return usable(kernel) && usable(initrd) ? { kernel, initrd } : null;
}

/** `QEMU_BINARY`, else qemu-system-x86_64 on PATH; null when there is none. */
export function findQemuBinary(): string | null {
  const explicit = process.env.QEMU_BINARY;
  if (explicit) return isExecutable(explicit) ? explicit : null;
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(path.delimiter)) {
    const candidate = path.join(dir || '.', 'qemu-system-x86_64');
    if (isExecutable(candidate)) return candidate;
  }
  return null;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * Why QEMU guests cannot run here, or null when they can: what the tests print when they skip and what
 * QemuDriver.open() throws.
 */
export function qemuUnavailableReason(imageDir = defaultGuestImageDir()): string | null {
  if (!findQemuBinary()) return 'qemu-system-x86_64 is not installed (bash scripts/ensure-qemu.sh installs it)';
  if (!findGuestImage(imageDir)) return `no guest image in ${imageDir} (bash scripts/build-guest-image.sh builds it)`;
  return null;
}

export function requireHost(imageDir: string): { binary: string; image: GuestImage } {
  const reason = qemuUnavailableReason(imageDir);
  if (reason) throw new QemuUnavailableError(reason);
  return { binary: findQemuBinary()!, image: findGuestImage(imageDir)! };
}
