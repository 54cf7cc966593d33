import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { liveProcesses, spawnProcess } from './processes.js';

describe('spawnProcess', () => {
  it('captures output lines and the exit status', async () => {
    const seen: string[] = [];
    const p = spawnProcess({
      name: 'echo',
      args: ['-e', 'console.log("one\\ntwo"); console.error("three"); process.exit(3)'],
      onLine: (name, line) => seen.push(`${name}:${line}`),
    });
    expect(await p.exited).toEqual({ code: 3, signal: null });
    expect(seen.sort()).toEqual(['echo:one', 'echo:three', 'echo:two']);
    expect(p.output()).toContain('two');
    expect(liveProcesses()).not.toContain(p);
  });

  it('stop() escalates to SIGKILL when SIGTERM is ignored, and handles a SIGSTOPped child', async () => {
    const stubborn = spawnProcess({
      name: 'stubborn',
      args: ['-e', 'process.on("SIGTERM", () => {}); console.log("ready"); setInterval(() => {}, 1000)'],
    });
    await new Promise<void>((resolve) => stubborn.child.stdout!.once('data', () => resolve()));
    expect(await stubborn.stop(300)).toEqual({ code: null, signal: 'SIGKILL' });

    const paused = spawnProcess({ name: 'paused', args: ['-e', 'setInterval(() => {}, 1000)'] });
    paused.signal('SIGSTOP');
    expect((await paused.stop(5000)).signal).toBe('SIGTERM');
  });

  it('reports a binary that does not exist as an exit', async () => {
    const p = spawnProcess({ name: 'missing', command: '/nonexistent/bin', args: [] });
    await p.exited;
    expect(p.running).toBe(false);
    expect(p.output()).toMatch(/ENOENT/);
  });
});

describe('a parent killed by a signal', () => {
  // Node 20 cannot run the .ts source in a plain child process: this one needs `tsc -b tools/local-cluster`.
  const built = new URL('../dist/processes.js', import.meta.url);
  it.skipIf(!existsSync(built))('takes its children with it', async () => {
    // The parent spawns a long-lived child through spawnProcess, prints its PID, then gets SIGTERM.
    const script = `
      const { spawnProcess } = await import(${JSON.stringify(built.href)});
      const p = spawnProcess({ name: 'child', args: ['-e', 'setInterval(() => {}, 1000)'] });
      console.log(p.pid);
      setInterval(() => {}, 1000);
    `;
    const parent = spawnProcess({
      name: 'parent',
      args: ['--input-type=module', '-e', script],
    });
    const childPid = await new Promise<number>((resolve) =>
      parent.child.stdout!.on('data', (d: string) => {
        const pid = Number(String(d).trim());
        if (pid > 0) resolve(pid);
      }),
    );
    expect(() => process.kill(childPid, 0)).not.toThrow();
    parent.signal('SIGTERM');
    expect((await parent.exited).signal).toBe('SIGTERM');
    await waitGone(childPid);
  });
});

async function waitGone(pid: number): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    if (Date.now() > deadline) throw new Error(`process ${pid} still alive`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
