import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { GuestSpec } from './guest-spec.js';

/**
 * What a guest's directory remembers about it (guest.json), so that a driver started after the agent
 * restarted knows which VM a QEMU process runs and in which role. Written atomically (rename).
 */
export interface GuestRecord {
  version: 1;
  spec: GuestSpec;
  /** 'guest': created and booted here; 'incoming': started with -incoming defer as a migration target. */
  origin: 'guest' | 'incoming';
  /** An incoming guest whose copy was committed (`cont`): the VM from then on, no longer a target. */
  committed?: boolean;
  /** The accelerator QEMU was started with. */
  accel: 'kvm' | 'tcg';
  createdAtMs: number;
}

export async function writeGuestRecord(file: string, record: GuestRecord): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp`;
  await writeFile(tmp, JSON.stringify(record));
  await rename(tmp, file);
}

/** The record, or null when it is missing or not one (a directory left half-made). */
export async function readGuestRecord(file: string): Promise<GuestRecord | null> {
  try {
    const r = JSON.parse(await readFile(file, 'utf8')) as GuestRecord;
    if (r?.version !== 1 || typeof r.spec?.vmId !== 'string' || (r.origin !== 'guest' && r.origin !== 'incoming')) return null;
    return r;
  } catch {
    return null;
  }
}
