/** The one ioredis connection the repositories share (BullMQ workers make their own). */
import { Redis } from 'ioredis';
import type { ControllerConfig } from '../config.js';
import { redisKeys, type RedisKeys } from './redis-keys.js';

export const REDIS = Symbol('REDIS');
export const REDIS_KEYS = Symbol('REDIS_KEYS');

export function createRedis(config: Pick<ControllerConfig, 'redisUrl'>): Redis {
  // Commands queue while (re)connecting instead of failing at once; a few retries cover a Redis restart.
  // A command with no answer (a Redis that froze) fails after commandTimeout, so that no pass waits forever.
  return new Redis(config.redisUrl, { maxRetriesPerRequest: 3, enableReadyCheck: true, lazyConnect: false, commandTimeout: 5_000 });
}

export function createKeys(config: Pick<ControllerConfig, 'redisPrefix'>): RedisKeys {
  return redisKeys(config.redisPrefix);
}
