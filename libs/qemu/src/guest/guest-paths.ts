import { createHash } from 'node:crypto';
import path from 'node:path';
import { InvalidGuestSpecError } from '../errors.js';

/**
 * Where a guest's files live in the driver's state directory: one directory per guest, named after a
 * hash of the vm id (a vm id may be 128 characters, and a unix socket path is limited to 107 bytes);
 * its guest.json names the vm id, so that a driver started later finds every guest again.
 */
export interface GuestPaths {
  dir: string;
  /** QMP socket (server in QEMU). */
  qmpSocket: string;
  /** QEMU's -pidfile. */
  pidFile: string;
  /** The guest's serial console (-serial file:). */
  serialLog: string;
  /** QEMU's own stderr (start-up errors). */
  stderrLog: string;
  /** The guest record (GuestRecord as JSON), written before QEMU starts. */
  record: string;
}

/** sockaddr_un.sun_path holds 108 bytes including the terminating NUL. */
const MAX_UNIX_SOCKET_PATH = 107;
const GUEST_DIR_PREFIX = 'vm-';

export function guestDirName(vmId: string): string {
  return GUEST_DIR_PREFIX + createHash('sha256').update(vmId).digest('hex').slice(0, 16);
}

export function isGuestDirName(name: string): boolean {
  return /^vm-[0-9a-f]{16}$/.test(name);
}

export function guestPaths(stateDir: string, vmId: string): GuestPaths {
  const dir = path.join(stateDir, guestDirName(vmId));
  return pathsIn(dir);
}

export function pathsIn(dir: string): GuestPaths {
  return {
    dir,
    qmpSocket: path.join(dir, 'qmp.sock'),
    pidFile: path.join(dir, 'qemu.pid'),
    serialLog: path.join(dir, 'serial.log'),
    stderrLog: path.join(dir, 'qemu.stderr'),
    record: path.join(dir, 'guest.json'),
  };
}

/** @throws InvalidGuestSpecError when the state directory is so deep that a QMP socket path would not fit */
export function checkStateDir(stateDir: string): string {
  const abs = path.resolve(stateDir);
  // QEMU's -serial file: and -qmp unix: take option strings, where a comma would split the path.
  if (abs.includes(',')) throw new InvalidGuestSpecError('stateDir', `${abs} contains a comma`);
  const longest = path.join(abs, `${GUEST_DIR_PREFIX}${'0'.repeat(16)}`, 'qmp.sock');
  if (Buffer.byteLength(longest) > MAX_UNIX_SOCKET_PATH) {
    throw new InvalidGuestSpecError('stateDir', `${abs} is too long for unix socket paths (${Buffer.byteLength(longest)} > ${MAX_UNIX_SOCKET_PATH} bytes)`);
  }
  return abs;
}
