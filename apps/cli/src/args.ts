import { UsageError } from './errors.js';

/** A whole number in [min, max]; `what` names the option in the error. */
export function parseInteger(text: string, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^-?\d+$/.test(text.trim())) throw new UsageError(`${what} must be a whole number, got "${text}"`);
  const value = Number(text);
  if (value < min || value > max) {
    throw new UsageError(`${what} must be between ${min} and ${max}, got ${text}`);
  }
  return value;
}

/** A non-negative number (fractions allowed), e.g. a bandwidth in MiB/s. */
export function parseNumber(text: string, what: string, min = 0): number {
  const value = Number(text.trim());
  if (text.trim() === '' || !Number.isFinite(value) || value < min) {
    throw new UsageError(`${what} must be a number ≥ ${min}, got "${text}"`);
  }
  return value;
}

/** Memory in MiB: "2048", or with a unit "512M", "512MiB", "2G", "2GiB". */
export function parseMemoryMib(text: string, what = '--memory'): number {
  const match = /^(\d+(?:\.\d+)?)\s*(m|mi|mib|mb|g|gi|gib|gb)?$/i.exec(text.trim());
  if (!match) throw new UsageError(`${what} must be MiB (e.g. 1024) or have a unit (512M, 2G), got "${text}"`);
  const gib = match[2] !== undefined && match[2].toLowerCase().startsWith('g');
  const mib = Number(match[1]) * (gib ? 1024 : 1);
  if (!Number.isInteger(mib) || mib <= 0) throw new UsageError(`${what} must be a whole number of MiB > 0, got "${text}"`);
  return mib;
}

/** "true/false", "yes/no", "on/off", "1/0". */
export function parseBool(text: string, what: string): boolean {
  const t = text.trim().toLowerCase();
  if (['true', 'yes', 'on', '1'].includes(t)) return true;
  if (['false', 'no', 'off', '0'].includes(t)) return false;
  throw new UsageError(`${what} must be true or false, got "${text}"`);
}

/** Repeated `--label k=v` (`what` names the option): collects into one record; keys must be non-empty and unique. */
export function collectLabel(text: string, labels: Record<string, string> = {}, what = '--label'): Record<string, string> {
  const eq = text.indexOf('=');
  const key = eq > 0 ? text.slice(0, eq).trim() : '';
  if (key === '') throw new UsageError(`${what} must be key=value, got "${text}"`);
  if (key in labels) throw new UsageError(`${what} ${key} given twice`);
  return { ...labels, [key]: text.slice(eq + 1) };
}

/** "10s", "500ms", "2m", or a plain number of seconds → milliseconds. */
export function parseDurationMs(text: string, what: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!match) throw new UsageError(`${what} must be a duration like 10s, 500ms or 2m, got "${text}"`);
  const factor = { ms: 1, s: 1000, m: 60_000 }[(match[2] ?? 's') as 'ms' | 's' | 'm'];
  const ms = Number(match[1]) * factor;
  if (ms <= 0) throw new UsageError(`${what} must be longer than 0, got "${text}"`);
  return ms;
}

/** Names of nodes and VMs: what the user typed, trimmed, never empty. */
export function requireName(text: string, what: string): string {
  const name = text.trim();
  if (name === '') throw new UsageError(`${what} must not be empty`);
  return name;
}
