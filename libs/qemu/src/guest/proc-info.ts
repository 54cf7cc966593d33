import { readFile } from 'node:fs/promises';

/** Whether a process with that pid exists (signal 0 probes without signalling). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The process's command line as arguments, or null when it is gone. */
export async function readCmdline(pid: number): Promise<string[] | null> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((a) => a !== '');
  } catch {
    return null;
  }
}

/** Resident memory of the process in bytes (VmRSS of /proc/<pid>/status), or null when it is gone. */
export async function readResidentBytes(pid: number): Promise<number | null> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * Whether `pid` is the QEMU of that vm id: alive, and its command line says -name guest=<vm_id>. A pid
 * file may outlive its QEMU, and the kernel may have given the pid to another process since.
 */
export async function isQemuOf(pid: number, vmId: string): Promise<boolean> {
  const args = await readCmdline(pid);
  if (!args) return false;
  const i = args.indexOf('-name');
  return i !== -1 && args[i + 1] === `guest=${vmId.replaceAll(',', ',,')}`;
}
