import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { ProcessExitedError, ReadyTimeoutError, RedisNotFoundError } from './errors.js';
import { delay, freePort } from './ports.js';
import { spawnProcess, type ManagedProcess, type SpawnProcessOptions } from './processes.js';
import { pingRedis } from './resp-client.js';

export interface RedisHandle {
  /** `external`: REDIS_URL (or an explicit url) was given and is left running; `process`: our redis-server. */
  kind: 'external' | 'process';
  url: string;
  /** The redis-server we spawned, if any. */
  process?: ManagedProcess;
  /** Stops the redis-server we spawned (SIGTERM to its PID, then awaits its exit); a no-op for external. */
  stop(): Promise<void>;
}

export interface StartRedisOptions {
  /** Use this Redis instead of spawning one (default: process.env.REDIS_URL). */
  url?: string;
  /** Path of redis-server (default: REDIS_SERVER_BIN, else a PATH search). */
  bin?: string;
  /** How long to wait for PONG. */
  readyTimeoutMs?: number;
  onLine?: SpawnProcessOptions['onLine'];
}

/** The redis-server binary: REDIS_SERVER_BIN, else the first executable `redis-server` on PATH. */
export function findRedisServer(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env.REDIS_SERVER_BIN;
  if (explicit) {
    if (isExecutable(explicit)) return explicit;
    throw new RedisNotFoundError(`REDIS_SERVER_BIN=${explicit} is not executable`);
  }
  const dirs = (env.PATH ?? '').split(path.delimiter).filter(Boolean);
  // Debian installs it in /usr/bin, which a minimal PATH may lack.
  for (const dir of [...dirs, '/usr/bin', '/usr/local/bin', '/usr/sbin']) {
    const candidate = path.join(dir, 'redis-server');
    if (isExecutable(candidate)) return candidate;
  }
  throw new RedisNotFoundError('REDIS_SERVER_BIN unset and not on PATH');
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * A Redis to use: the given/REDIS_URL one if set (not started, not stopped), else a private,
 * non-persistent redis-server on a free loopback port.
 */
export async function startRedis(options: StartRedisOptions = {}): Promise<RedisHandle> {
  const url = options.url ?? process.env.REDIS_URL;
  if (url) return { kind: 'external', url, stop: async () => {} };
  const bin = options.bin ?? findRedisServer();
  // The port can be taken between freePort() and redis' bind: retry a few times on an early exit.
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await spawnRedis(bin, await freePort(), options);
    } catch (err) {
      lastError = err;
      if (!(err instanceof ProcessExitedError)) throw err;
    }
  }
  throw lastError;
}

async function spawnRedis(bin: string, port: number, options: StartRedisOptions): Promise<RedisHandle> {
  const child = spawnProcess({
    name: 'redis',
    command: bin,
    args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    onLine: options.onLine,
  });
  const url = `redis://127.0.0.1:${port}`;
  const timeoutMs = options.readyTimeoutMs ?? 5000;
  const deadline = Date.now() + timeoutMs;
  let exitedEarly = false;
  void child.exited.then(() => (exitedEarly = true));
  for (;;) {
    if (exitedEarly) {
      const status = await child.exited;
      throw new ProcessExitedError('redis-server', status.code, status.signal, child.output());
    }
    if (await pingRedis(url, 500)) break;
    if (Date.now() > deadline) {
      await child.stop();
      throw new ReadyTimeoutError(`redis-server on ${url}`, timeoutMs, child.output());
    }
    await delay(25);
  }
  return {
    kind: 'process',
    url,
    process: child,
    stop: async () => {
      await child.stop();
    },
  };
}
