/** The one-time data-connection token: compared in constant time, so that its bytes cannot be probed. */
import { timingSafeEqual } from 'node:crypto';

/** Constant-time token comparison; anything but a string is a mismatch. */
export function tokenMatches(expected: string, presented: unknown): boolean {
  if (typeof presented !== 'string') return false;
  const a = Buffer.from(expected, 'utf8');
  const b = Buffer.from(presented, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}
