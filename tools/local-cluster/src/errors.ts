// Errors of the local cluster launcher. Each has a stable `code`; callers branch on it, never on text.

/** Thrown when no Redis is available: REDIS_URL is unset and no redis-server binary was found. */
export class RedisNotFoundError extends Error {
  readonly code = 'REDIS_NOT_FOUND';
  constructor(readonly searched: string) {
    super(`redis-server not found (${searched}): install redis-server (apt-get install redis-server) or set REDIS_URL`);
    this.name = 'RedisNotFoundError';
  }
}

/** Thrown when a child process (redis-server, controller, agent) exits while we wait for it to become ready. */
export class ProcessExitedError extends Error {
  readonly code = 'PROCESS_EXITED';
  constructor(
    readonly processName: string,
    readonly exitCode: number | null,
    readonly signal: string | null,
    readonly output: string,
  ) {
    super(
      `${processName} exited (code ${exitCode}, signal ${signal}) before it was ready` +
        (output ? `; its last output:\n${output}` : ''),
    );
    this.name = 'ProcessExitedError';
  }
}

/** Thrown when a condition (Redis PING, gRPC health SERVING, every node READY) is not met before its deadline. */
export class ReadyTimeoutError extends Error {
  readonly code = 'READY_TIMEOUT';
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
    readonly lastError?: string,
  ) {
    super(`${what} not ready after ${timeoutMs} ms${lastError ? ` (last: ${lastError})` : ''}`);
    this.name = 'ReadyTimeoutError';
  }
}

/** Thrown when a built entry point (apps/…/dist/main.js) is missing: the apps were not built. */
export class EntryPointMissingError extends Error {
  readonly code = 'ENTRY_POINT_MISSING';
  constructor(readonly entryPath: string) {
    super(`${entryPath} does not exist: build the apps first (npm run build)`);
    this.name = 'EntryPointMissingError';
  }
}

/** Thrown for a malformed Redis reply or a Redis error reply (-ERR …). */
export class RedisProtocolError extends Error {
  readonly code = 'REDIS_PROTOCOL';
  constructor(message: string) {
    super(message);
    this.name = 'RedisProtocolError';
  }
}

/** Thrown when the requested controller port is already taken on 127.0.0.1 (another cluster runs?). */
export class PortInUseError extends Error {
  readonly code = 'PORT_IN_USE';
  constructor(readonly port: number) {
    super(`127.0.0.1:${port} is already in use (another cluster or controller?): pick another --port`);
    this.name = 'PortInUseError';
  }
}
