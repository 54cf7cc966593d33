import { afterEach, describe, expect, it } from 'vitest';
import { canTransition, transition, type ProcessState } from './process-state.js';
import { spawnProcess, type ManagedProcess } from './processes.js';
import { failuresInARow, restartDelayMs } from './restart-backoff.js';
import { describeProcessEvent, SupervisedProcess, type ProcessEvent, type SupervisedProcessOptions } from './supervised-process.js';
import { waitFor } from '../../../test/support/wait-for.js';

const FAST = { initialMs: 20, maxMs: 80, stableAfterMs: 60_000 };
const units: SupervisedProcess[] = [];

afterEach(async () => {
  for (const u of units.splice(0)) {
    u.retire();
    await u.stop(1000);
  }
});

/** A Node child that prints `ready` and then lives (or exits after `exitAfterMs`). */
function script(exitAfterMs?: number): string {
  return `console.log('ready'); setInterval(() => {}, 1000);${exitAfterMs === undefined ? '' : ` setTimeout(() => process.exit(3), ${exitAfterMs});`}`;
}

/** Resolves once the child printed `ready`; rejects if it exits first. */
function printedReady(child: ManagedProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => (child.output().includes('ready') ? resolve() : undefined);
    child.child.stdout!.on('data', check);
    check();
    void child.exited.then(() => reject(new Error(`${child.name} exited before it was ready`)));
  });
}

function unit(options: Partial<SupervisedProcessOptions> & { body?: string } = {}): { u: SupervisedProcess; events: ProcessEvent[] } {
  const events: ProcessEvent[] = [];
  const u = new SupervisedProcess({
    name: 'worker',
    spawn: () => spawnProcess({ name: 'worker', args: ['-e', options.body ?? script()] }),
    ready: printedReady,
    supervise: false,
    backoff: FAST,
    onEvent: (e) => events.push(e),
    ...options,
  });
  units.push(u);
  return { u, events };
}

describe('process state transitions', () => {
  it.each<[ProcessState, ProcessState, boolean]>([
    ['stopped', 'running', true],
    ['running', 'backoff', true],
    ['running', 'dead', true],
    ['running', 'stopping', true],
    ['backoff', 'running', true],
    ['backoff', 'dead', true],
    ['dead', 'running', true],
    ['stopping', 'stopped', true],
    ['stopped', 'backoff', false],
    ['dead', 'backoff', false],
    ['stopping', 'running', false],
    ['running', 'running', false],
  ])('%s -> %s allowed: %s', (from, to, allowed) => {
    expect(canTransition(from, to)).toBe(allowed);
    if (allowed) expect(transition('p', from, to)).toBe(to);
    else expect(() => transition('p', from, to)).toThrow(expect.objectContaining({ code: 'PROCESS_STATE' }));
  });
});

describe('restart backoff', () => {
  it('doubles from the initial delay and never exceeds the cap', () => {
    const policy = { initialMs: 100, maxMs: 2000, stableAfterMs: 5000 };
    expect([1, 2, 3, 4, 5, 6, 7, 50, 10_000].map((n) => restartDelayMs(n, policy))).toEqual([
      100, 200, 400, 800, 1600, 2000, 2000, 2000, 2000,
    ]);
  });

  it('starts the count over after a process ran long enough', () => {
    const policy = { initialMs: 100, maxMs: 2000, stableAfterMs: 5000 };
    expect(failuresInARow(4, 100, policy)).toBe(5);
    expect(failuresInARow(4, 5000, policy)).toBe(1);
  });
});

