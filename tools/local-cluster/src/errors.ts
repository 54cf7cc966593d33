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

/** Thrown when a cluster process is named that the cluster does not have (a typo, or `redis` with REDIS_URL). */
export class UnknownProcessError extends Error {
  readonly code = 'UNKNOWN_PROCESS';
  constructor(
    readonly processName: string,
    readonly known: readonly string[],
  ) {
    super(`no process ${JSON.stringify(processName)} in this cluster (it has: ${known.join(', ')})`);
    this.name = 'UnknownProcessError';
  }
}

/** Thrown when a signal is asked for a process that is not running (dead, stopped, or between restarts). */
export class ProcessNotRunningError extends Error {
  readonly code = 'PROCESS_NOT_RUNNING';
  constructor(
    readonly processName: string,
    readonly state: string,
  ) {
    super(`${processName} is not running (${state})`);
    this.name = 'ProcessNotRunningError';
  }
}

/** Thrown when start() is asked for a process that still runs (or is being stopped or restarted). */
export class ProcessRunningError extends Error {
  readonly code = 'PROCESS_RUNNING';
  constructor(
    readonly processName: string,
    readonly state: string,
  ) {
    super(`${processName} cannot be started: it is ${state}`);
    this.name = 'ProcessRunningError';
  }
}

/** Thrown for a signal the cluster does not send to its processes (only the ones a chaos test needs). */
export class UnsupportedSignalError extends Error {
  readonly code = 'UNSUPPORTED_SIGNAL';
  constructor(
    readonly signal: string,
    readonly allowed: readonly string[],
  ) {
    super(`signal ${JSON.stringify(signal)} is not one the cluster sends (use ${allowed.join(', ')})`);
    this.name = 'UnsupportedSignalError';
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

/** Thrown for a startCluster option that cannot be used; nothing has been started then. */
export class InvalidClusterOptionError extends Error {
  readonly code = 'INVALID_CLUSTER_OPTION';
  constructor(
    readonly option: string,
    reason: string,
  ) {
    super(`invalid ${option}: ${reason}`);
    this.name = 'InvalidClusterOptionError';
  }
}

/** Thrown when a process of a cluster that is stopping or stopped is asked to start. */
export class ClusterStoppedError extends Error {
  readonly code = 'CLUSTER_STOPPED';
  constructor(readonly processName: string) {
    super(`${processName} cannot be started: its cluster is stopping or stopped`);
    this.name = 'ClusterStoppedError';
  }
}
