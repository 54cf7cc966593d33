// CI's short, fixed-seed chaos run (tools/chaos): the real `npm run chaos` entry as a process, against
// its own supervised cluster; it must report 0 violations (README quotes a long run).
import { spawn } from 'node:child_process';
import path from 'node:path';
import { expect, it } from 'vitest';
import { REPO_ROOT } from '@vmm/local-cluster/cluster';

it('a fixed-seed chaos run reports 0 violations', async () => {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'tools/chaos/dist/main.js'), '--migrations', '24', '--seed', '7', '--max-stop-ms', '4000'], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  const line = out.trim().split('\n').at(-1) ?? '';
  const summary = JSON.parse(line || '{}') as { migrations?: number; violations?: unknown[]; faults?: Record<string, unknown> };
  console.info(`chaos: ${line}`);
  expect(summary.violations, err.split('\n').filter((l) => l.includes('VIOLATION')).join('\n')).toEqual([]);
  expect(code).toBe(0);
  expect(summary.migrations).toBeGreaterThanOrEqual(20);
  expect(Object.keys(summary.faults ?? {}).length).toBeGreaterThan(0);
}, 900_000);
