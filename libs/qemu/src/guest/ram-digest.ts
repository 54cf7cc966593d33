import { randomBytes } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FlatMemoryDigest, initHashing } from '@vmm/emulator';
import { DigestError } from '../errors.js';
import type { QmpClient } from '../qmp/qmp-client.js';

export interface RamDigest {
  /** 16 hex chars: the emulator's digest function over the guest's RAM pages in guest-physical order. */
  digest: string;
  pages: number;
  /** pmemsave (QEMU writing the dump). */
  dumpMs: number;
  /** Reading the dump back and hashing it. */
  hashMs: number;
}

const READ_CHUNK_BYTES = 8 * 1024 * 1024;
/** pmemsave of 256 MiB takes 116–142 ms here; the deadline leaves room for a loaded machine. */
const PMEMSAVE_TIMEOUT_MS_PER_GIB = 60_000;

/**
 * Writes guest RAM [0, memoryBytes) to `file` (QMP pmemsave: guest-physical addresses, in order).
 * @throws DigestError
 */
export async function dumpGuestRam(qmp: QmpClient, vmId: string, memoryBytes: number, file: string): Promise<void> {
  const timeoutMs = 10_000 + Math.ceil((memoryBytes / 2 ** 30) * PMEMSAVE_TIMEOUT_MS_PER_GIB);
  try {
    await qmp.execute('pmemsave', { val: 0, size: memoryBytes, filename: file }, { timeoutMs });
  } catch (err) {
    throw new DigestError(vmId, `pmemsave: ${(err as Error).message}`);
  }
}

/**
 * Hashes guest RAM [0, memoryBytes): QEMU dumps it with pmemsave to a file in `shmDir` (/dev/shm: RAM,
 * no disk), then the file is hashed with the emulator's FlatMemoryDigest, so that an emulator digest
 * and a QEMU digest of the same memory agree. The file is removed whatever happens. Meant for a guest
 * whose vCPUs are stopped (the end of a migration), else the digest is of a moving memory.
 * @throws DigestError
 */
export async function digestGuestRam(qmp: QmpClient, vmId: string, memoryBytes: number, shmDir: string): Promise<RamDigest> {
  await initHashing();
  const file = path.join(shmDir, `vmm-qemu-${process.pid}-${randomBytes(6).toString('hex')}.ram`);
  const t0 = performance.now();
  try {
    await dumpGuestRam(qmp, vmId, memoryBytes, file);
    const t1 = performance.now();
    const d = new FlatMemoryDigest();
    const fh = await open(file, 'r');
    let total = 0;
    try {
      const buf = Buffer.allocUnsafe(READ_CHUNK_BYTES);
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, total);
        if (bytesRead === 0) break;
        d.update(buf.subarray(0, bytesRead));
        total += bytesRead;
      }
    } finally {
      await fh.close();
    }
    if (total !== memoryBytes) throw new DigestError(vmId, `the RAM dump has ${total} bytes, expected ${memoryBytes}`);
    return { digest: d.digest(), pages: d.pages, dumpMs: t1 - t0, hashMs: performance.now() - t1 };
  } finally {
    await rm(file, { force: true });
  }
}
