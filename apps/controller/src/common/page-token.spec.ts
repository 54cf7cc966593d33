import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../errors.js';
import { decodePageToken, DEFAULT_PAGE_SIZE, encodePageToken, MAX_PAGE_SIZE, nextPageToken, normalizePageSize, readPageRequest } from './page-token.js';

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

describe('list request and next page', () => {
  it('reads the size and the token of a request, for its filter', () => {
    expect(readPageRequest({}, '')).toEqual({ pageSize: DEFAULT_PAGE_SIZE, after: '' });
    expect(readPageRequest({ pageSize: 7, pageToken: encodePageToken('m-3', 'vm-1') }, 'vm-1')).toEqual({ pageSize: 7, after: 'm-3' });
    expect(() => readPageRequest({ pageToken: encodePageToken('m-3', 'vm-1') }, 'vm-2')).toThrow(/another filter/);
    expect(() => readPageRequest({ pageSize: -1 }, '')).toThrow(/page_size/);
  });

  it('issues a token after the last id only when there are more', () => {
    expect(decodePageToken(nextPageToken(true, 'vm-9', 'node-1'), 'node-1')).toBe('vm-9');
    expect(nextPageToken(false, 'vm-9', 'node-1')).toBe('');
    expect(nextPageToken(true, undefined, 'node-1')).toBe('');
  });
});
