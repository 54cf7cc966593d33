import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisNotFoundError } from './errors.js';
import { connectRedis, countKeysWithPrefix, deleteKeysWithPrefix, pingRedis } from './redis-client.js';
import { findRedisServer, startRedis, type RedisHandle } from './redis.js';
import type { ProcessEvent } from './supervised-process.js';

describe('startRedis (a private redis-server)', () => {
  let redis: RedisHandle;
  beforeAll(async () => {
    redis = await startRedis({ private: true });
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('answers PING on a loopback port', async () => {
    expect(redis.kind).toBe('process');
    expect(redis.url).toMatch(/^redis:\/\/127\.0\.0\.1:\d+$/);
    expect(await pingRedis(redis.url)).toBe(true);
  });

  it('is durable: an append-only file fsynced on every write, in a directory of its own', async () => {
    const client = await connectRedis(redis.url);
    try {
      expect(await client.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
      expect(await client.config('GET', 'appendfsync')).toEqual(['appendfsync', 'always']);
      expect(await client.config('GET', 'dir')).toEqual(['dir', redis.dataDir]);
    } finally {
      client.disconnect();
    }
  });

  it('deletes exactly the keys under a prefix, with SCAN + DEL, by URL or on a given client', async () => {
    const client = await connectRedis(redis.url);
    try {
      const pipeline = client.pipeline();
      for (let i = 0; i < 1200; i++) pipeline.set(`p1:k${i}`, 'v');
      await pipeline.exec();
      await client.set('p1', 'bare');
      await client.set('p10:other', 'v');
      await client.hset('p2:h', 'f', 'v');
      await client.set('p*:glob', 'v');
      expect(await countKeysWithPrefix(redis.url, 'p1')).toBe(1200);
      expect(await deleteKeysWithPrefix(redis.url, 'p1')).toBe(1201);
      expect(await countKeysWithPrefix(client, 'p1')).toBe(0);
      expect(await client.exists('p10:other', 'p2:h', 'p*:glob')).toBe(3);
      // A glob character in a prefix is literal.
      expect(await deleteKeysWithPrefix(client, 'p*')).toBe(1);
      expect(await client.exists('p10:other', 'p2:h')).toBe(2);
      await expect(deleteKeysWithPrefix(client, '')).rejects.toThrow(/empty prefix/);
    } finally {
      client.disconnect();
    }
  });

  it('stop() ends the process and removes the data directory it made', async () => {
    const other = await startRedis({ private: true });
    const pid = other.process!.pid;
    const dir = other.dataDir!;
    expect(existsSync(dir)).toBe(true);
    await other.stop();
    expect(other.process!.running).toBe(false);
    expect(() => process.kill(pid, 0)).toThrow();
    expect(existsSync(dir)).toBe(false);
    expect(await pingRedis(other.url, 300)).toBe(false);
  });
});

describe('a private Redis killed and started again', () => {
  const handles: RedisHandle[] = [];
  let dataDir = '';
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'redis-spec-'));
  });
  afterAll(async () => {
    for (const h of handles) await h.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('keeps every acknowledged write across SIGKILL and a restart on the same directory and port', async () => {
    const redis = await startRedis({ private: true, dataDir });
    handles.push(redis);
    const client = await connectRedis(redis.url);
    try {
      for (let i = 0; i < 100; i++) await client.set(`durable:${i}`, `value-${i}`);
      await client.hset('durable:h', { a: '1', b: '2' });
    } finally {
      client.disconnect();
    }
    const first = redis.process!;
    first.signal('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');

    await redis.unit!.start(); // the same command line: same port, same --dir
    expect(redis.process!.pid).not.toBe(first.pid);
    const again = await connectRedis(redis.url);
    try {
      expect(await again.mget(...Array.from({ length: 100 }, (_, i) => `durable:${i}`))).toEqual(
        Array.from({ length: 100 }, (_, i) => `value-${i}`),
      );
      expect(await again.hgetall('durable:h')).toEqual({ a: '1', b: '2' });
    } finally {
      again.disconnect();
    }
    await redis.stop();
    // A data directory the caller named is the caller's.
    expect(existsSync(dataDir)).toBe(true);
  });

  it('under supervise, comes back by itself on the same port with the same data', async () => {
    const events: ProcessEvent[] = [];
    const redis = await startRedis({ private: true, supervise: true, onEvent: (e) => events.push(e) });
    handles.push(redis);
    const client = await connectRedis(redis.url);
    try {
      await client.set('supervised', 'kept');
    } finally {
      client.disconnect();
    }
    const oldPid = redis.unit!.signal('SIGKILL');
    const { pid, restarts } = await redis.unit!.waitForRestart({ after: 0, timeoutMs: 10_000 });
    expect(pid).not.toBe(oldPid);
    expect(restarts).toBe(1);
    expect(events).toEqual([
      { type: 'restarted', name: 'redis', oldPid, status: { code: null, signal: 'SIGKILL' }, pid, restarts: 1 },
    ]);
    const again = await connectRedis(redis.url);
    try {
      expect(await again.get('supervised')).toBe('kept');
    } finally {
      again.disconnect();
    }
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
