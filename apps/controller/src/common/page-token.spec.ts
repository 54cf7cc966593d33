import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../errors.js';
import { decodePageToken, DEFAULT_PAGE_SIZE, encodePageToken, MAX_PAGE_SIZE, nextPageToken, normalizePageSize, parseLabelSelector, readPageRequest, scanPage } from './page-token.js';

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

describe('scanPage and parseLabelSelector', () => {
  const ids = Array.from({ length: 25 }, (_, i) => `id-${String(i).padStart(2, '0')}`);
  const fetch = async (after: string, count: number) => {
    const rest = ids.filter((id) => id > after);
    return { items: rest.slice(0, count), more: rest.length > count };
  };
  const even = (id: string) => Number(id.slice(3)) % 2 === 0;

  it('pages through the kept records only, every one once, whatever the page size', async () => {
    for (const size of [1, 2, 5, 13, 100]) {
      const seen: string[] = [];
      let after = '';
      for (;;) {
        const page = await scanPage(after, size, fetch, even, (id) => id);
        expect(page.items.length).toBeLessThanOrEqual(size);
        seen.push(...page.items);
        if (!page.more) break;
        after = page.lastRead!;
      }
      expect(seen).toEqual(ids.filter(even));
    }
  });

  it('matches k=v and k!=v terms as Kubernetes does; refuses anything else naming label_selector', () => {
    const match = parseLabelSelector('tier=web, env!=prod');
    expect(match({ tier: 'web' })).toBe(true);
    expect(match({ tier: 'web', env: 'dev' })).toBe(true);
    expect(match({ tier: 'web', env: 'prod' })).toBe(false);
    expect(match({ tier: 'db' })).toBe(false);
    expect(parseLabelSelector('')({})).toBe(true);
    expect(() => parseLabelSelector('tier in (web)')).toThrow(/label_selector/);
  });
});
