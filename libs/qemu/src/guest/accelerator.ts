import { accessSync, constants } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { buildKernelCmdline } from './kernel-cmdline.js';
import { pathsIn } from './guest-paths.js';
import { resolveGuestSpec } from './guest-spec.js';
import { buildQemuArgs, type Accelerator } from './qemu-args.js';
import { killQuietly, startQemu, waitForExit } from './qemu-process.js';
import { SerialConsole } from './serial-console.js';
import { setTimeout as delay } from 'node:timers/promises';
import type { GuestImage } from './host-setup.js';

/** A guest that boots under KVM prints `vmm: ready` in about 2 s; a broken (nested) KVM never does. */
export const KVM_PROBE_TIMEOUT_MS = 15_000;

/**
 * KVM when a guest really boots under it, else TCG. `/dev/kvm` existing is not enough: under nested
 * virtualization here query-kvm says present and enabled, yet a Linux guest never gets past the kernel
 * decompressor. So the probe boots the guest image under KVM (the empty image, idle, 128 MiB) and waits
 * for its `vmm: ready`. The answer is kept in `<stateDir>/accel.json`, keyed by QEMU binary and kernel,
 * so that an agent's restart does not probe again.
 */
export async function detectAccelerator(binary: string, image: GuestImage, stateDir: string): Promise<Accelerator> {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return 'tcg';
  }
  const cacheFile = path.join(stateDir, 'accel.json');
  const key = `${binary} ${image.kernel}`;
  try {
    const cached = JSON.parse(await readFile(cacheFile, 'utf8')) as { key: string; accel: Accelerator };
    if (cached.key === key && (cached.accel === 'kvm' || cached.accel === 'tcg')) return cached.accel;
  } catch {
    // no answer kept yet
  }
  const accel = (await kvmBoots(binary, image, path.join(stateDir, 'accel-probe'))) ? 'kvm' : 'tcg';
  await writeFile(cacheFile, JSON.stringify({ key, accel }));
  return accel;
}

async function kvmBoots(binary: string, image: GuestImage, dir: string): Promise<boolean> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const spec = resolveGuestSpec({
    vmId: 'accel-probe',
    memoryMib: 128,
    vcpus: 1,
    image: 'empty',
    workload: { kind: 'idle', dirtyRatePagesPerSec: 0, workingSetPages: 0, seed: 0 },
  });
  const paths = pathsIn(dir);
  const args = buildQemuArgs({ vmId: spec.vmId, memoryMib: 128, vcpus: 1, accel: 'kvm', kernel: image.kernel, initrd: image.initrd, cmdline: buildKernelCmdline(spec), paths, incoming: false });
  let pid: number | null = null;
  try {
    const started = await startQemu(binary, args, spec.vmId, paths, 5_000);
    pid = started.pid;
    started.qmp.close();
    const console = new SerialConsole(paths.serialLog);
    const deadline = Date.now() + KVM_PROBE_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if ((await console.poll()).ready) return true;
      await delay(100);
    }
    return false;
  } catch {
    return false; // QEMU refused KVM outright
  } finally {
    if (pid !== null) {
      killQuietly(pid);
      await waitForExit(pid, 5_000);
    }
    await rm(dir, { recursive: true, force: true });
  }
}