describe('SupervisedProcess', () => {
  it('not supervised: a death is reported once and the process stays down until start()', async () => {
    const { u, events } = unit();
    await u.start();
    const pid = u.signal('SIGKILL');
    await waitFor(() => events.length === 1, 10_000, 'the death report');
    expect(u.state).toBe('dead');
    expect(u.pid).toBeUndefined();
    expect(events).toEqual([{ type: 'died', name: 'worker', pid, status: { code: null, signal: 'SIGKILL' } }]);
    expect(describeProcessEvent(events[0]!)).toBe(`worker (pid ${pid}) died (code null, signal SIGKILL); the rest of the cluster keeps running`);
    expect(() => u.signal('SIGKILL')).toThrow(expect.objectContaining({ code: 'PROCESS_NOT_RUNNING' }));
    await u.start();
    expect(u.state).toBe('running');
    expect(u.pid).not.toBe(pid);
    expect(u.restarts).toBe(0);
  });

  it('supervised: a killed process is started again and waitForRestart sees the new one ready', async () => {
    const { u, events } = unit({ supervise: true });
    await u.start();
    const oldPid = u.signal('SIGKILL');
    const restarted = await u.waitForRestart({ after: 0, timeoutMs: 10_000 });
    expect(restarted.restarts).toBe(1);
    expect(restarted.pid).not.toBe(oldPid);
    expect(u.pid).toBe(restarted.pid);
    expect(events).toEqual([
      { type: 'restarted', name: 'worker', oldPid, status: { code: null, signal: 'SIGKILL' }, pid: restarted.pid, restarts: 1 },
    ]);
    expect(describeProcessEvent(events[0]!)).toBe(
      `restarted worker: pid ${oldPid} exited (code null, signal SIGKILL), new pid ${restarted.pid} (restart 1)`,
    );
  });

  it('supervised: a process that keeps dying is restarted again and again, never given up', async () => {
    // Each incarnation is ready at once and exits (code 3) 30 ms later.
    const { u, events } = unit({ supervise: true, body: script(30) });
    await u.start();
    await waitFor(() => u.restarts >= 5, 10_000, 'five restarts');
    expect(events.slice(0, 5).every((e) => e.type === 'restarted' && e.status.code === 3)).toBe(true);
    await u.stop();
    expect(u.state).toBe('stopped');
  });

  it('SIGSTOP is not a death; SIGCONT resumes the same process', async () => {
    const { u, events } = unit({ supervise: true });
    await u.start();
    const pid = u.signal('SIGSTOP');
    expect(u.state).toBe('running');
    expect(u.signal('SIGCONT')).toBe(pid);
    expect(u.pid).toBe(pid);
    expect(events).toEqual([]);
  });

  it('stop() is on purpose: not restarted, not reported', async () => {
    const { u, events } = unit({ supervise: true });
    await u.start();
    const child = u.process!;
    await u.stop();
    expect(u.state).toBe('stopped');
    expect(child.running).toBe(false);
    await expect(u.waitForRestart({ timeoutMs: 200 })).rejects.toMatchObject({ code: 'READY_TIMEOUT' });
    expect(u.restarts).toBe(0);
    expect(events).toEqual([]);
  });

  it('retire() cancels a restart that was waiting', async () => {
    const { u, events } = unit({ supervise: true, backoff: { initialMs: 60_000, maxMs: 60_000, stableAfterMs: 60_000 } });
    await u.start();
    const child = u.process!;
    u.signal('SIGKILL');
    await child.exited;
    expect(u.state).toBe('backoff');
    u.retire();
    expect(u.state).toBe('dead');
    expect(events).toEqual([]);
  });

  it('a process that dies before it is ready fails start(), and is not restarted even when supervised', async () => {
    const { u, events } = unit({ supervise: true, body: 'process.exit(7)' });
    await expect(u.start()).rejects.toThrow(/exited before it was ready/);
    expect(u.state).toBe('dead');
    expect(u.restarts).toBe(0);
    expect(events).toEqual([]);
  });

  it('start() refuses a process that runs, and any once retired', async () => {
    const { u } = unit();
    await u.start();
    await expect(u.start()).rejects.toMatchObject({ code: 'PROCESS_RUNNING' });
    u.retire();
    await u.stop();
    await expect(u.start()).rejects.toMatchObject({ code: 'CLUSTER_STOPPED' });
    expect(u.state).toBe('stopped');
  });
});
