import { Redis, type RedisOptions } from 'ioredis';

/**
 * The launcher's and the tests' Redis calls (PING, SCAN + DEL of a prefix), over ioredis, the
 * controller's client: any `redis://` or `rediss://` (TLS) URL with user, password and db works.
 */
export type RedisTarget = string | Redis;

/**
 * A connection for a short job: it fails fast instead of queueing commands while Redis is down
 * (`enableOfflineQueue: false`, one retry) and does not reconnect behind the caller's back.
 * `options` go to ioredis (for example `tls: { ca }` for a private CA on a rediss:// URL).
 */
export async function connectRedis(url: string, options: RedisOptions & { timeoutMs?: number } = {}): Promise<Redis> {
  const { timeoutMs = 2000, ...rest } = options;
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    ...rest,
  });
  // Without a listener ioredis prints every connection error; callers get them as rejections. A failed
  // connect rejects with a bare "Connection is closed.": the socket's own error says why.
  let socketError: Error | undefined;
  client.on('error', (err: Error) => (socketError ??= err));
  try {
    await client.connect();
  } catch (err) {
    client.disconnect();
    throw socketError ?? err;
  }
  return client;
}

/** Runs `job` on the given client, or on a connection of its own to the given URL, closed afterwards. */
async function withClient<T>(target: RedisTarget, job: (client: Redis) => Promise<T>): Promise<T> {
  if (typeof target !== 'string') return job(target);
  const client = await connectRedis(target);
  try {
    return await job(client);
  } finally {
    client.disconnect();
  }
}

/** True when a Redis at `url` answers PING with PONG within `timeoutMs`. */
export async function pingRedis(url: string, timeoutMs = 1000, options: RedisOptions = {}): Promise<boolean> {
  let client: Redis | undefined;
  try {
    client = await connectRedis(url, { ...options, timeoutMs });
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client?.disconnect();
  }
}

/** Calls `onKeys` with each SCAN batch of `${prefix}:*` (never KEYS, so that a shared Redis is not blocked). */
async function scanPrefix(client: Redis, prefix: string, onKeys: (keys: string[]) => Promise<void>): Promise<void> {
  if (!prefix) throw new Error('refusing to scan keys with an empty prefix');
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${escapeGlob(prefix)}:*`, 'COUNT', 500);
    if (keys.length) await onKeys(keys);
    cursor = next;
  } while (cursor !== '0');
}

/** Deletes the key `prefix` and every key under `${prefix}:`; returns how many were removed. */
export function deleteKeysWithPrefix(target: RedisTarget, prefix: string): Promise<number> {
  return withClient(target, async (client) => {
    if (!prefix) throw new Error('refusing to delete keys with an empty prefix');
    let removed = await client.del(prefix);
    await scanPrefix(client, prefix, async (keys) => {
      removed += await client.del(...keys);
    });
    return removed;
  });
}

/** Counts the keys under `${prefix}:` (tests use it to check their cleanup). */
export function countKeysWithPrefix(target: RedisTarget, prefix: string): Promise<number> {
  return withClient(target, async (client) => {
    let count = 0;
    await scanPrefix(client, prefix, async (keys) => {
      count += keys.length;
    });
    return count;
  });
}

function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}
