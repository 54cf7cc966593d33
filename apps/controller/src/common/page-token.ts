/**
 * Pagination: page sizes and opaque page tokens. A token is base64url JSON of the last id returned
 * and the filter it was issued for, so a token cannot silently be reused with another filter.
 */
import { InvalidArgumentError } from '../errors.js';

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

interface TokenBody {
  v: 1;
  /** The last id of the previous page; the next page starts after it. */
  after: string;
  /** The filter the token belongs to ('' = none). */
  filter: string;
}

/** 0 → the default; above the maximum → the maximum (AIP-158); negative → INVALID_ARGUMENT. */
export function normalizePageSize(pageSize: number | undefined): number {
  const n = Number(pageSize ?? 0);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('page_size', 'must be a whole number ≥ 0');
  if (n === 0) return DEFAULT_PAGE_SIZE;
  return Math.min(n, MAX_PAGE_SIZE);
}

export function encodePageToken(after: string, filter: string): string {
  const body: TokenBody = { v: 1, after, filter };
  return Buffer.from(JSON.stringify(body), 'utf8').toString('base64url');
}

/** The id to start after ('' for the first page). */
export function decodePageToken(token: string | undefined, filter: string): string {
  if (!token) return '';
  let body: Partial<TokenBody>;
  try {
    body = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as Partial<TokenBody>;
  } catch {
    throw new InvalidArgumentError('page_token', 'malformed');
  }
  if (body?.v !== 1 || typeof body.after !== 'string' || body.after === '' || typeof body.filter !== 'string') {
    throw new InvalidArgumentError('page_token', 'malformed');
  }
  if (body.filter !== filter) throw new InvalidArgumentError('page_token', 'was issued for another filter');
  return body.after;
}

/** A List request's page: its size (normalized) and the id to start after, checked against `filter`. */
export function readPageRequest(req: { pageSize?: number; pageToken?: string }, filter: string): { pageSize: number; after: string } {
  const pageSize = normalizePageSize(req.pageSize);
  return { pageSize, after: decodePageToken(req.pageToken, filter) };
}

/** The token of the page after one that ended with `lastId`; '' when there are no more. */
export function nextPageToken(more: boolean, lastId: string | undefined, filter: string): string {
  return more && lastId !== undefined ? encodePageToken(lastId, filter) : '';
}

/** Most records a filtered List call reads before it answers with a short page (and a token). */
export const MAX_SCANNED_PER_CALL = 10_000;

/**
 * A page of the records that `keep` accepts, read in `fetch`'s order from after `after`: filtered
 * List calls stay paged by id (the token is the last record read, kept or not) and bounded in work
 * (a page may come back short, with a token, after MAX_SCANNED_PER_CALL records).
 */
export async function scanPage<T>(
  after: string,
  pageSize: number,
  fetch: (after: string, count: number) => Promise<{ items: T[]; more: boolean }>,
  keep: (item: T) => boolean,
  idOf: (item: T) => string,
): Promise<{ items: T[]; lastRead: string | undefined; more: boolean }> {
  const items: T[] = [];
  let cursor = after;
  let scanned = 0;
  for (;;) {
    const page = await fetch(cursor, pageSize);
    for (let i = 0; i < page.items.length; i++) {
      const item = page.items[i]!;
      cursor = idOf(item);
      scanned++;
      if (keep(item) && items.push(item) === pageSize) {
        return { items, lastRead: cursor, more: i < page.items.length - 1 || page.more };
      }
    }
    if (!page.more) return { items, lastRead: cursor, more: false };
    if (scanned >= MAX_SCANNED_PER_CALL) return { items, lastRead: cursor, more: true };
  }
}

/** A Kubernetes equality selector: `k=v` and `k!=v` terms (also `k==v`) joined by commas. */
export function parseLabelSelector(selector: string): (labels: Record<string, string>) => boolean {
  const terms = selector
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean)
    .map((term) => {
      const m = /^([A-Za-z0-9._/-]+)\s*(!=|==|=)\s*([A-Za-z0-9._-]*)$/.exec(term);
      if (!m) throw new InvalidArgumentError('label_selector', `${JSON.stringify(term)} is not k=v or k!=v`);
      return { key: m[1]!, equal: m[2] !== '!=', value: m[3]! };
    });
  return (labels) => terms.every((t) => (labels[t.key] === t.value) === t.equal);
}
