/** Migration ids sort by creation time, like VM ids (see vm/vm-id.ts). */
import { randomBytes } from 'node:crypto';

export function newMigrationId(nowMs: number = Date.now()): string {
  return `mig-${nowMs.toString(36).padStart(9, '0')}-${randomBytes(5).toString('hex')}`;
}

/** The one-time secret of a migration's data connection. */
export function newMigrationToken(): string {
  return randomBytes(24).toString('hex');
}
