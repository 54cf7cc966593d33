// vitest globalSetup of the integration project: one Redis for the whole run, shared by every test
// file through provide('redisUrl'); each file isolates itself with its own key prefix.
// Order: REDIS_URL if set; else a testcontainers Redis when a container runtime answers; else a
// private redis-server process (tools/local-cluster's redis.ts). Both are durable as the project's
// Redis always is (append-only file, fsync on every write: REDIS_DURABILITY_ARGS); the private one keeps
// its data in a temporary directory that stop() removes.
import type { TestProject } from 'vitest/node';
import { REDIS_DURABILITY_ARGS, startRedis } from '@vmm/local-cluster/redis';

declare module 'vitest' {
  export interface ProvidedContext {
    /** redis://host:port of the Redis every integration test uses (with its own key prefix). */
    redisUrl: string;
  }
}

interface RunningRedis {
  url: string;
  kind: string;
  stop(): Promise<void>;
}

async function containerRedis(): Promise<RunningRedis | undefined> {
  if (process.env.REDIS_TEST_NO_DOCKER === '1') return undefined;
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    // Fails within milliseconds when no Docker engine is reachable (docs/stack.md §7): a cheap probe.
    await getContainerRuntimeClient();
  } catch {
    return undefined;
  }
  const { RedisContainer } = await import('@testcontainers/redis');
  // The container's data lives in the container, removed with it.
  const container = await new RedisContainer('redis:7-alpine').withCommand(['redis-server', ...REDIS_DURABILITY_ARGS]).start();
  return { url: container.getConnectionUrl(), kind: 'container', stop: async () => void (await container.stop()) };
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let redis: RunningRedis | undefined;
  if (!process.env.REDIS_URL) redis = await containerRedis();
  if (!redis) {
    const handle = await startRedis();
    redis = { url: handle.url, kind: handle.kind, stop: handle.stop };
  }
  project.provide('redisUrl', redis.url);
  const running = redis;
  return async () => {
    await running.stop();
  };
}
