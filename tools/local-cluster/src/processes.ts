import { spawn, type ChildProcess } from 'node:child_process';
import { ProcessExitedError } from './errors.js';

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnProcessOptions {
  /** Shown before each output line and in errors: `controller`, `node-1`, `redis`. */
  name: string;
  /** Defaults to the running node binary. */
  command?: string;
  args: readonly string[];
  /** Added on top of this process's environment. */
  env?: Record<string, string>;
  cwd?: string;
  /** Called with every line the child writes to stdout or stderr (for example to echo it, prefixed). */
  onLine?: (name: string, line: string, stream: 'stdout' | 'stderr') => void;
  /** Lines kept for error messages. */
  keepLines?: number;
}

/** A child process we started and must stop: every one is tracked until it exits. */
export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Settles when the child has exited, whatever the reason. */
  readonly exited: Promise<ExitStatus>;
  readonly running: boolean;
  /** The last lines it wrote (stdout and stderr interleaved). */
  output(): string;
  /** Sends a signal to this child's PID only; a no-op once it exited. */
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after `timeoutMs`; resolves once it exited. */
  stop(timeoutMs?: number): Promise<ExitStatus>;
}

const live = new Set<ManagedProcess>();
let exitHookInstalled = false;
let gracefulHandlerInstalled = false;

function killAllNow(): void {
  for (const p of live) {
    try {
      p.child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}

// A process that exits (normally, by an uncaught error, or by a signal) must not leave servers
// behind it. The 'exit' hook may only run synchronous code, so it SIGKILLs whatever still runs. A
// signal ends Node without 'exit': unless a launcher installed its own graceful handler
// (onTerminationSignal), kill the children, then let the signal do what it would have done.
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', killAllNow);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = (): void => {
      if (gracefulHandlerInstalled) return;
      killAllNow();
      process.removeListener(signal, handler);
      // Someone else listens (a test runner, an app): they decide. Otherwise the default action.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, handler);
  }
}

export function spawnProcess(options: SpawnProcessOptions): ManagedProcess {
  installExitHook();
  const keepLines = options.keepLines ?? 200;
  const lines: string[] = [];
  const child = spawn(options.command ?? process.execPath, [...options.args], {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) {
    // spawn failures (ENOENT) are reported asynchronously through 'error'; surface them as an exit.
    child.once('error', () => {});
  }

  const remember = (line: string, stream: 'stdout' | 'stderr'): void => {
    lines.push(line);
    if (lines.length > keepLines) lines.shift();
    options.onLine?.(options.name, line, stream);
  };
  for (const stream of ['stdout', 'stderr'] as const) {
    let carry = '';
    const source = child[stream];
    source?.setEncoding('utf8');
    source?.on('data', (chunk: string) => {
      const parts = (carry + chunk).split('\n');
      carry = parts.pop() ?? '';
      for (const line of parts) remember(line, stream);
    });
    source?.on('end', () => {
      if (carry) remember(carry, stream);
      carry = '';
    });
  }

  const exited = new Promise<ExitStatus>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (err) => {
      if (child.pid === undefined) {
        remember(`spawn failed: ${err.message}`, 'stderr');
        resolve({ code: null, signal: null });
      }
    });
  });

  const managed: ManagedProcess = {
    name: options.name,
    pid: child.pid ?? -1,
    child,
    exited,
    get running() {
      return child.pid !== undefined && child.exitCode === null && child.signalCode === null;
    },
    output: () => lines.join('\n'),
    signal(signal) {
      if (!managed.running) return;
      try {
        process.kill(child.pid!, signal);
      } catch {
        // exited between the check and the kill
      }
    },
    async stop(timeoutMs = 5000) {
      if (!managed.running) return exited;
      managed.signal('SIGTERM');
      // A stopped (SIGSTOP) process only acts on SIGTERM once continued.
      managed.signal('SIGCONT');
      const timer = setTimeout(() => managed.signal('SIGKILL'), timeoutMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
  live.add(managed);
  void exited.then(() => live.delete(managed));
  return managed;
}

/** The error for a child that exited while we waited for it to become ready. */
export function exitedError(child: ManagedProcess): ProcessExitedError {
  return new ProcessExitedError(child.name, child.child.exitCode, child.child.signalCode, child.output());
}

/** Every child started by spawnProcess that has not exited yet. */
export function liveProcesses(): ManagedProcess[] {
  return [...live];
}

/** Stops every live child (SIGTERM, then SIGKILL after `timeoutMs`), in parallel. */
export async function stopAll(timeoutMs = 5000): Promise<void> {
  await Promise.all([...live].map((p) => p.stop(timeoutMs)));
}

/**
 * Runs `onSignal` once on the first SIGINT or SIGTERM (a second one kills every child at once and
 * exits), so a foreground launcher can stop its children in order and clean up before exiting.
 */
export function onTerminationSignal(onSignal: (signal: NodeJS.Signals) => Promise<void>): void {
  gracefulHandlerInstalled = true;
  let stopping = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (stopping) {
        for (const p of live) p.signal('SIGKILL');
        process.exit(130);
      }
      stopping = true;
      void onSignal(signal);
    });
  }
}
