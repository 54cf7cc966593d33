import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidPidError } from './errors.js';
import { hostKsmPaths, readHostKsm, readProcessKsmStat } from './host-ksm.reader.js';

describe('host KSM reader', () => {
  let dir: string;
  const saved = { ...hostKsmPaths };

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ksm-reader-'));
    hostKsmPaths.sysfsDir = path.join(dir, 'sys/kernel/mm/ksm');
    hostKsmPaths.procDir = path.join(dir, 'proc');
  });

  afterEach(async () => {
    Object.assign(hostKsmPaths, saved);
    await rm(dir, { recursive: true, force: true });
  });

  it('reads every numeric sysfs file and skips the others', async () => {
    await mkdir(hostKsmPaths.sysfsDir, { recursive: true });
    const files: Record<string, string> = {
      pages_shared: '71487\n',
      pages_sharing: '78361\n',
      full_scans: '3\n',
      general_profit: '-4096\n',
      run: '1\n',
      advisor_mode: '[none] scheduler\n',
    };
    for (const [name, text] of Object.entries(files)) await writeFile(path.join(hostKsmPaths.sysfsDir, name), text);
    await mkdir(path.join(hostKsmPaths.sysfsDir, 'subdir'));
    expect(await readHostKsm()).toEqual({ full_scans: 3, general_profit: -4096, pages_shared: 71487, pages_sharing: 78361, run: 1 });
  });

  it('gives {} when the host has no KSM directory or the process no ksm_stat', async () => {
    expect(await readHostKsm()).toEqual({});
    expect(await readProcessKsmStat(123)).toEqual({});
  });

  it('parses /proc/<pid>/ksm_stat lines', async () => {
    await mkdir(path.join(hostKsmPaths.procDir, '123'), { recursive: true });
    await writeFile(
      path.join(hostKsmPaths.procDir, '123', 'ksm_stat'),
      'ksm_rmap_items 10\nksm_zero_pages 0\nksm_merging_pages 7\nksm_process_profit 28032\nksm_merge_any: no\nksm_mergeable: yes\nfuture_key: [a] b\n',
    );
    expect(await readProcessKsmStat(123)).toEqual({
      ksm_rmap_items: 10,
      ksm_zero_pages: 0,
      ksm_merging_pages: 7,
      ksm_process_profit: 28032,
      ksm_merge_any: 0,
      ksm_mergeable: 1,
    });
  });

  it('rejects a pid that is not a positive integer', async () => {
    await expect(readProcessKsmStat(0)).rejects.toThrow(InvalidPidError);
    await expect(readProcessKsmStat(1.5)).rejects.toThrow(InvalidPidError);
  });

  it('reads the real host when it has KSM (this machine exposes /sys/kernel/mm/ksm)', async () => {
    Object.assign(hostKsmPaths, saved);
    const host = await readHostKsm();
    if (Object.keys(host).length === 0) return; // no KSM on this host: nothing more to check
    expect(typeof host.pages_sharing).toBe('number');
    expect(typeof host.full_scans).toBe('number');
    const own = await readProcessKsmStat(process.pid);
    if (Object.keys(own).length > 0) expect(typeof own.ksm_rmap_items).toBe('number');
  });
});
