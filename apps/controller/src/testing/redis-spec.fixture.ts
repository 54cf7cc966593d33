/**
 * A real redis-server for one spec file: started before the file's tests (beforeAll); after them
 * (afterAll) every key under the prefixes handed out is deleted, the connection closed and the
 * server stopped, also when tests failed.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { deletePrefix, startTestRedis, type TestRedis } from './redis-server.fixture.js';

export interface SpecRedis {
  /** The connection; there once the file's beforeAll ran. */
  readonly redis: Redis;
  /** A fresh key prefix (`test-<uuid>`), deleted after the file. */
  newPrefix(): string;
}

export function useSpecRedis(): SpecRedis {
  let server: TestRedis | undefined;
  let redis: Redis | undefined;
  const prefixes: string[] = [];
  beforeAll(async () => {
    server = await startTestRedis();
    redis = new Redis(server.url);
  });
  afterAll(async () => {
    if (redis) for (const prefix of prefixes) await deletePrefix(redis, prefix);
    await redis?.quit();
    await server?.stop();
  });
  return {
    get redis(): Redis {
      if (!redis) throw new Error('useSpecRedis: the redis-server is started in beforeAll');
      return redis;
    },
    newPrefix(): string {
      const prefix = `test-${randomUUID()}`;
      prefixes.push(prefix);
      return prefix;
    },
  };
}
