import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisNotFoundError } from './errors.js';
import { findRedisServer, startRedis, type RedisHandle } from './redis.js';
import { countKeysWithPrefix, deleteKeysWithPrefix, pingRedis, RespClient } from './resp-client.js';

describe('startRedis (a private redis-server)', () => {
  let redis: RedisHandle;
  beforeAll(async () => {
    redis = await startRedis({ url: '' });
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('answers PING on a loopback port', async () => {
    expect(redis.kind).toBe('process');
    expect(redis.url).toMatch(/^redis:\/\/127\.0\.0\.1:\d+$/);
    expect(await pingRedis(redis.url)).toBe(true);
  });

  it('deletes exactly the keys under a prefix, with SCAN + DEL', async () => {
    const client = await RespClient.connect(redis.url);
    try {
      for (let i = 0; i < 1200; i++) await client.command('SET', `p1:k${i}`, 'v');
      await client.command('SET', 'p1', 'bare');
      await client.command('SET', 'p10:other', 'v');
      await client.command('HSET', 'p2:h', 'f', 'v');
      expect(await countKeysWithPrefix(redis.url, 'p1')).toBe(1200);
      expect(await deleteKeysWithPrefix(redis.url, 'p1')).toBe(1201);
      expect(await countKeysWithPrefix(redis.url, 'p1')).toBe(0);
      expect(await client.command('EXISTS', 'p10:other', 'p2:h')).toBe(2);
    } finally {
      client.close();
    }
  });

  it('rejects Redis error replies and parses arrays and nil', async () => {
    const client = await RespClient.connect(redis.url);
    try {
      await expect(client.command('NOSUCHCOMMAND')).rejects.toMatchObject({ code: 'REDIS_PROTOCOL' });
      expect(await client.command('GET', 'missing-key')).toBeNull();
      await client.command('RPUSH', 'list:x', 'a', 'bb', '');
      expect(await client.command('LRANGE', 'list:x', '0', '-1')).toEqual(['a', 'bb', '']);
    } finally {
      client.close();
    }
  });

  it('stop() ends the process', async () => {
    const other = await startRedis({ url: '' });
    const pid = other.process!.pid;
    await other.stop();
    expect(other.process!.running).toBe(false);
    expect(() => process.kill(pid, 0)).toThrow();
    expect(await pingRedis(other.url, 300)).toBe(false);
  });
});

describe('findRedisServer', () => {
  it('explains how to get Redis when there is none', () => {
    expect(() => findRedisServer({ PATH: '/nonexistent', REDIS_SERVER_BIN: '/nonexistent/redis-server' })).toThrow(
      RedisNotFoundError,
    );
    expect(() => findRedisServer({ REDIS_SERVER_BIN: '/nonexistent/redis-server' })).toThrow(/apt-get install redis-server|REDIS_URL/);
  });

  it('uses an external REDIS_URL without starting anything', async () => {
    const handle = await startRedis({ url: 'redis://127.0.0.1:1' });
    expect(handle.kind).toBe('external');
    expect(handle.process).toBeUndefined();
    await handle.stop();
  });
});
