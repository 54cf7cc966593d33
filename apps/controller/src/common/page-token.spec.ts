import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../errors.js';
import { decodePageToken, DEFAULT_PAGE_SIZE, encodePageToken, MAX_PAGE_SIZE, normalizePageSize } from './page-token.js';

describe('page size', () => {
  it.each([
    [0, DEFAULT_PAGE_SIZE],
    [undefined, DEFAULT_PAGE_SIZE],
    [1, 1],
    [1000, 1000],
    [5000, MAX_PAGE_SIZE],
  ])('%s → %i', (given, expected) => {
    expect(normalizePageSize(given)).toBe(expected);
  });

  it('rejects a negative size naming page_size', () => {
    expect(() => normalizePageSize(-1)).toThrow(/page_size/);
  });
});

describe('page token', () => {
  it('round-trips and is opaque', () => {
    const token = encodePageToken('vm-000abc-1', 'node-1');
    expect(token).not.toContain('vm-000abc-1');
    expect(decodePageToken(token, 'node-1')).toBe('vm-000abc-1');
  });

  it('empty means the first page', () => {
    expect(decodePageToken('', '')).toBe('');
  });

  it.each(['garbage!!', Buffer.from('{"v":2}').toString('base64url'), Buffer.from('[]').toString('base64url')])(
    'rejects a malformed token %s',
    (token) => {
      expect(() => decodePageToken(token, '')).toThrow(InvalidArgumentError);
      expect(() => decodePageToken(token, '')).toThrow(/page_token/);
    },
  );

  it('rejects a token issued for another filter', () => {
    expect(() => decodePageToken(encodePageToken('vm-1', 'node-1'), 'node-2')).toThrow(/another filter/);
  });
});
