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
