/**
 * A private redis-server for specs: tools/local-cluster's startRedis (the project's one Redis
 * launcher: durable, on a free loopback port, its data in a temporary directory removed by stop(),
 * stopped by its PID), or REDIS_URL when set. Used by specs and the scheduler bench only.
 */
import type { Redis } from 'ioredis';
import { deleteKeysWithPrefix } from '@vmm/local-cluster/redis-client';
import { startRedis } from '@vmm/local-cluster/redis';

export { freePort } from '@vmm/local-cluster/ports';

export interface TestRedis {
  url: string;
  port: number;
  stop(): Promise<void>;
}

export async function startTestRedis(): Promise<TestRedis> {
  const redis = await startRedis();
  return { url: redis.url, port: Number(new URL(redis.url).port || 6379), stop: () => redis.stop() };
}

/** Deletes every key under `${prefix}:` (for runs against a shared REDIS_URL). */
export async function deletePrefix(redis: Redis, prefix: string): Promise<void> {
  await deleteKeysWithPrefix(redis, prefix);
}
