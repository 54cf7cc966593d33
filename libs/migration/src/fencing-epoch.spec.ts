import { describe, expect, it } from 'vitest';
import { assertFencingEpoch } from './fencing-epoch.js';

describe('assertFencingEpoch', () => {
  it.each([0, 1, 41, Number.MAX_SAFE_INTEGER])('takes %d', (epoch) => expect(assertFencingEpoch(epoch)).toBe(epoch));

  it.each([-1, 1.5, 2 ** 53, 2 ** 63, Number.NaN, Infinity, '3', null, undefined])('refuses %s, naming the field', (epoch) => {
    expect(() => assertFencingEpoch(epoch, 'commit.fencing_epoch')).toThrow(
      expect.objectContaining({ code: 'INVALID_FENCING_EPOCH', message: expect.stringContaining('commit.fencing_epoch') }),
    );
  });
});
