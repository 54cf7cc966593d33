import { setTimeout as delay } from 'node:timers/promises';
import { QmpTimeoutError } from '../errors.js';
import type { QmpClient } from '../qmp/qmp-client.js';

/** QEMU's dirty rate is in MB/s of 4 KiB pages (2^20 bytes): 256 pages per MB. */
export const PAGES_PER_QEMU_MB = 256;

/**
 * Measures the guest's dirty rate with calc-dirty-rate in `page-sampling` mode, then query-dirty-rate.
 * Never another mode: `dirty-bitmap` kills QEMU 7.2 under TCG (SIGSEGV), `dirty-ring` needs KVM.
 * Page sampling hashes 512 sampled pages per GiB at start and end of the window, so a rate below
 * 1 MB/s (256 pages/s) reads as 0.
 * @returns pages per second
 */
export async function measureDirtyRate(qmp: QmpClient, calcTimeSec = 1): Promise<number> {
  await qmp.execute('calc-dirty-rate', { 'calc-time': calcTimeSec, mode: 'page-sampling' });
  const deadline = Date.now() + calcTimeSec * 1000 + 10_000;
  await delay(calcTimeSec * 1000);
  for (;;) {
    const r = await qmp.execute<{ status: string; 'dirty-rate'?: number }>('query-dirty-rate');
    if (r.status === 'measured') return (r['dirty-rate'] ?? 0) * PAGES_PER_QEMU_MB;
    if (Date.now() >= deadline) throw new QmpTimeoutError('calc-dirty-rate', calcTimeSec * 1000 + 10_000);
    await delay(100);
  }
}
