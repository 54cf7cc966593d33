/**
 * Fencing epochs as the wire carries them: proto int64 read as a JS number (LOADER_OPTIONS longs:
 * Number), exact only up to 2^53−1. An epoch beyond that, or negative, or fractional, could compare
 * equal to another epoch: refused wherever one is taken. Pure.
 */
import { InvalidFencingEpochError } from './errors.js';

/** @throws InvalidFencingEpochError unless `value` is a whole number in 0..2^53−1 */
export function assertFencingEpoch(value: unknown, field = 'fencing_epoch'): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw new InvalidFencingEpochError(field, value);
  return value;
}
