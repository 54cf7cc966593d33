// `npm run cluster`'s entry (tools/local-cluster/dist/main.js) as a real child process, for the tests
// of its contract: its `cluster ready` and `processes:` lines, its stderr, and a cleanup that leaves no
// process behind, also when a test fails half-way.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '@vmm/local-cluster/cluster';
import { waitFor } from './wait-for.js';

export const LAUNCHER_MAIN = path.join(REPO_ROOT, 'tools/local-cluster/dist/main.js');

export interface LaunchedProcess {
  name: string;
  pid: number;
  address: string;
}

export interface Launched {
  child: ChildProcess;
  /** The `cluster ready` line. */
  readyLine: string;
  /** From the `processes:` line: redis (when private), controller, node-1 … */
  processes: Map<string, LaunchedProcess>;
  /** The cluster's temporary directory (the `files in` part of that line). */
  tempDir: string;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (null after a signal). */
  exited: Promise<number | null>;
}

const launched = new Set<Launched>();

/**
 * Starts the launcher with `args`; `env` entries are added to this process's environment, and an
 * `undefined` entry removes one (REDIS_URL: undefined makes it start a private redis-server).
 */
export async function launchCluster(args: string[], env: Record<string, string | undefined>): Promise<Launched> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env };
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete childEnv[k];
    else childEnv[k] = v;
  }
  const child = spawn(process.execPath, [LAUNCHER_MAIN, ...args], { cwd: REPO_ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const handle: Launched = {
    child,
    readyLine: '',
    processes: new Map(),
    tempDir: '',
    stdout: () => out,
    stderr: () => err,
    exited,
  };
  launched.add(handle);
  let exitedEarly = false;
  void exited.then(() => (exitedEarly = true));
  const line = await waitFor(
    () => {
      if (exitedEarly) throw new Error(`launcher exited before ready:\n${err}`);
      return out.split('\n').find((l) => l.startsWith('processes: '));
    },
    90_000,
    'the launcher\'s "processes:" line',
  );
  handle.readyLine = out.split('\n').find((l) => l.includes('cluster ready')) ?? '';
  for (const m of line.matchAll(/(\S+) pid (\d+) (\S+?)(?=,|;)/g)) {
    handle.processes.set(m[1]!, { name: m[1]!, pid: Number(m[2]), address: m[3]! });
  }
  handle.tempDir = /files in (\S+)$/.exec(line)?.[1] ?? '';
  return handle;
}

/** True while `pid` exists (and is not a zombie we could still see). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true; // no /proc: kill(0) is all we know
  }
}

/** The pids whose parent is `ppid`, from /proc (Linux). */
export function childPids(ppid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid …; comm may hold spaces and parentheses: split after the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === ppid && fields[0] !== 'Z') pids.push(Number(entry));
    } catch {
      // exited while we read
    }
  }
  return pids.sort((a, b) => a - b);
}

/**
 * After each test: SIGTERM every launcher still running and await it; then SIGKILL, by pid, any
 * process it started that outlived it (a test that failed half-way must not leave servers behind).
 */
export async function cleanUpLaunchers(): Promise<void> {
  for (const l of [...launched]) {
    launched.delete(l);
    const pids = [...l.processes.values()].map((p) => p.pid);
    if (l.child.exitCode === null && l.child.signalCode === null) {
      l.child.kill('SIGTERM');
      await l.exited;
    }
    for (const pid of pids) {
      if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    }
    // A launcher that stopped cleanly removed it; one that did not leaves it to us.
    if (l.tempDir.startsWith(path.join(os.tmpdir(), 'vmm-cluster-'))) rmSync(l.tempDir, { recursive: true, force: true });
  }
}
