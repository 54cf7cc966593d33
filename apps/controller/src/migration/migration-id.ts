/** Migration ids sort by creation time, like VM ids (see vm/vm-id.ts). */
import { randomBytes } from 'node:crypto';

export function newMigrationId(nowMs: number = Date.now()): string {
  return `${migrationIdFloor(nowMs)}${randomBytes(5).toString('hex')}`;
}

/** The prefix of every id created at `nowMs`: ids created earlier sort below it, later ones above. */
export function migrationIdFloor(nowMs: number): string {
  return `mig-${nowMs.toString(36).padStart(9, '0')}-`;
}

/** The one-time secret of a migration's data connection. */
export function newMigrationToken(): string {
  return randomBytes(24).toString('hex');
}
