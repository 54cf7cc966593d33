/** Shared by the migration benchmarks: JSON lines on stdout, logs on stderr, medians, child processes. */
import { fork, type ChildProcess } from 'node:child_process';

export function log(...args: unknown[]): void {
  process.stderr.write(args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' ') + '\n');
}

export function emit(line: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(line) + '\n');
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** A forked worker that answers one message per request, in order. */
export class Worker {
  private readonly child: ChildProcess;
  private readonly queue: { resolve(v: unknown): void; reject(e: Error): void }[] = [];

  constructor(script: string, role: string) {
    this.child = fork(script, ['--role', role], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: ['--max-old-space-size=4096', '--expose-gc', ...(process.env.BENCH_CHILD_ARGS ? process.env.BENCH_CHILD_ARGS.split(' ') : [])] });
    this.child.on('message', (msg: { error?: string }) => {
      const w = this.queue.shift();
      if (!w) return;
      if (msg && typeof msg === 'object' && 'error' in msg && msg.error) w.reject(new Error(msg.error));
      else w.resolve(msg);
    });
    this.child.on('exit', (code) => {
      for (const w of this.queue.splice(0)) w.reject(new Error(`${role} exited with ${code}`));
    });
  }

  request<T>(msg: Record<string, unknown>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ resolve: resolve as (v: unknown) => void, reject });
      this.child.send(msg);
    });
  }

  /** Asks the worker to exit (it exits on disconnect); kills it if it is still there after 5 s. */
  stop(): void {
    if (this.child.exitCode !== null) return;
    if (this.child.connected) this.child.disconnect();
    setTimeout(() => this.child.exitCode === null && this.child.kill('SIGTERM'), 5000).unref();
  }
}

/** In a worker: serves requests with `handle`, one at a time. */
export function serve(handle: (msg: Record<string, unknown>) => Promise<unknown>): void {
  let chain = Promise.resolve();
  process.on('message', (msg: Record<string, unknown>) => {
    chain = chain.then(async () => {
      try {
        process.send!((await handle(msg)) ?? {});
      } catch (err) {
        process.send!({ error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) });
      }
    });
  });
  process.on('disconnect', () => process.exit(0));
}

/**
 * Collects the garbage of the previous repetition before a timed one (a worker runs with --expose-gc):
 * a dropped 1 GiB VM or 16k spent read buffers are otherwise freed by a GC inside the next case's window.
 */
export function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

export function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = process.argv[i + 1];
  return v === undefined || v.startsWith('--') ? '' : v;
}
