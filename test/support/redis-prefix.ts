import { randomUUID } from 'node:crypto';
import { countKeysWithPrefix, deleteKeysWithPrefix } from '@vmm/local-cluster/redis-client';

/** A Redis key prefix nobody else uses (bullmq's `test-${randomUUID()}` habit). */
export function uniquePrefix(): string {
  return `test-${randomUUID()}`;
}

/** Removes every key under `${prefix}:*` with SCAN + DEL. */
export function removePrefix(redisUrl: string, prefix: string): Promise<number> {
  return deleteKeysWithPrefix(redisUrl, prefix);
}

export function countPrefix(redisUrl: string, prefix: string): Promise<number> {
  return countKeysWithPrefix(redisUrl, prefix);
}
