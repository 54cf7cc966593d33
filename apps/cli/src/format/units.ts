// Human-friendly numbers: binary sizes (MiB/GiB, as the API counts memory), page rates, durations.

export const PAGE_SIZE_BYTES = 4096;
const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'] as const;

/** Keeps three significant digits at most, and drops a trailing ".0": 1.5, 12.3, 123, 8. */
function compact(value: number): string {
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : value === Math.trunc(value) ? 0 : 1;
  const text = value.toFixed(digits);
  return text.endsWith('.0') ? text.slice(0, -2) : text;
}

export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return '—';
  let value = Math.abs(bytes);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  // 1023.96 MiB rounds to "1024 MiB": say "1 GiB" instead.
  if (unit < UNITS.length - 1 && Number(compact(value)) >= 1024) {
    value /= 1024;
    unit += 1;
  }
  return `${bytes < 0 ? '-' : ''}${unit === 0 ? Math.round(value) : compact(value)} ${UNITS[unit]}`;
}

export function formatMib(mib: number): string {
  return mib === 0 ? '0 MiB' : formatBytes(mib * 1024 * 1024);
}

export function formatPages(pages: number): string {
  return formatBytes(pages * PAGE_SIZE_BYTES);
}

/** 12 → "12", 12345 → "12.3k", 2500000 → "2.5M". */
export function formatCount(n: number): string {
  const abs = Math.abs(n);
  if (abs < 1000) return compact(n);
  if (abs < 1e6) return `${compact(n / 1e3)}k`;
  if (abs < 1e9) return `${compact(n / 1e6)}M`;
  return `${compact(n / 1e9)}G`;
}

/** A dirty rate: "850 pages/s", "2k pages/s", "1.2M pages/s". */
export function formatPageRate(pagesPerSec: number): string {
  return `${formatCount(Math.round(pagesPerSec))} pages/s`;
}

export function formatThroughput(bytesPerSec: number): string {
  return `${formatBytes(bytesPerSec)}/s`;
}

/** "0.4 ms", "230 ms", "4.31 s", "42.5 s", "2m 05s", "1h 02m". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '—';
  if (ms < 10) return `${ms === Math.trunc(ms) ? ms : ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 10) return `${seconds.toFixed(2)} s`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const totalSeconds = Math.round(seconds);
  if (totalSeconds < 3600) {
    return `${Math.floor(totalSeconds / 60)}m ${String(totalSeconds % 60).padStart(2, '0')}s`;
  }
  const minutes = Math.floor(totalSeconds / 60);
  return `${Math.floor(minutes / 60)}h ${String(minutes % 60).padStart(2, '0')}m`;
}

/** An allocation ratio: 4 → "4", 1.5 → "1.5". */
export function formatRatio(ratio: number): string {
  return Number.isInteger(ratio) ? String(ratio) : String(Number(ratio.toFixed(2)));
}

/** How long ago an epoch-milliseconds timestamp was: "3 s ago"; "never" for 0. */
export function formatAgo(epochMs: number, nowMs = Date.now()): string {
  if (!epochMs) return 'never';
  return `${formatDuration(Math.max(0, nowMs - epochMs))} ago`;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-/i;

/**
 * The part of an id that tells objects apart in a table: a UUID's first 8 hex digits (as git and
 * docker show them); for ids built as `<kind>-<time>-<random>` (the controller's), the random tail.
 */
export function shortId(id: string): string {
  if (UUID.test(id)) return id.slice(0, 8);
  const tail = id.slice(id.lastIndexOf('-') + 1);
  if (tail.length >= 6 && tail.length < id.length) return tail;
  return id.length > 12 ? id.slice(-8) : id;
}

/** `VM_STATE_RUNNING` → `RUNNING`: the enum's prefix stripped for display, as docs/api.md writes it. */
export function stripEnumPrefix(value: string, prefix: string): string {
  return value.startsWith(prefix) ? value.slice(prefix.length) : value;
}
