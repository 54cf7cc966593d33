import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { InvalidPidError } from './errors.js';

/**
 * Where the host's KSM state lives. Mutable so that tests can point them at a fixture directory, as
 * kubevirt's ksm.go does with its package-level paths.
 */
export const hostKsmPaths = {
  /** ksmd's knobs and counters, one number per file. */
  sysfsDir: '/sys/kernel/mm/ksm',
  /** procfs root; a process's counters are in <procDir>/<pid>/ksm_stat. */
  procDir: '/proc',
};

const NUMBER = /^-?\d+$/;

/**
 * Every numeric file of the host's KSM sysfs directory (pages_shared, pages_sharing, full_scans,
 * general_profit, run, …) as numbers, keyed by file name; non-numeric files (advisor_mode) are left out.
 * An absent directory (no KSM in the kernel, or no /sys) gives {}.
 */
export async function readHostKsm(dir = hostKsmPaths.sysfsDir): Promise<Record<string, number>> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return {};
  }
  const out: Record<string, number> = {};
  await Promise.all(
    names.sort().map(async (name) => {
      try {
        const text = (await readFile(path.join(dir, name), 'utf8')).trim();
        if (NUMBER.test(text)) out[name] = Number(text);
      } catch {
        // unreadable (permissions) or a directory: not a counter
      }
    }),
  );
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}

/**
 * A process's /proc/<pid>/ksm_stat (Linux ≥ 6.1): `key value` lines as numbers, keyed without the
 * trailing ':' some keys carry; the yes/no flags (`ksm_merge_any: no`) become 1/0, anything else
 * non-numeric is left out, so the result fits a map<string, int64>. {} if the file does not exist.
 */
export async function readProcessKsmStat(pid: number, procDir = hostKsmPaths.procDir): Promise<Record<string, number>> {
  if (!Number.isInteger(pid) || pid <= 0) throw new InvalidPidError(pid);
  let text: string;
  try {
    text = await readFile(path.join(procDir, String(pid), 'ksm_stat'), 'utf8');
  } catch {
    return {};
  }
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z0-9_]+):?\s+(\S+)\s*$/.exec(line);
    if (!m) continue;
    const value = m[2];
    if (NUMBER.test(value)) out[m[1]] = Number(value);
    else if (value === 'yes' || value === 'no') out[m[1]] = value === 'yes' ? 1 : 0;
  }
  return out;
}
