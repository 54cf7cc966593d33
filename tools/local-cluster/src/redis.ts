import { accessSync, constants } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ProcessExitedError, ReadyTimeoutError, RedisNotFoundError } from './errors.js';
import { delay, freePort } from './ports.js';
import { exitedError, spawnProcess, type ManagedProcess, type SpawnProcessOptions } from './processes.js';
import { pingRedis } from './redis-client.js';
import type { RestartBackoff } from './restart-backoff.js';
import { SupervisedProcess, type ProcessEvent } from './supervised-process.js';

/**
 * Durability of every Redis the project starts (docs/design.md: "Redis is the controller's memory"): an
 * append-only file fsynced before each write is acknowledged, so that a Redis killed and started again
 * on the same directory loses no acknowledged write. The compose file and the test container use the
 * same flags (test/compose.test.ts checks them against this list).
 */
export const REDIS_DURABILITY_ARGS: readonly string[] = ['--appendonly', 'yes', '--appendfsync', 'always'];

export interface RedisHandle {
  /** `external`: REDIS_URL (or an explicit url) was given and is left running; `process`: our redis-server. */
  kind: 'external' | 'process';
  url: string;
  /** Our redis-server across its restarts (same port and data directory); absent for external. */
  unit?: SupervisedProcess;
  /** The current redis-server child, if ours. */
  readonly process?: ManagedProcess;
  /** Where our redis-server keeps its append-only file. */
  dataDir?: string;
  /** Stops our redis-server (SIGTERM to its PID, awaits its exit) and removes a data directory it made; no-op for external. */
  stop(): Promise<void>;
}

export interface StartRedisOptions {
  /** Use this Redis instead of spawning one (default: process.env.REDIS_URL). */
  url?: string;
  /** Start a private redis-server even when REDIS_URL is set. */
  private?: boolean;
  /** Path of redis-server (default: REDIS_SERVER_BIN, else a PATH search). */
  bin?: string;
  /** Data directory (created if missing, kept on stop); default a fresh temporary one, removed by stop(). */
  dataDir?: string;
  /** Port on 127.0.0.1; default a free one. */
  port?: number;
  /** Restart the redis-server (same port and data) when it dies. */
  supervise?: boolean;
  backoff?: RestartBackoff;
  onEvent?: (event: ProcessEvent) => void;
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

/** The command line of a private, durable redis-server on loopback that keeps its files in `dataDir`. */
export function redisServerArgs(port: number, dataDir: string): string[] {
  // No RDB snapshots: the append-only file is the persistence; `--dir` holds it (appendonlydir/).
  return ['--port', String(port), '--bind', '127.0.0.1', '--dir', dataDir, '--save', '', ...REDIS_DURABILITY_ARGS];
}

/** Polls PING until PONG; rejects with `abort()`'s error (the process died) or after `timeoutMs`. */
export async function waitForRedis(url: string, options: { timeoutMs?: number; abort?: () => Error | undefined } = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const aborted = options.abort?.();
    if (aborted) throw aborted;
    if (await pingRedis(url, 500)) return;
    if (Date.now() > deadline) throw new ReadyTimeoutError(`redis-server on ${url}`, timeoutMs);
    await delay(25);
  }
}

/**
 * A Redis to use: the given/REDIS_URL one if set (not started, not stopped), else a private, durable
 * redis-server on a loopback port with a data directory of its own.
 */
export async function startRedis(options: StartRedisOptions = {}): Promise<RedisHandle> {
  const url = options.private ? undefined : (options.url ?? process.env.REDIS_URL);
  if (url) return { kind: 'external', url, stop: async () => {} };
  const bin = options.bin ?? findRedisServer();
  const ownDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(path.join(os.tmpdir(), 'vmm-redis-')));
  const removeOwnDir = async () => {
    if (ownDataDir) await rm(dataDir, { recursive: true, force: true });
  };
  try {
    await mkdir(dataDir, { recursive: true });
    // A free port can be taken between freePort() and redis' bind: retry a few times on an early exit.
    let lastError: unknown;
    for (let attempt = 0; attempt < (options.port ? 1 : 3); attempt++) {
      const { unit, url: ownUrl } = redisUnit(bin, options.port ?? (await freePort()), dataDir, options);
      try {
        await unit.start();
      } catch (err) {
        await unit.stop();
        lastError = err;
        if (err instanceof ProcessExitedError) continue;
        throw err;
      }
      return {
        kind: 'process',
        url: ownUrl,
        unit,
        get process() {
          return unit.process;
        },
        dataDir,
        stop: async () => {
          unit.retire();
          await unit.stop();
          await removeOwnDir();
        },
      };
    }
    throw lastError;
  } catch (err) {
    await removeOwnDir();
    throw err;
  }
}

function redisUnit(bin: string, port: number, dataDir: string, options: StartRedisOptions): { unit: SupervisedProcess; url: string } {
  const url = `redis://127.0.0.1:${port}`;
  const unit = new SupervisedProcess({
    name: 'redis',
    spawn: () => spawnProcess({ name: 'redis', command: bin, args: redisServerArgs(port, dataDir), onLine: options.onLine }),
    ready: (child) =>
      waitForRedis(url, {
        timeoutMs: options.readyTimeoutMs ?? 5000,
        abort: () => (child.running ? undefined : exitedError(child)),
      }),
    supervise: options.supervise ?? false,
    backoff: options.backoff,
    onEvent: options.onEvent,
  });
  return { unit, url };
}
