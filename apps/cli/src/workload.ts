import { cluster } from '@vmm/proto';
import { UsageError } from './errors.js';

const KINDS: Record<string, cluster.WorkloadKind> = {
  idle: cluster.WorkloadKind.WORKLOAD_KIND_IDLE,
  uniform: cluster.WorkloadKind.WORKLOAD_KIND_UNIFORM,
  hotcold: cluster.WorkloadKind.WORKLOAD_KIND_HOTCOLD,
  sequential: cluster.WorkloadKind.WORKLOAD_KIND_SEQUENTIAL,
};

export const WORKLOAD_KINDS = Object.keys(KINDS);

/** "2000", "2k", "1.5k", "1M" → pages per second. */
export function parseRate(text: string, what = 'rate'): number {
  const match = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(text.trim());
  if (!match) throw new UsageError(`${what} must be a non-negative number of pages/s (e.g. 2000 or 2k), got "${text}"`);
  const scale = { '': 1, k: 1e3, K: 1e3, m: 1e6, M: 1e6 }[match[2] as '' | 'k' | 'K' | 'm' | 'M'];
  return Number(match[1]) * scale;
}

function parseWhole(text: string, what: string): number {
  if (!/^\d+$/.test(text.trim())) throw new UsageError(`${what} must be a whole number ≥ 0, got "${text}"`);
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new UsageError(`${what} is too large: ${text}`);
  return value;
}

/**
 * `kind[:rate[:wss_mib[:seed]]]`, e.g. `uniform:2000`, `hotcold:8k:256:7`, `idle`.
 * A missing rate is 0 (only sensible for idle), a missing working set 0 (the whole memory).
 */
export function parseWorkload(spec: string): cluster.Workload {
  const parts = spec.trim().split(':');
  if (parts.length > 4) throw new UsageError(`--workload is kind[:rate[:wss_mib[:seed]]], got "${spec}"`);
  const [kindText = '', rateText, wssText, seedText] = parts;
  const kind = KINDS[kindText.toLowerCase()];
  if (kind === undefined) {
    throw new UsageError(`unknown workload kind "${kindText}" (one of ${WORKLOAD_KINDS.join(', ')})`);
  }
  const dirtyRatePagesPerSec = rateText ? parseRate(rateText, 'workload rate') : 0;
  if (kind === cluster.WorkloadKind.WORKLOAD_KIND_IDLE && dirtyRatePagesPerSec > 0) {
    throw new UsageError('an idle workload writes nothing: give it no rate (or pick uniform, hotcold, sequential)');
  }
  if (kind !== cluster.WorkloadKind.WORKLOAD_KIND_IDLE && dirtyRatePagesPerSec === 0) {
    throw new UsageError(`a ${kindText.toLowerCase()} workload needs a rate, e.g. ${kindText.toLowerCase()}:2000`);
  }
  return {
    kind,
    dirtyRatePagesPerSec,
    workingSetMib: wssText ? parseWhole(wssText, 'workload working set (MiB)') : 0,
    seed: seedText ? parseWhole(seedText, 'workload seed') : 0,
  };
}

/** `uniform@2k pages/s`-style label for tables: kind@rate. */
export function workloadLabel(workload: cluster.Workload | undefined, formatRate: (r: number) => string): string {
  if (!workload) return '—';
  const kind = workload.kind.replace('WORKLOAD_KIND_', '').toLowerCase();
  if (workload.kind === cluster.WorkloadKind.WORKLOAD_KIND_IDLE || workload.dirtyRatePagesPerSec === 0) return kind;
  return `${kind}@${formatRate(workload.dirtyRatePagesPerSec)}`;
}
